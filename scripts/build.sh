#!/usr/bin/env bash
# `npm run build`: bundles the agent, coordinator and CLI — each with everything it imports, npm
# dependencies included — into dist/ with esbuild. The coordinator and the CLI: ESM,
# dist/{coordinator,cli}/main.js plus shared chunks in dist/chunks/. The agent: one CommonJS bundle,
# dist/agent/main.cjs, plus one per lazy import (dist/agent/kubernetes.cjs, loaded only in
# Kubernetes mode; dist/agent/metrics.cjs, prom-client, at the first scrape) — scripts/build-agent.ts.
# One file instead of ~620 modules, and no ESM loader: less code and module source text in the
# agent's heap and a faster start (docs/benchmarks.md, issue 10 rounds 18 and 22); dist/ needs no
# node_modules at run time.
# Whitespace and syntax are minified, identifiers are not, so stack traces keep function and class
# names; dist/**/*.js.map maps them back to the TypeScript (node --enable-source-maps, off by
# default: it costs the agent ~5 MiB of heap). esbuild does not type-check: `npm run typecheck`.
# Serialised by a lock so concurrent callers (bin/ building on demand, tests spawning several
# binaries at once) run one build; `--if-stale` skips it when dist/ is newer than every input.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
entries=(coordinator/main.ts cli/main.ts)
stale() {
  [ -f dist/.built ] || return 0
  [ -n "$(find lib protocol agent coordinator cli tsconfig.json package.json package-lock.json scripts/build.sh scripts/build-agent.ts -newer dist/.built -print -quit 2>/dev/null)" ]
}
mkdir -p dist
exec 9>dist/.build.lock
flock 9
if [ "${1:-}" = "--if-stale" ] && ! stale; then exit 0; fi
esbuild="$root/node_modules/esbuild/bin/esbuild"
if [ ! -x "$esbuild" ]; then
  echo "crosslink: cannot build dist/: esbuild is not installed (run: npm install, then npm run build)" >&2
  exit 1
fi
# The stamp is taken before building, so a source edited during the build counts as newer.
touch dist/.built.next
# Remove the previous output (and anything an older tsc build left): chunk names carry a content hash.
for d in agent coordinator cli chunks lib protocol; do rm -rf "dist/$d"; done
rm -f dist/.built dist/.tsbuildinfo dist/meta.json dist/meta-agent.json
# ESM output; the bundled CommonJS dependencies call require() for node's built-ins, so every
# output file gets a require of its own.
"$esbuild" "${entries[@]}" --bundle --platform=node --target=node20 --format=esm --splitting \
  --outdir=dist --outbase=. --chunk-names='chunks/[name]-[hash]' \
  --minify-whitespace --minify-syntax --sourcemap=external --legal-comments=external --metafile=dist/meta.json --log-level=warning \
  --banner:js="import { createRequire as __xlCreateRequire } from 'node:module'; const require = __xlCreateRequire(import.meta.url);"
node --import tsx scripts/build-agent.ts dist
mv dist/.built.next dist/.built
