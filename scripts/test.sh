#!/usr/bin/env bash
# `npm test`: set-up, type-check, lint, then every ava test (unit, NATS integration, network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== build"; bash scripts/build.sh --if-stale   # tests spawn bin/, which runs dist/
echo "== typecheck"; npx tsc --noEmit
echo "== lint"; npx eslint .
echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
npx ava "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One plain closing line that any CI reader understands (ava prints ✔ per passed test, ✘ [fail] per failure).
count() { grep -cE "$1" "$log" || true; }
passed=$(count '^\s*✔'); failed=$(count '^\s*✘'); skipped=$(count '^\s*- \[skip\]')
echo "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit "$rc"
