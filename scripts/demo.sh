#!/usr/bin/env bash
# `npm run demo`: set-up, then the multi-cloud lab demo (lab/demo.ts): bring up the default lab,
# ping every pod from every pod, print the matrix and mesh summary, tear everything down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh --if-stale   # the agents and coordinator run compiled (bin/ → dist/)
exec node --no-warnings=ExperimentalWarning --import ./node_modules/tsx/dist/esm/index.mjs lab/demo.ts "$@"
