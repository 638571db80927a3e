// `npm run build` (scripts/build.sh) bundles each program with esbuild, npm dependencies included, so
// dist/ runs without node_modules (the image has none): dist/{coordinator,cli}/main.js and shared ESM
// chunks; the agent as one CommonJS bundle, dist/agent/main.cjs, plus one per lazy import
// (scripts/build-agent.ts). Checked the way the image holds it: dist/, bin/, deploy/ and package.json copied to a
// directory with no node_modules and no scripts/ (so bin/ does not try to build).
import { execFile } from 'node:child_process';
import { cp, mkdtemp, mkdir, readdir, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pathToFileURL } from 'node:url';
import test from 'ava';
import { generateSigningKeyPair } from '../protocol/signing.ts';

const run = promisify(execFile);
/** dist/agent/: the entry, the agent's start-up bundle and the two it loads lazily. */
const AGENT_FILES = ['main.cjs', 'agent.cjs', 'kubernetes.cjs', 'metrics.cjs'];
const ROOT = join(import.meta.dirname, '..');
const DIST = join(ROOT, 'dist');

/** A copy of what the runtime image holds, outside the checkout. */
async function imageLikeCopy(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'xl-bundle-'));
  for (const d of ['dist', 'bin', 'deploy']) await cp(join(ROOT, d), join(dir, d), { recursive: true });
  await cp(join(ROOT, 'package.json'), join(dir, 'package.json'));
  return dir;
}

test('dist/ holds one bundle per program plus chunks, with source maps back to the TypeScript', async (t) => {
  for (const program of ['coordinator', 'cli']) {
    const files = await readdir(join(DIST, program));
    t.deepEqual(files.sort(), ['main.js', 'main.js.map'], `dist/${program}/ is one bundle`);
    const map = JSON.parse(await readFile(join(DIST, program, 'main.js.map'), 'utf8')) as { sources: string[] };
    t.true(map.sources.includes(`../../${program}/main.ts`), `${program}: ${map.sources.slice(0, 5).join(', ')}`);
  }
  // The agent: one CommonJS bundle for its start, one per lazy import (the Kubernetes client, prom-client).
  t.deepEqual((await readdir(join(DIST, 'agent'))).sort(), AGENT_FILES.flatMap((f) => [f, `${f}.map`]).sort());
  const agentMap = JSON.parse(await readFile(join(DIST, 'agent', 'agent.cjs.map'), 'utf8')) as { sources: string[] };
  t.true(agentMap.sources.includes('../../agent/main.ts'), agentMap.sources.slice(0, 5).join(', '));
  const chunks = (await readdir(join(DIST, 'chunks'))).filter((f) => f.endsWith('.js'));
  t.true(chunks.length > 0 && chunks.length < 40, `${chunks.length} chunks`);
  // No module tree from an older tsc build is left behind (and none is needed).
  for (const stale of ['lib', 'protocol']) await t.throwsAsync(readdir(join(DIST, stale)), { code: 'ENOENT' });
  // Identifiers are kept, so stack traces name functions and classes.
  const all = await Promise.all(chunks.map((f) => readFile(join(DIST, 'chunks', f), 'utf8')));
  t.true(all.some((s) => /\bValidationError=class\b|\bclass ValidationError\b/.test(s)), 'class names survive the minifier');
});

test('the bundles run without node_modules: each program answers --help, manifests finds deploy/, every chunk loads', async (t) => {
  const dir = await imageLikeCopy();
  try {
    for (const [program, usage] of [['crosslink-agent', 'Usage: crosslink-agent'], ['crosslink-coordinator', 'Usage: crosslink-coordinator'], ['crosslink', 'Usage: crosslink']] as const) {
      const { stdout } = await run(join(dir, 'bin', program), ['--help'], { timeout: 60_000 });
      t.true(stdout.startsWith(usage), `${program}: ${stdout.slice(0, 200)}`);
    }
    const { stdout: manifests } = await run(join(dir, 'bin', 'crosslink'), ['manifests', '--cluster', 'c1', '--location', 'l1', '--nats-url', 'tls://nats.example.com:4222'], { timeout: 60_000 });
    t.regex(manifests, /kind: DaemonSet/);
    // The chunks the programs import lazily (the Kubernetes client) resolve their imports too.
    const chunks = (await readdir(join(dir, 'dist', 'chunks'))).filter((f) => f.endsWith('.js'));
    const script = chunks.map((f) => `await import(${JSON.stringify(pathToFileURL(join(dir, 'dist', 'chunks', f)).href)});`).join('\n') + '\nconsole.log("loaded");';
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: dir, timeout: 60_000 });
    t.is(stdout.trim(), 'loaded');
    // The agent's bundles are CommonJS: required (not run: not the entry point) from a CommonJS
    // script, each loads without node_modules, and none loads node's ESM loader (nor pino's
    // transports, whose `module` built-in would load it).
    const probe = join(dir, 'probe.cjs');
    await writeFile(probe, `for (const f of ${JSON.stringify(AGENT_FILES.filter((f) => f !== 'main.cjs'))}) require(${JSON.stringify(join(dir, 'dist', 'agent'))} + '/' + f);
process.stdout.write(JSON.stringify(process.moduleLoadList.filter((m) => /esm\\/loader|^NativeModule module$/.test(m))));`);
    const { stdout: esm } = await run(process.execPath, [probe], { cwd: dir, timeout: 60_000 });
    t.deepEqual(JSON.parse(esm), [], 'the agent never loads the ESM loader');
    // The running agent: main.cjs loads agent.cjs with lib/load-commonjs.ts (read in pieces), not
    // with require(), and node's ESM loader is never loaded.
    const hook = join(dir, 'hook.cjs');
    await writeFile(hook, `process.on('exit', () => process.stderr.write('XL-LOADED ' + JSON.stringify({ required: Object.keys(require.cache), esm: process.moduleLoadList.filter((m) => /esm\\/loader/.test(m)) }) + '\\n'));`);
    const { stderr: loadedLine } = await run(join(dir, 'bin', 'crosslink-agent'), ['--help'], { timeout: 60_000, env: { ...process.env, NODE_OPTIONS: `--require=${hook}` } });
    const loaded = JSON.parse(loadedLine.split('\n').find((l) => l.startsWith('XL-LOADED '))?.slice('XL-LOADED '.length) ?? '{}') as { required?: string[]; esm?: string[] };
    t.deepEqual(loaded.esm, [], 'no ESM loader in the running agent');
    t.true(loaded.required?.some((f) => f.endsWith('/dist/agent/main.cjs')), JSON.stringify(loaded.required));
    t.false(loaded.required?.some((f) => f.endsWith('/dist/agent/agent.cjs')), `agent.cjs is not require()d: ${JSON.stringify(loaded.required)}`);
    // Kubernetes mode loads dist/agent/kubernetes.cjs (through agent.cjs's lazy import): its own
    // message about the missing kubeconfig; NATS is never contacted, nothing is started.
    const key = (await generateSigningKeyPair()).publicKey;
    const k8s = await run(join(dir, 'bin', 'crosslink-agent'), ['--kubernetes', '--cluster', 'eu1', '--nats-url', 'nats://127.0.0.1:1', '--node-name', 'xl-bundle', '--coordinator-key', key, '--state-dir', join(dir, 'state'), '--mtu', '1420', '--health-addr', 'off'], {
      timeout: 60_000,
      env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: dir, KUBECONFIG: join(dir, 'nope') },
    }).then(
      () => ({ code: 0, stderr: '' }),
      (err: unknown) => ({ code: (err as { code?: unknown }).code, stderr: String((err as { stderr?: unknown }).stderr) }),
    );
    t.is(k8s.code, 1, k8s.stderr);
    t.regex(k8s.stderr, /cannot load the Kubernetes client configuration from KUBECONFIG=\S+nope: ENOENT/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('build.sh --if-stale rebuilds when a source, the lock file or the build script is newer than dist/, and only then', async (t) => {
  // A scratch tree without esbuild: a build that starts fails with "esbuild is not installed", so
  // whether --if-stale decided to build is visible without touching the real dist/.
  const dir = await mkdtemp(join(tmpdir(), 'xl-build-stale-'));
  try {
    await mkdir(join(dir, 'scripts'));
    await cp(join(ROOT, 'scripts', 'build.sh'), join(dir, 'scripts', 'build.sh'));
    for (const d of ['lib', 'protocol', 'agent', 'coordinator', 'cli', 'dist']) await mkdir(join(dir, d));
    const inputs = ['agent/a.ts', 'lib/b.ts', 'protocol/c.ts', 'coordinator/d.ts', 'cli/e.ts', 'package.json', 'package-lock.json', 'tsconfig.json'];
    for (const f of inputs) await writeFile(join(dir, f), '');
    const old = new Date(Date.now() - 3_600_000);
    for (const f of [...inputs, 'scripts/build.sh', 'lib', 'protocol', 'agent', 'coordinator', 'cli']) await utimes(join(dir, f), old, old);
    await writeFile(join(dir, 'dist', '.built'), '');
    const built = new Date(Date.now() - 1_800_000);
    await utimes(join(dir, 'dist', '.built'), built, built);
    const build = (): Promise<{ code: number; stderr: string }> =>
      run('bash', [join(dir, 'scripts', 'build.sh'), '--if-stale'], { timeout: 30_000 }).then(
        () => ({ code: 0, stderr: '' }),
        (err: unknown) => {
          const e = err as { code?: unknown; stderr?: unknown };
          return { code: typeof e.code === 'number' ? e.code : -1, stderr: String(e.stderr) };
        },
      );
    t.deepEqual(await build(), { code: 0, stderr: '' }, 'current: nothing to do');
    for (const f of [...inputs, 'scripts/build.sh']) {
      const now = new Date();
      await utimes(join(dir, f), now, now);
      const r = await build();
      t.is(r.code, 1, f);
      t.regex(r.stderr, /esbuild is not installed/, `${f} newer than dist/ starts a build`);
      await utimes(join(dir, f), old, old);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

/** The agent's metafile (dist/meta-agent.json): packages in its start-up bundles and in every agent bundle, and which bundles agent.cjs loads lazily. */
async function agentPackages(): Promise<{ atStart: Set<string>; lazily: Set<string>; startInputs: Set<string>; lazyBundles: string[] }> {
  const meta = JSON.parse(await readFile(join(DIST, 'meta-agent.json'), 'utf8')) as {
    outputs: Record<string, { inputs: Record<string, unknown> }>;
  };
  const inputsOf = (files: string[]): Set<string> => new Set(files.flatMap((f) => Object.keys(meta.outputs[f]?.inputs ?? {})));
  const packages = (inputs: Set<string>): Set<string> =>
    new Set([...inputs].filter((i) => i.startsWith('node_modules/')).map((i) => i.split('/').slice(1, i.split('/')[1]?.startsWith('@') ? 3 : 2).join('/')));
  const startInputs = inputsOf(['dist/agent/main.cjs', 'dist/agent/agent.cjs']);
  const all = inputsOf(Object.keys(meta.outputs).filter((f) => f.endsWith('.cjs')));
  const lazyBundles = [...startInputs].filter((i) => i.startsWith('crosslink-lazy:')).map((i) => i.slice('crosslink-lazy:'.length)).sort();
  return { atStart: packages(startInputs), lazily: packages(all), startInputs, lazyBundles };
}

test('the agent loads prom-client only when scraped, the Kubernetes client only in Kubernetes mode, the YAML parser never', async (t) => {
  const agent = await agentPackages();
  t.deepEqual(agent.lazyBundles, ['kubernetes.cjs', 'metrics.cjs'], 'agent.cjs loads the lazy bundles');
  t.false(agent.atStart.has('thread-stream'), "pino's transports (a worker thread) are not in the agent");
  // Policies reach the agent as JSON in signed records; YAML is the operator's (coordinator, CLI).
  t.false(agent.lazily.has('yaml'), 'the agent does not bundle the YAML parser');
  for (const lazy of ['prom-client', '@kubernetes/client-node']) {
    t.false(agent.atStart.has(lazy), `${lazy} is not among the agent's start-up files`);
    t.true(agent.lazily.has(lazy), `${lazy} is bundled for a later import`);
  }
  for (const needed of ['zod', '@nats-io/transport-node', 'pino']) t.true(agent.atStart.has(needed), needed);
});

test('zod is tree-shaken: no locale but English and no JSON-schema importer among the agent start-up files', async (t) => {
  // `import { z } from 'zod'` binds zod's whole namespace (all ~50 locales, the JSON-schema
  // importer: 430 KB more source text in the agent's heap); `import * as z from 'zod'` lets
  // esbuild keep only what is used (eslint forbids the named import; docs/benchmarks.md round 19).
  const { startInputs } = await agentPackages();
  const zod = [...startInputs].filter((f) => f.startsWith('node_modules/zod/'));
  t.true(zod.some((f) => f.endsWith('/v4/core/schemas.js')), 'zod itself is bundled');
  t.deepEqual(zod.filter((f) => f.includes('/locales/') && !f.endsWith('/locales/en.js')), []);
  t.deepEqual(zod.filter((f) => f.endsWith('/from-json-schema.js')), []);
});
