#!/usr/bin/env bash
# `npm test`: set-up, type-check, lint, then every ava test (unit, NATS integration, network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== typecheck"; npx tsc --noEmit
echo "== lint"; npx eslint .
echo "== tests"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
npx ava "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One plain closing line that any CI reader understands.
passed=$(grep -oE '^\s*[0-9]+ tests? passed' "$log" | grep -oE '[0-9]+' | tail -1)
failed=$(grep -oE '^\s*[0-9]+ tests? failed' "$log" | grep -oE '[0-9]+' | tail -1)
skipped=$(grep -oE '^\s*[0-9]+ tests? skipped' "$log" | grep -oE '[0-9]+' | tail -1)
echo "${passed:-0} passed, ${failed:-0} failed, ${skipped:-0} skipped"
exit "$rc"
