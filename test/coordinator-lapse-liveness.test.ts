// A lapse is not a loss (coordinator/lease.ts), and a node heard during one is alive: while the
// leader's renewal is stuck it answers heartbeats "unavailable" and writes nothing, but the
// heartbeats it takes (Registry.noteAlive, as coordinator.ts calls it during a lapse) count as signs
// of life, so once the lapse is survived no node that kept heartbeating expires by a TTL counted
// from before it. First a real LeaderLease and Registry on one in-memory bucket
// (test/helpers/gated-kv.ts) and one manual clock; then the real Coordinator on a real nats-server
// whose lease writes the test holds (CoordinatorDeps.wrapBucket), on a manual clock: no real-time sleep.
import test from 'ava';
import type { KV } from '@nats-io/kv';
import { GatedKv } from './helpers/gated-kv.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { fakeAgent, signedRegistration, type FakeAgent } from './helpers/fake-agent.ts';
import { addCluster } from '../coordinator/cluster-admin.ts';
import { defaultRunOptions, parseCoordinatorConfig } from '../coordinator/config.ts';
import { LAPSE_GRACE_MS, LeaderLease } from '../coordinator/lease.ts';
import { Liveness } from '../coordinator/liveness.ts';
import { Registry } from '../coordinator/registry.ts';
import { StateStore } from '../coordinator/store.ts';
import { silentLogger } from '../lib/logger.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { present, startCoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';
import { waitFor } from '../lib/wait.ts';
import type { Heartbeat } from '../protocol/messages.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';

const server = useNatsServer('xl-lapse');

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

/** The bucket as the coordinator sees it, with its lease renewals held while `held` (the stream takes no writes). */
class LeaseWritesHeld {
  held = false;
  /** Lease writes under way on the server (released or never held), not yet answered. */
  active = 0;
  private readonly waiting: (() => void)[] = [];
  get inFlight(): number {
    return this.waiting.length;
  }
  wrap(kv: KV): KV {
    return new Proxy(kv, {
      get: (target, prop) => {
        if (prop === 'update') {
          return (key: string, ...rest: unknown[]): Promise<number> => {
            const write = (): Promise<number> => (target.update as (k: string, ...r: unknown[]) => Promise<number>)(key, ...rest);
            if (key !== kvKeys.lease) return write();
            const counted = (): Promise<number> => {
              this.active++;
              return write().finally(() => this.active--);
            };
            return this.held ? new Promise<void>((r) => this.waiting.push(r)).then(counted) : counted();
          };
        }
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
  }
  release(): void {
    this.held = false;
    for (const r of this.waiting.splice(0)) r();
  }
}

test('the real coordinator: a heartbeat answered "unavailable" during a lapse keeps its node alive once the lapse is survived', async (t) => {
  const clock = new ManualClock(Date.now());
  const lease = new LeaseWritesHeld();
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xllapse', config: { nodeTtl: `${NODE_TTL}ms`, leaseTtl: `${LEASE_TTL}ms`, maxClockSkew: '1h' }, clock, wrapBucket: (kv) => lease.wrap(kv) });
  t.teardown(() => lease.release());
  const alive = await fakeAgent('node-alive', { podCidrs: ['10.10.1.0/24'] });
  const silent = await fakeAgent('node-silent', { podCidrs: ['10.10.2.0/24'] });
  for (const a of [alive, silent]) t.like(await env.client.register(a), { ok: true });
  const t0 = clock.now();
  for (const a of [alive, silent]) t.like(await env.client.heartbeat(a), { ok: true });

  // The stream takes no writes: the next renewal hangs; a lease TTL later the leader has lapsed.
  // The lease loop sleeps a third of the TTL between renewals: one such period wakes it.
  lease.held = true;
  clock.advance(LEASE_TTL / 3);
  await waitFor(() => lease.inFlight > 0, { timeoutMs: 10_000, intervalMs: 5, what: 'the renewal held' });
  t.true(lease.inFlight > 0, 'a renewal is held');
  clock.advance(LEASE_TTL);
  t.false(env.coordinator.isLeader(), 'lapsed: not writing');
  const during = await env.client.heartbeat(alive);
  t.like(during, { ok: false, error: { code: 'unavailable' } });
  t.regex(during.ok ? '' : during.error.message, /renewing its leader lease/);
  const heardAt = clock.now();

  // Writes pass again: the held renewal lands (compare-and-set: nobody else led), the next one restores
  // the lease. Time moves only while no lease write is on its way (never past the grace on a slow box).
  lease.release();
  await waitFor(
    () => {
      if (env.coordinator.isLeader()) return true;
      if (lease.active === 0) clock.advance(50);
      return false;
    },
    { timeoutMs: 10_000, intervalMs: 5, what: 'the lease renewed after the lapse' },
  );
  t.true(clock.now() - heardAt < LAPSE_GRACE_MS, 'the term survived the lapse');

  // Expiry rounds up to a node TTL after the last answered heartbeat: the silent node goes, the one heard during the lapse stays.
  await waitFor(
    () => {
      if (env.events.some((e) => e.key === kvKeys.node('node-silent') && e.op === 'DEL')) return true;
      if (clock.now() < t0 + NODE_TTL + 2000) clock.advance(100);
      return false;
    },
    { timeoutMs: 15_000, intervalMs: 10, what: 'the silent node expired' },
  );
  t.true(clock.now() - heardAt < NODE_TTL, 'the node heard during the lapse is within its TTL');
  t.true(await present(env.kv, kvKeys.node('node-alive')), 'not expired by a TTL counted from before the lapse');
  t.false(env.events.some((e) => e.key === kvKeys.node('node-alive') && e.op === 'DEL'));
});
