// Loaded by ava before every test file (package.json "ava.require"): tests that spawn bin/ run the
// compiled dist/, so it is built here once, before any test's clock starts (a no-op when current;
// scripts/build.sh serialises concurrent workers with a lock).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

execFileSync('bash', [join(import.meta.dirname, '..', '..', 'scripts', 'build.sh'), '--if-stale'], { stdio: ['ignore', 'inherit', 'inherit'] });
