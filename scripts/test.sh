#!/usr/bin/env bash
# `npm test`: set-up, type-check, lint, then every ava test (unit, NATS integration, network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== typecheck"; npx tsc --noEmit
echo "== lint"; npx eslint .
echo "== tests"; npx ava "$@"
