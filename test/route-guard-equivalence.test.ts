// The indexed route guard (IPv4 as numbers, host ranges kept out of the containment maps) answers
// exactly what a scan over every protected range in order answers — the same refusals with the same
// reasons — on random meshes and host facts packed into small address spaces (many overlaps), IPv4
// and IPv6, malformed input included. And the desired state refuses exactly what the scan refuses.
import test from 'ava';
import { computeDesiredState, nodeCidrs } from '../agent/plan/desired-state.ts';
import { createRouteGuard, type HostFacts } from '../agent/plan/route-guard.ts';
import type { DataplaneConfig, MeshView } from '../agent/plan/model.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import { scanRouteGuard } from './helpers/route-guard-scan.ts';
import { mulberry32 } from './helpers/prng.ts';

const config: DataplaneConfig = { interfaceName: 'xl0', listenPort: 51820, mtu: 1420, natKeepaliveSec: 25, relayPortBase: 40000, relayPortSpan: 100 };

type Rng = () => number;
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;

/** An address in a small space: 10.0.0.0/22, 192.0.2.0/24 (and the top of IPv4), or fd00::/118. */
function address(r: Rng, family: 4 | 6): string {
  if (family === 6) return `fd00::${Math.floor(r() * 1024).toString(16)}`;
  const n = Math.floor(r() * 1024);
  return pick(r, [`10.0.${n >> 8}.${n & 255}`, `192.0.2.${n & 255}`, `255.255.${n >> 8}.${n & 255}`]);
}

/** A CIDR around `address`, often with host bits (the guard accepts them), sometimes malformed. */
function cidr(r: Rng, family: 4 | 6): string {
  const x = r();
  if (x < 0.03) return pick(r, ['10.0.0.300/24', '10.0.0.0/33', '10.0.0.0//8', '010.0.0.0/8', 'fd00::/129', 'nonsense', '10.0.0.0/']);
  const bits = family === 4 ? 32 : 128;
  const prefix = x < 0.3 ? bits : x < 0.9 ? bits - 1 - Math.floor(r() * 10) : Math.floor(r() * bits);
  return `${address(r, family)}/${prefix}`;
}

function node(r: Rng, i: number): NodeRecord {
  const family = r() < 0.75 ? 4 : 6;
  const ep = (): string => (r() < 0.8 ? `${address(r, 4)}:${1 + Math.floor(r() * 65535)}` : `[${address(r, 6)}]:51820`);
  return {
    kind: 'node',
    v: 1,
    name: `n${i}`,
    cluster: `c${i % 3}`,
    location: 'x',
    publicKey: `key${i}`,
    identityKey: `id${i}`,
    endpoints: r() < 0.2 ? [] : r() < 0.8 ? [ep()] : [ep(), ep()],
    privateAddresses: r() < 0.1 ? [] : r() < 0.9 ? [address(r, r() < 0.8 ? 4 : 6)] : [address(r, 4), address(r, 6)],
    podCidrs: Array.from({ length: Math.floor(r() * 3) }, () => cidr(r, family)).filter((c) => r() < 0.95 || c.includes('/')),
    listenPort: 51820,
    topology: 'mesh',
    gatewayEligible: true,
    overlayIp: family === 4 ? `100.96.${i >> 8}.${i & 255}` : `fd01::${i.toString(16)}`,
    generation: 1,
    registeredAt: 1,
    updatedAt: 1,
  };
}

function hostFacts(r: Rng): HostFacts {
  return {
    addresses: Array.from({ length: 1 + Math.floor(r() * 3) }, (_, k) => ({ cidr: cidr(r, r() < 0.8 ? 4 : 6), dev: `eth${k}` })),
    routes: [
      { dst: '0.0.0.0/0', dev: 'eth0', via: address(r, 4), protocol: 'boot', scope: null },
      ...Array.from({ length: Math.floor(r() * 5) }, () => ({
        dst: cidr(r, r() < 0.8 ? 4 : 6),
        dev: r() < 0.5 ? 'eth0' : null,
        via: r() < 0.5 ? address(r, 4) : null,
        protocol: pick(r, ['kernel', 'bird', 'static']),
        scope: r() < 0.4 ? 'link' : null,
      })),
    ],
    natsAddresses: [address(r, 4), address(r, r() < 0.5 ? 4 : 6)],
  };
}

for (const seed of [1, 2, 3, 4, 5, 6]) {
  test(`the indexed guard equals an in-order scan, reason for reason (seed ${seed})`, (t) => {
    const r = mulberry32(seed);
    let refusals = 0;
    let queries = 0;
    for (let round = 0; round < 20; round++) {
      const nodes = Array.from({ length: 5 + Math.floor(r() * 60) }, (_, i) => node(r, i));
      const self = nodes[0] as NodeRecord;
      const facts = hostFacts(r);
      const indexed = createRouteGuard(facts, self, nodes);
      const scan = scanRouteGuard(facts, self, nodes);
      const asks = [
        ...nodes.flatMap((n) => [...nodeCidrs(n), ...n.podCidrs]),
        ...Array.from({ length: 100 }, () => cidr(r, r() < 0.7 ? 4 : 6)),
        ...Array.from({ length: 20 }, () => address(r, r() < 0.7 ? 4 : 6)),
      ];
      for (const q of asks) {
        const want = scan.reason(q);
        if (want !== null) refusals++;
        queries++;
        t.is(indexed.reason(q), want, `query ${q}`);
      }
    }
    // The data exercises both answers.
    t.true(refusals > queries * 0.1 && refusals < queries * 0.9, `${refusals} of ${queries} refused`);
  });
}

test('the desired state refuses exactly what the scan refuses, and routes or allows nothing it refuses', (t) => {
  const r = mulberry32(42);
  let refused = 0;
  for (let round = 0; round < 30; round++) {
    const list = Array.from({ length: 10 + Math.floor(r() * 40) }, (_, i) => node(r, i));
    const self = list[0] as NodeRecord;
    const facts = hostFacts(r);
    const view: MeshView = { self, nodes: new Map(list.map((n) => [n.name, n])), clusters: new Map() };
    const d = computeDesiredState(view, config, facts);
    const scan = scanRouteGuard(facts, self, list);
    for (const x of d.refused) t.is<string | null, string | null>(x.reason, scan.reason(x.cidr), x.cidr);
    for (const p of d.peers) for (const c of p.allowedIps) t.is(scan.reason(c), null, `allowed ${c}`);
    for (const route of d.routes) t.is(scan.reason(route.dst), null, `route ${route.dst}`);
    refused += d.refused.length;
  }
  t.true(refused > 30, `refused ${refused}`);
});
