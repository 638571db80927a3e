// The Dockerfile cannot be built here (no container engine), so its essentials are checked
// statically: base image, packages, that tsx (a runtime dependency) survives --omit=dev, that every
// directory the entrypoints import at run time is copied, and that .dockerignore keeps them.
import test from 'ava';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const dockerignore = readFileSync(join(ROOT, '.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; bin: Record<string, string> };

const copied = [...dockerfile.matchAll(/^COPY\s+(\S+)\s+\S+$/gm)].map((m) => m[1]!);

test('Dockerfile: Node 22 runtime with the data-plane tools and tini as PID 1', (t) => {
  t.regex(dockerfile, /^FROM node:22-bookworm-slim$/m);
  for (const p of ['wireguard-go', 'wireguard-tools', 'iproute2', 'iptables', 'tini']) t.regex(dockerfile, new RegExp(`apt-get install[^\\n]*\\b${p}\\b`), p);
  t.regex(dockerfile, /rm -rf \/var\/lib\/apt\/lists/);
  t.regex(dockerfile, /^ENTRYPOINT \["\/usr\/bin\/tini", "--"\]$/m);
  t.regex(dockerfile, /^ENV PATH=\/opt\/crosslink\/bin:\$PATH$/m);
});

test('Dockerfile: npm ci --omit=dev keeps tsx, which the bin scripts load at run time', (t) => {
  t.regex(dockerfile, /npm ci --omit=dev/);
  t.truthy(pkg.dependencies['tsx'], 'tsx must stay in dependencies, not devDependencies');
  for (const bin of Object.values(pkg.bin)) {
    t.true(copied.includes(dirname(bin)), `${bin} is copied`);
    t.regex(readFileSync(join(ROOT, bin), 'utf8'), /node_modules\/tsx/);
  }
  t.true(copied.includes('package-lock.json') || dockerfile.includes('package-lock.json'));
});

/** Relative imports of every runtime module, to find directories the image would be missing. */
function runtimeImports(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...runtimeImports(p));
    else if (e.name.endsWith('.ts')) {
      for (const m of readFileSync(p, 'utf8').matchAll(/^\s*(?:import|export)\s[^'"]*?from\s+'(\.{1,2}\/[^']+)'/gm)) {
        if (/^\s*import\s+type\s/.test(m[0])) continue;
        out.push(relative(ROOT, resolve(dirname(p), m[1]!)));
      }
    }
  }
  return out;
}

test('Dockerfile: every directory the agent, coordinator and CLI import is copied (and not docker-ignored)', (t) => {
  const entryDirs = ['agent', 'coordinator', 'cli', 'lib', 'protocol'].filter((d) => statSync(join(ROOT, d), { throwIfNoEntry: false })?.isDirectory());
  const needed = new Set(entryDirs);
  for (const d of entryDirs) for (const imp of runtimeImports(join(ROOT, d))) needed.add(imp.split('/')[0]!);
  needed.add('deploy'); // templates for `crosslink manifests`
  for (const d of needed) {
    if (d === 'package.json') continue;
    t.true(copied.includes(d), `COPY ${d}`);
    t.false(dockerignore.includes(d), `.dockerignore keeps ${d}`);
  }
  t.true(dockerignore.includes('node_modules'), 'dependencies come from npm ci, not the build context');
});
