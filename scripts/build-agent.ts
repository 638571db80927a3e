// The agent's build (called by scripts/build.sh; `node --import tsx scripts/build-agent.ts <outdir>`),
// CommonJS throughout, npm dependencies included:
// - dist/agent/main.cjs, the entry (agent/bundle-main.ts): loads and runs dist/agent/agent.cjs;
// - dist/agent/agent.cjs: agent/main.ts and everything it loads at start, in one file;
// - one bundle per lazy import (LAZY_BUNDLES: the Kubernetes client, prom-client), loaded only when
//   that path runs.
// CommonJS, not ESM: node's ESM loader (~20 more internal modules, their code and the module
// records) is never loaded, and the agent's 6 ESM files become one. Every bundle is loaded through
// lib/load-commonjs.ts, which reads it in 64 KiB pieces: require()'s one big read buffer raises
// glibc's mmap threshold and leaves ~3 MiB more in malloc's heap (docs/benchmarks.md, issue 10
// round 22). esbuild cannot split CommonJS output, so each lazy bundle carries its own copy of the
// shared code it uses (loaded only in Kubernetes mode or after the first scrape; no class identity
// crosses the boundary: they receive config, logger and clock and return objects used through
// their interfaces). Every dynamic import in the agent's own code must be listed in LAZY_BUNDLES
// (the build fails otherwise); top-level await, or any import.meta but import.meta.url, fails it too.
import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import * as esbuild from 'esbuild';

const ROOT = resolve(import.meta.dirname, '..');
const LOADER = join(ROOT, 'lib', 'load-commonjs.ts');

/** The agent's lazily imported modules → their bundle under dist/agent/. */
const LAZY_BUNDLES: Readonly<Record<string, string>> = Object.freeze({
  'agent/kubernetes/agent-mode.ts': 'kubernetes.cjs',
  'agent/metrics/agent-metrics.ts': 'metrics.cjs',
});

class AgentBuildError extends Error {
  override readonly name = 'AgentBuildError';
}

/** Dynamic imports in our own code become require('./<bundle>.cjs') of a bundle built on its own. */
function lazyBundles(): esbuild.Plugin {
  return {
    name: 'crosslink-lazy-bundles',
    setup(build) {
      build.onResolve({ filter: /.*/ }, async (args) => {
        if (args.kind !== 'dynamic-import' || args.pluginData === 'inner' || args.importer.includes('/node_modules/')) return undefined;
        const resolved = await build.resolve(args.path, { resolveDir: args.resolveDir, kind: args.kind, pluginData: 'inner' });
        const source = relative(ROOT, resolved.path);
        const bundle = LAZY_BUNDLES[source];
        if (bundle === undefined) {
          return { errors: [{ text: `dynamic import of ${source} in ${relative(ROOT, args.importer)}: not in LAZY_BUNDLES (scripts/build-agent.ts); allowed: ${Object.keys(LAZY_BUNDLES).join(', ')}` }] };
        }
        return { path: bundle, namespace: 'crosslink-lazy' };
      });
      // The dynamic import becomes a require() of this stub, which loads the bundle beside this one.
      build.onLoad({ filter: /.*/, namespace: 'crosslink-lazy' }, (args) => ({
        loader: 'js',
        resolveDir: ROOT,
        contents: `const { loadCommonJs } = require(${JSON.stringify(LOADER)});\nmodule.exports = loadCommonJs(require('node:path').join(__dirname, ${JSON.stringify(args.path)}), require);`,
      }));
    },
  };
}

/**
 * pino's transports (logging through a worker thread) are not used by the agent (lib/logger.ts
 * writes to fd 2 with pino.destination), but pino loads their module at start, and it requires
 * node's `module` built-in, which loads the ESM loader, and thread-stream with `worker_threads`.
 * In the agent's bundle that module is a stub that throws if a transport is ever asked for.
 */
function noPinoTransports(): esbuild.Plugin {
  return {
    name: 'crosslink-no-pino-transports',
    setup(build) {
      build.onResolve({ filter: /^\.\/(lib\/)?transport$/ }, (args) =>
        /\/node_modules\/pino\/(lib\/)?[^/]+\.js$/.test(args.importer) ? { path: 'pino-transport', namespace: 'crosslink-stub' } : undefined,
      );
      build.onLoad({ filter: /.*/, namespace: 'crosslink-stub' }, () => ({
        loader: 'js',
        contents: "module.exports = function transport() { throw new Error('pino transports are not bundled in crosslink-agent (scripts/build-agent.ts): log to a stream'); };",
      }));
    },
  };
}

async function main(outdir: string): Promise<void> {
  const agentDir = join(outdir, 'agent');
  await mkdir(agentDir, { recursive: true });
  const common: esbuild.BuildOptions = {
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    // A dynamic import() in CommonJS would still load node's ESM loader: make it a require().
    supported: { 'dynamic-import': false },
    // import.meta.url (lib/entry-point.ts, lib/package-root.ts): the bundle's own file URL, as in ESM.
    define: { 'import.meta.url': '__xlImportMetaUrl' },
    banner: { js: 'const __xlImportMetaUrl = require("node:url").pathToFileURL(__filename).href;' },
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: 'external',
    legalComments: 'external',
    metafile: true,
    logLevel: 'silent',
    absWorkingDir: ROOT,
  };
  const builds = [
    { entry: 'agent/bundle-main.ts', outfile: join(agentDir, 'main.cjs'), plugins: [] },
    { entry: 'agent/main.ts', outfile: join(agentDir, 'agent.cjs'), plugins: [lazyBundles(), noPinoTransports()] },
    ...Object.entries(LAZY_BUNDLES).map(([entry, bundle]) => ({ entry, outfile: join(agentDir, bundle), plugins: [noPinoTransports()] })),
  ];
  const meta: esbuild.Metafile = { inputs: {}, outputs: {} };
  for (const { entry, outfile, plugins } of builds) {
    const result = await esbuild.build({ ...common, entryPoints: [entry], outfile, plugins });
    if (result.warnings.length > 0) {
      const text = await esbuild.formatMessages(result.warnings, { kind: 'warning' });
      throw new AgentBuildError(`${entry}: esbuild warnings are errors in the agent's CommonJS build:\n${text.join('\n')}`);
    }
    Object.assign(meta.inputs, result.metafile?.inputs);
    Object.assign(meta.outputs, result.metafile?.outputs);
  }
  await writeFile(join(outdir, 'meta-agent.json'), JSON.stringify(meta));
}

const outdir = process.argv[2];
if (outdir === undefined) {
  process.stderr.write('usage: build-agent.ts <outdir>\n');
  process.exitCode = 2;
} else {
  main(resolve(outdir)).catch((err: unknown) => {
    process.stderr.write(`crosslink: the agent's build failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
