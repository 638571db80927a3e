// `crosslink diagnose`'s path-MTU probes (cli/diagnose-probes.ts) with an injected prober: bounded
// concurrency (at most PMTU_PEERS_AT_ONCE peers, two probes each, in flight), the full and the
// small probe of a peer side by side, only peers whose probe is up, and `--peer`.
import test from 'ava';
import { pathMtuProbes, PMTU_PEERS_AT_ONCE, type PathMtuProber } from '../cli/diagnose-probes.ts';
import type { PingReply } from '../protocol/health.ts';
import type { AgentStatus } from '../protocol/status.ts';

function statusWith(peers: { name: string; up: boolean; carries?: string[] }[], liveMtu: number | null = 1420): AgentStatus {
  // Only what pathMtuProbes reads: the live MTU and each peer's name, probe state and carried nodes.
  return {
    dataplane: { liveMtu },
    peers: peers.map((p) => ({ name: p.name, carries: p.carries ?? [p.name], probe: { state: p.up ? 'up' : 'down' } })),
  } as unknown as AgentStatus;
}

const reply = (target: string, bytes: number | undefined): PingReply => ({
  target,
  node: target,
  overlayIp: null,
  path: 'direct',
  via: null,
  pathText: bytes === undefined ? 'small' : `full ${bytes}`,
  sent: 3,
  received: 3,
  rttMs: [1],
  pod: null,
  summary: 'answered',
  ok: true,
});

/** A prober that counts probes in flight; each answers a few event-loop turns later. */
function countingProber(): { probe: PathMtuProber; maxInFlight: () => number; calls: { target: string; bytes: number | undefined; inFlightWith: string[] }[] } {
  const inFlight = new Map<number, string>();
  let max = 0;
  let id = 0;
  const calls: { target: string; bytes: number | undefined; inFlightWith: string[] }[] = [];
  const probe: PathMtuProber = async (target, bytes) => {
    const me = id++;
    calls.push({ target, bytes, inFlightWith: [...inFlight.values()] });
    inFlight.set(me, target);
    max = Math.max(max, inFlight.size);
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
    inFlight.delete(me);
    return reply(target, bytes);
  };
  return { probe, maxInFlight: () => max, calls };
}

test('at most PMTU_PEERS_AT_ONCE peers (two probes each) are probed at a time; every up peer is probed', async (t) => {
  const peers = Array.from({ length: 20 }, (_, i) => ({ name: `n${String(i).padStart(2, '0')}`, up: true }));
  const c = countingProber();
  const out = await pathMtuProbes(c.probe, statusWith(peers));
  t.is(c.maxInFlight(), 2 * PMTU_PEERS_AT_ONCE, 'bounded (unbounded would put all 40 probes in flight)');
  t.is(c.calls.length, 40);
  t.deepEqual([...out.keys()].sort(), peers.map((p) => p.name));
  t.is(out.get('n07')?.full?.pathText, `full ${1420 - 28}`, 'the full probe fills the live MTU (minus IPv4 + UDP headers)');
  t.is(out.get('n07')?.small?.pathText, 'small');
});

test('a peer\'s full and small probes are in flight together (the control probe sees the same moment)', async (t) => {
  const c = countingProber();
  await pathMtuProbes(c.probe, statusWith(Array.from({ length: 9 }, (_, i) => ({ name: `n${i}`, up: true }))));
  for (const call of c.calls.filter((x) => x.bytes === undefined)) t.true(call.inFlightWith.includes(call.target), `${call.target}: small probe sent while its full probe was in flight`);
});

test('only peers whose probe is up, only --peer\'s carrier, nothing without a live MTU', async (t) => {
  const status = statusWith([
    { name: 'a', up: true },
    { name: 'b', up: false },
    { name: 'gw', up: true, carries: ['gw', 'behind-gw'] },
  ]);
  t.deepEqual([...(await pathMtuProbes(countingProber().probe, status)).keys()].sort(), ['a', 'gw']);
  t.deepEqual([...(await pathMtuProbes(countingProber().probe, status, 'behind-gw')).keys()], ['gw']);
  const none = countingProber();
  t.is((await pathMtuProbes(none.probe, statusWith([{ name: 'a', up: true }], null))).size, 0);
  t.is(none.calls.length, 0);
});
