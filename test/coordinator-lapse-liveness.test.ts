// A lapse is not a loss (coordinator/lease.ts), and a node heard during one is alive: while the
// leader's renewal is stuck it answers heartbeats "unavailable" and writes nothing, but the
// heartbeats it takes (Registry.noteAlive, as coordinator.ts calls it during a lapse) count as signs
// of life, so once the lapse is survived no node that kept heartbeating expires by a TTL counted
// from before it. A real LeaderLease and Registry on one in-memory bucket (test/helpers/gated-kv.ts)
// and one manual clock: no NATS, no real-time sleep.
import test from 'ava';
import { GatedKv } from './helpers/gated-kv.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { fakeAgent, signedRegistration, type FakeAgent } from './helpers/fake-agent.ts';
import { addCluster } from '../coordinator/cluster-admin.ts';
import { defaultRunOptions, parseCoordinatorConfig } from '../coordinator/config.ts';
import { LeaderLease } from '../coordinator/lease.ts';
import { Liveness } from '../coordinator/liveness.ts';
import { Registry } from '../coordinator/registry.ts';
import { StateStore } from '../coordinator/store.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import type { Heartbeat } from '../protocol/messages.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';

const LEASE_TTL = 3000;
const NODE_TTL = 5000;

const heartbeatOf = (a: FakeAgent, o: Partial<Heartbeat> = {}): Heartbeat => ({ v: 1, name: a.name, identityKey: a.identity.publicKey, generation: 0, sentAt: a.nextSentAt(), ...o });

test('heartbeats taken during a lapse keep their nodes alive once the lapse is survived; a silent node and a foreign key do not', async (t) => {
  const clock = new ManualClock(Date.now());
  const bucket = new GatedKv();
  const lease = new LeaderLease(bucket.kv, { holder: 'pod-a', ttlMs: LEASE_TTL, clock, logger: silentLogger() });
  const stop = new AbortController();
  const run = lease.run({ onAcquired: () => undefined, onLost: () => undefined }, stop.signal);
  t.teardown(async () => {
    stop.abort();
    bucket.releaseAll();
    await run;
  });
  await lease.firstRound;
  t.true(lease.holds());

  const store = new StateStore(bucket.kv, await generateSigningKeyPair(), silentLogger());
  const { credential } = await addCluster({ store, clock }, { name: 'c1', podCidrs: ['10.10.0.0/16'], topology: 'mesh', allowPublic: false });
  const config = parseCoordinatorConfig({ ...defaultRunOptions(), natsUrl: 'nats://127.0.0.1:4222', overlayCidr: '100.96.0.0/24', nodeTtl: `${NODE_TTL}ms`, maxClockSkew: '1h' });
  const registry = await Registry.load({ store, clock, logger: silentLogger(), config, liveness: new Liveness(), holdsLease: () => lease.holds() });
  const alive = await fakeAgent('node-alive', { podCidrs: ['10.10.1.0/24'] });
  const silent = await fakeAgent('node-silent', { podCidrs: ['10.10.2.0/24'] });
  for (const a of [alive, silent]) t.like(await registry.register(Buffer.from(await signedRegistration(a.request(), a.identity.secretKey, credential))), { ok: true });
  const t0 = clock.now();
  t.like(registry.heartbeat(heartbeatOf(alive)), { ok: true });
  t.like(registry.heartbeat(heartbeatOf(silent)), { ok: true });

  // The bucket stops taking writes (a stream leader election): the next renewal hangs, the lease lapses a TTL later.
  bucket.held = true;
  clock.advanceTo(await waitFor(() => clock.wakeups[0], { timeoutMs: 5000, intervalMs: 1, what: 'the lease loop asleep until its renewal' }));
  await waitFor(() => bucket.pending.length > 0, { timeoutMs: 5000, intervalMs: 1, what: 'the renewal in flight' });
  clock.advance(LEASE_TTL);
  t.true(lease.lapsed(), 'the renewal is stuck past the lease TTL: lapsed');
  t.false(lease.holds());

  // During the lapse: the node heartbeats (answered "unavailable"); a forged heartbeat under its name with another key does not count.
  const impostor = await fakeAgent('node-silent');
  t.true(registry.noteAlive(heartbeatOf(alive)), 'the node\'s own heartbeat is a sign of life');
  t.false(registry.noteAlive(heartbeatOf(impostor)), 'another identity key under a registered name is not');
  const heardAt = clock.now();
  t.true(heardAt - t0 < NODE_TTL);

  // Writes pass again; the lapsed leader renews by compare-and-set and serves on (same term).
  bucket.releaseAll();
  await waitFor(
    () => {
      if (lease.holds()) return true;
      const next = clock.wakeups[0];
      if (next !== undefined) clock.advanceTo(next);
      return false;
    },
    { timeoutMs: 10_000, intervalMs: 1, what: 'the lease renewed after the lapse' },
  );

  // A node TTL after the last answered heartbeat: the silent node (and the impostor's try) expires, the node heard during the lapse does not.
  clock.advanceTo(t0 + NODE_TTL);
  t.true(clock.now() - heardAt < NODE_TTL);
  await registry.expireDue();
  t.deepEqual(registry.liveNodeNames().sort(), ['node-alive'], 'only the node silent for a whole TTL expired');
});
