#!/usr/bin/env bash
# Idempotent: installs the Debian packages and npm dependencies Crosslink needs, only if missing.
# Both README commands (npm run demo, npm test) call this, so a fresh machine needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have() { command -v "$1" >/dev/null 2>&1; }
have wg || need+=(wireguard-tools)
have wireguard-go || need+=(wireguard-go)
have nats-server || need+=(nats-server)
have ip || need+=(iproute2)
have ping || need+=(iputils-ping)
have iptables || need+=(iptables)
have tcpdump || need+=(tcpdump)
have kubectl || need+=(kubernetes-client)
have nft || need+=(nftables)
have openssl || need+=(openssl)
have dig || need+=(bind9-dnsutils)
have dot || need+=(graphviz)
have promtool || need+=(prometheus)
have iperf3 || need+=(iperf3)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then echo "setup: need root to install ${need[*]}" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  # kubernetes-client is optional (manifest dry-run); never fail set-up on it.
  core=(); for p in "${need[@]}"; do [ "$p" = kubernetes-client ] || core+=("$p"); done
  if [ ${#core[@]} -gt 0 ]; then apt-get install -y -qq --no-install-recommends "${core[@]}" >&2; fi
  if [[ " ${need[*]} " == *" kubernetes-client "* ]]; then apt-get install -y -qq --no-install-recommends kubernetes-client >&2 || echo "setup: kubernetes-client unavailable; kubectl checks will be skipped" >&2; fi
fi

# npm dependencies: reinstall when the locked package set (names, versions, integrity) changed since
# the last install; edits that install the same tree (e.g. moving a package to devDependencies) don't.
digest=$(node -e 'const p = require("./package-lock.json").packages ?? {}; console.log(Object.keys(p).sort().map((k) => `${k}@${p[k].version ?? ""}#${p[k].integrity ?? ""}`).join("\n"))' | sha256sum | cut -d' ' -f1)
stamp=node_modules/.crosslink-deps-stamp
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$digest" >"$stamp"
fi
