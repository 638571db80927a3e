#!/usr/bin/env bash
# `npm run build`: compiles the agent, coordinator, CLI and what they import to dist/ (tsc,
# tsconfig.build.json). Serialised by a lock so concurrent callers (bin/ building on demand, tests
# spawning several binaries at once) run one compile; `--if-stale` skips it when dist/ is newer than
# every source file.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
stale() {
  [ -f dist/.built ] || return 0
  [ -n "$(find lib protocol agent coordinator cli tsconfig.json tsconfig.build.json package.json -newer dist/.built -print -quit 2>/dev/null)" ]
}
mkdir -p dist
exec 9>dist/.build.lock
flock 9
if [ "${1:-}" = "--if-stale" ] && ! stale; then exit 0; fi
tsc="$root/node_modules/typescript/bin/tsc"
if [ ! -x "$tsc" ] && [ ! -f "$tsc" ]; then
  echo "crosslink: cannot build dist/: TypeScript is not installed (run: npm install, then npm run build)" >&2
  exit 1
fi
# The stamp is taken before compiling, so a source edited during the compile counts as newer.
touch dist/.built.next
node "$tsc" -p tsconfig.build.json
mv dist/.built.next dist/.built
