// The Dockerfile cannot be built here (no container engine), so its essentials are checked
// statically: base image, packages, that the image runs the bundles of dist/ without tsx or
// node_modules, that every directory the entry points import is copied into the build stage, and
// that .dockerignore keeps them. test/build-bundle.test.ts runs dist/ the way the image holds it.
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
const runtimeStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
const buildStage = dockerfile.slice(0, dockerfile.lastIndexOf('\nFROM '));
/** What the runtime stage (after the last FROM) copies from the build context. */
const runtimeCopied = [...runtimeStage.matchAll(/^COPY\s+(\S+)\s+\S+$/gm)].map((m) => m[1]!);
/** What the build stage copies from the build context. */
const buildCopied = [...buildStage.matchAll(/^COPY\s+(\S+)\s+\S+$/gm)].map((m) => m[1]!);

test('Dockerfile: Node 22 runtime with the data-plane tools and tini as PID 1', (t) => {
  t.regex(dockerfile, /^FROM node:22-bookworm-slim$/m);
  for (const p of ['wireguard-go', 'wireguard-tools', 'iproute2', 'iptables', 'tini']) t.regex(dockerfile, new RegExp(`apt-get install[^\\n]*\\b${p}\\b`), p);
  t.regex(dockerfile, /rm -rf \/var\/lib\/apt\/lists/);
  t.regex(dockerfile, /^ENTRYPOINT \["\/usr\/bin\/tini", "--"\]$/m);
  t.regex(dockerfile, /^ENV PATH=\/opt\/crosslink\/bin:\$PATH$/m);
});

test('Dockerfile: a build stage bundles dist/ (scripts/build.sh); the runtime has no node_modules and bin/ runs dist/', (t) => {
  t.regex(dockerfile, /^FROM node:22-bookworm-slim AS build$/m);
  t.regex(buildStage, /^COPY scripts\/build\.sh scripts\/build-agent\.ts \.\/scripts\/$/m);
  for (const f of ['scripts/build.sh', 'scripts/build-agent.ts']) t.true(dockerignore.includes(`!${f}`), `.dockerignore keeps ${f} in the build context`);
  t.regex(buildStage, /^RUN bash scripts\/build\.sh$/m);
  t.regex(dockerfile, /^COPY --from=build \/src\/dist \.\/dist$/m);
  t.notRegex(runtimeStage, /npm (?:ci|install)|node_modules/, 'the bundles carry their dependencies: the runtime installs none');
  t.true(runtimeCopied.includes('package.json'), 'package.json marks the package root');
  t.falsy(pkg.dependencies['tsx'], 'tsx is a devDependency: nothing loads TypeScript at run time');
  t.falsy(pkg.dependencies['typescript']);
  for (const bin of Object.values(pkg.bin)) {
    t.true(runtimeCopied.includes(dirname(bin)), `${bin} is copied`);
    const script = readFileSync(join(ROOT, bin), 'utf8');
    t.notRegex(script, /tsx/, `${bin} does not use tsx`);
    t.regex(script, /run-compiled" [a-z]+\/main\.c?js/, `${bin} runs a compiled entry point`);
  }
  t.regex(readFileSync(join(ROOT, 'bin', 'run-compiled'), 'utf8'), /exec node (?:"\$\{flags\[@\]\}" )?"\$root\/dist\/\$entry"/);
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

test('Dockerfile: every directory the agent, coordinator and CLI import is copied into the build stage (and not docker-ignored)', (t) => {
  const entryDirs = ['agent', 'coordinator', 'cli', 'lib', 'protocol'].filter((d) => statSync(join(ROOT, d), { throwIfNoEntry: false })?.isDirectory());
  const needed = new Set(entryDirs);
  for (const d of entryDirs) for (const imp of runtimeImports(join(ROOT, d))) needed.add(imp.split('/')[0]!);
  needed.add('deploy'); // templates for `crosslink manifests`
  for (const d of needed) {
    if (d === 'package.json') continue;
    t.true(d === 'deploy' ? runtimeCopied.includes(d) : buildCopied.includes(d), `COPY ${d}`);
    t.false(dockerignore.includes(d), `.dockerignore keeps ${d}`);
  }
  t.true(dockerignore.includes('node_modules'), 'dependencies come from npm ci, not the build context');
});

/** The npm packages (bare, non-type imports) of every module under `dir`. */
function packageImports(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) for (const [name, file] of packageImports(p)) out.set(name, file);
    else if (e.name.endsWith('.ts')) {
      const src = readFileSync(p, 'utf8');
      for (const m of src.matchAll(/^\s*(?:import|export)\s(?:[^'"]*?\sfrom\s+)?'([^.'][^']*)'|\bimport\('([^.'][^']*)'\)/gm)) {
        if (/^\s*(?:import|export)\s+type\s/.test(m[0])) continue;
        const spec = (m[1] ?? m[2])!;
        if (spec.startsWith('node:')) continue;
        const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
        out.set(name, relative(ROOT, p));
      }
    }
  }
  return out;
}

test('package.json: every package the shipped programs import is a dependency; execa (tests, lab, bench only) is a devDependency', (t) => {
  const dev = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> }).devDependencies;
  const used = new Map<string, string>();
  for (const d of ['agent', 'coordinator', 'cli', 'lib', 'protocol']) for (const [name, file] of packageImports(join(ROOT, d))) used.set(name, file);
  t.true(used.has('@nats-io/transport-node'), 'the scan finds package imports');
  for (const [name, file] of used) t.truthy(pkg.dependencies[name], `${file} imports ${name}: a dependency`);
  t.false(used.has('execa'), 'no shipped module runs on execa (lib/runner.ts, lib/child-process.ts use node:child_process)');
  t.falsy(pkg.dependencies['execa']);
  t.truthy(dev['execa']);
});
