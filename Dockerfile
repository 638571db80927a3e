# One image for the agent, the coordinator and the CLI (Kubernetes manifests pick the program with
# `args`). Build: docker build -t crosslink:0.1.0 .   (the manifests default to ghcr.io/crosslink/crosslink:0.1.0)

# Stage 1: bundle the agent, coordinator and CLI with their npm dependencies (npm run build → dist/,
# esbuild) using the dev dependencies.
FROM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/build.sh scripts/build-agent.ts ./scripts/
COPY lib ./lib
COPY protocol ./protocol
COPY agent ./agent
COPY coordinator ./coordinator
COPY cli ./cli
RUN bash scripts/build.sh

# Stage 2: the runtime: the bundles in dist/ carry their dependencies, so no node_modules (no
# TypeScript, no tsx loader, no npm install).
FROM node:22-bookworm-slim

# wireguard-go: user-space WireGuard when the node kernel has no WireGuard module; wireguard-tools: `wg`;
# iproute2: `ip`; iptables (nft backend on bookworm); tini: PID 1 that forwards SIGTERM and reaps children.
RUN apt-get update \
 && apt-get install -y --no-install-recommends wireguard-go wireguard-tools iproute2 iptables tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/crosslink
ENV NODE_ENV=production

# package.json marks the package root (deploy/ templates are found from it) and ES modules.
COPY package.json ./
COPY --from=build /src/dist ./dist
# bin/ runs dist/ (no scripts/ in the image, so it never tries to build).
COPY bin ./bin
# Templates for `crosslink manifests`.
COPY deploy ./deploy

ENV PATH=/opt/crosslink/bin:$PATH
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["crosslink", "--help"]
