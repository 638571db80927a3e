// Per-cluster limits on live nodes and service exports (docs/security-review.md findings 7 and 8),
// against a real nats-server and coordinator. The adversary holds one cluster's join credential (or
// one live node of it) and asks for as many nodes (exports) as it can: exactly the limit gets in, the
// next is refused naming the limit and the count; other clusters are untouched; a live node
// re-registering (an export updated) at the limit is never refused; a node that expires (manual
// clock) or deregisters, an export withdrawn, frees its slot; and two requests racing for the last
// slot — held at the bucket write until both are in flight, or one was refused — never both get in.
import test from 'ava';
import type { KV } from '@nats-io/kv';
import { addCluster } from '../coordinator/cluster-admin.ts';
import { StateStore } from '../coordinator/store.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { waitFor } from '../lib/wait.ts';
import type { JoinCredential } from '../protocol/join-credential.ts';
import type { RegisterReply } from '../protocol/messages.ts';
import { ServiceReply, serviceKeys, serviceSubjects, type ServiceExportRecord } from '../protocol/service.ts';
import { kvKeys } from '../protocol/subjects.ts';
import { startCoordinatorEnv, present, type CoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { agentClient, fakeAgent, rpc, signed, type AgentClient, type FakeAgent } from './helpers/fake-agent.ts';
import { ManualClock } from './helpers/manual-clock.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';

const server = useNatsServer('xl-limits');

/** Enrolls clusters with limits through the operator's code path; a client that signs with their credentials. */
async function enrolled(env: CoordinatorEnv, clusters: { name: string; podCidr: string; maxNodes?: number; maxExports?: number }[]): Promise<AgentClient> {
  const credentials = new Map<string, JoinCredential>();
  for (const c of clusters) {
    const { name, podCidr, ...limits } = c;
    const r = await addCluster({ store: env.enrollment.store, clock: systemClock }, { name, podCidrs: [podCidr], topology: 'mesh', allowPublic: false, ...limits });
    credentials.set(name, r.credential);
  }
  return agentClient(env.nc, env.prefix, { credentialFor: (req) => Promise.resolve(credentials.get(req.cluster)) });
}

/** The bucket as the coordinator uses it, holding creates of keys under `prefix` while `held`. */
function holdingCreates(prefix: string): { wrap: (kv: KV) => KV; held: boolean; readonly pending: number; release(): void } {
  const waiting: (() => void)[] = [];
  const gate = {
    held: false,
    get pending(): number {
      return waiting.length;
    },
    release(): void {
      gate.held = false;
      for (const go of waiting.splice(0)) go();
    },
    wrap: (kv: KV): KV =>
      new Proxy(kv, {
        get: (target, prop) => {
          if (prop === 'create') {
            return async (key: string, ...rest: unknown[]): Promise<unknown> => {
              if (gate.held && key.startsWith(prefix)) await new Promise<void>((go) => waiting.push(go));
              return (target.create as (k: string, ...r: unknown[]) => Promise<unknown>)(key, ...rest);
            };
          }
          const v: unknown = Reflect.get(target, prop, target);
          return typeof v === 'function' ? (v as (...args: unknown[]) => unknown).bind(target) : v;
        },
      }),
  };
  return gate;
}

const LIMIT_MESSAGE = /cluster "c1" is at its node limit: 3 live nodes of at most 3; .*cluster set c1 --max-nodes N/;

test('a join credential registers exactly maxNodes new nodes; re-registration at the limit is taken; a deregistered or expired node frees its slot; other clusters are untouched', async (t) => {
  const clock = new ManualClock(Date.now());
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xllimitnodes', clock, config: { nodeTtl: '10s', leaseTtl: '1m', maxClockSkew: '1h' } });
  const client = await enrolled(env, [
    { name: 'c1', podCidr: '10.20.0.0/16', maxNodes: 3 },
    { name: 'c2', podCidr: '10.30.0.0/16', maxNodes: 3 },
  ]);
  // sentAt from the manual clock, strictly increasing (heartbeats and registrations share the replay mark).
  let seq = 0;
  const sentAt = (): number => clock.now() + ++seq;
  const node = (name: string, cluster: string, octet: number): Promise<FakeAgent> => fakeAgent(name, { cluster, podCidrs: [`${cluster === 'c1' ? '10.20' : '10.30'}.${octet}.0/24`] });
  const register = (a: FakeAgent, extra = {}): Promise<RegisterReply> => client.register(a, { sentAt: sentAt(), ...extra });

  const attacker = await Promise.all([1, 2, 3, 4, 5].map((i) => node(`evil-${i}`, 'c1', i)));
  const [e1, e2, e3, e4, e5] = attacker as [FakeAgent, FakeAgent, FakeAgent, FakeAgent, FakeAgent];
  for (const a of [e1, e2, e3]) t.like(await register(a), { ok: true }, `${a.name} is within the limit`);
  const refused = await register(e4);
  t.like(refused, { ok: false, error: { code: 'conflict', field: 'cluster' } });
  t.regex(refused.ok ? '' : refused.error.message, LIMIT_MESSAGE);
  t.false(await present(env.kv, kvKeys.node('evil-4')), 'nothing stored for the refused node');
  t.is((await env.kv.get(kvKeys.ipam('evil-4')))?.operation, undefined, 'no overlay address for it either');

  t.like(await register(await node('honest-1', 'c2', 1)), { ok: true }, "another cluster's node still registers");
  t.like(await register(e1), { ok: true }, 'a live node re-registering at the limit (an agent restart) is taken');
  t.like(await register(e2, { endpoints: ['192.0.2.22:51820'] }), { ok: true }, 'and so is one re-registering with changes');

  t.like(await client.deregister(e2, { sentAt: sentAt() }), { ok: true });
  t.like(await register(e4), { ok: true }, 'the deregistered node freed its slot');
  t.like(await register(e5), { ok: false, error: { code: 'conflict', field: 'cluster' } }, 'and the cluster is full again');

  // e3 falls silent; e1 and e4 heartbeat on. Once e3 has expired (a TTL after its registration),
  // its slot is free and e5 gets in.
  await waitFor(
    async () => {
      clock.advance(500);
      for (const a of [e1, e4]) t.like(await client.heartbeat(a, { sentAt: sentAt() }), { ok: true });
      return !(await present(env.kv, kvKeys.node('evil-3')));
    },
    { timeoutMs: 20_000, intervalMs: 10, what: 'evil-3 to expire' },
  );
  t.true(await present(env.kv, kvKeys.node('evil-1')), 'the heartbeating nodes stay');
  t.like(await register(e5), { ok: true }, 'the expired node freed its slot');
  const again = await register(e2);
  t.regex(again.ok ? '' : again.error.message, LIMIT_MESSAGE, 'full again: the deregistered node is a new node now');
});

test('two registrations racing for the last slot: exactly one gets in', async (t) => {
  const gate = holdingCreates('ipam.');
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xllimitrace', config: { nodeTtl: '60s' }, wrapBucket: gate.wrap });
  const client = await enrolled(env, [{ name: 'c1', podCidr: '10.20.0.0/16', maxNodes: 2 }]);
  t.like(await client.register(await fakeAgent('first', { podCidrs: ['10.20.1.0/24'] })), { ok: true });
  const [x, y] = await Promise.all([fakeAgent('racer-x', { podCidrs: ['10.20.2.0/24'] }), fakeAgent('racer-y', { podCidrs: ['10.20.3.0/24'] })]);
  gate.held = true;
  const replies: RegisterReply[] = [];
  const racing = [x, y].map((a) => client.register(a).then((r) => replies.push(r)));
  // Both are in flight at once: either both reached the bucket write (no limit held them apart), or
  // one was refused while the other waits at it.
  await waitFor(() => gate.pending >= 2 || (gate.pending === 1 && replies.length === 1), { timeoutMs: 10_000, intervalMs: 5, what: 'both registrations in flight' });
  gate.release();
  await Promise.all(racing);
  t.is(replies.filter((r) => r.ok).length, 1, JSON.stringify(replies));
  const loser = replies.find((r) => !r.ok);
  t.like(loser, { ok: false, error: { code: 'conflict', field: 'cluster' } });
  t.regex(loser && !loser.ok ? loser.error.message : '', /cluster "c1" is at its node limit: 1 live node and 1 registering of at most 2; /);
  const live = await Promise.all(['racer-x', 'racer-y'].map((n) => present(env.kv, kvKeys.node(n))));
  t.is(live.filter(Boolean).length, 1, 'one racer is stored');
});

/** A live node of `cluster` exporting or withdrawing services (its own signed requests). */
function exporter(env: CoordinatorEnv, a: FakeAgent, cluster: string, address: string) {
  const subjects = serviceSubjects(env.prefix);
  const base = (name: string) => ({ v: 1, node: a.name, identityKey: a.identity.publicKey, cluster, namespace: 'default', name, sentAt: a.nextSentAt() });
  return {
    export: async (name: string, port = 80): Promise<ServiceReply> =>
      rpc(env.nc, subjects.export, await signed({ ...base(name), ports: [{ name: '', port, protocol: 'TCP' }], addresses: [address] }, a.identity.secretKey), ServiceReply),
    unexport: async (name: string): Promise<ServiceReply> => rpc(env.nc, subjects.unexport, await signed(base(name), a.identity.secretKey), ServiceReply),
  };
}

test('a live node creates exactly maxExports exports; updates at the limit are taken; an unexport frees a slot; exports already in the bucket count; other clusters are untouched', async (t) => {
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xllimitexp', config: { nodeTtl: '60s' } });
  const client = await enrolled(env, [
    { name: 'c1', podCidr: '10.20.0.0/16', maxExports: 3 },
    { name: 'c2', podCidr: '10.30.0.0/16', maxExports: 1 },
  ]);
  const n1 = await fakeAgent('n1', { podCidrs: ['10.20.1.0/24'] });
  const n2 = await fakeAgent('n2', { cluster: 'c2', podCidrs: ['10.30.1.0/24'] });
  t.like(await client.register(n1), { ok: true });
  t.like(await client.register(n2), { ok: true });
  // One export of c1 is already in the bucket (a previous leader's): it counts against the limit.
  const store = new StateStore(env.kv, env.key, silentLogger());
  const now = Date.now();
  const old: ServiceExportRecord = { kind: 'service-export', v: 1, namespace: 'default', name: 'old', cluster: 'c1', ports: [{ name: '', port: 80, protocol: 'TCP' }], addresses: ['10.20.1.9'], exportedBy: 'n1', createdAt: now, updatedAt: now, generation: 1 };
  await store.putSignedAt(serviceKeys.export('default', 'old', 'c1'), old, undefined);

  const e = exporter(env, n1, 'c1', '10.20.1.5');
  t.like(await e.export('svc-1'), { ok: true });
  t.like(await e.export('svc-2'), { ok: true });
  const refused = await e.export('svc-3');
  t.like(refused, { ok: false, error: { code: 'conflict', field: 'cluster' } });
  t.regex(refused.ok ? '' : refused.error.message, /cluster "c1" is at its service export limit: 3 exports of at most 3; .*cluster set c1 --max-exports N/);
  t.false(await present(env.kv, serviceKeys.export('default', 'svc-3', 'c1')), 'nothing stored for the refused export');

  t.like(await e.export('svc-1', 8080), { ok: true }, 'an update of an export at the limit is taken');
  t.like(await exporter(env, n2, 'c2', '10.30.1.5').export('svc-1'), { ok: true }, "another cluster's export is untouched");
  t.like(await e.unexport('svc-2'), { ok: true });
  t.like(await e.export('svc-3'), { ok: true }, 'the withdrawn export freed its slot');
  t.like(await e.export('svc-4'), { ok: false, error: { code: 'conflict', field: 'cluster' } }, 'and the cluster is full again');
});

test('two new exports racing for the last slot: exactly one gets in', async (t) => {
  const gate = holdingCreates('services.');
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xllimitexprace', config: { nodeTtl: '60s' }, wrapBucket: gate.wrap });
  const client = await enrolled(env, [{ name: 'c1', podCidr: '10.20.0.0/16', maxExports: 2 }]);
  const n1 = await fakeAgent('n1', { podCidrs: ['10.20.1.0/24'] });
  t.like(await client.register(n1), { ok: true });
  const e = exporter(env, n1, 'c1', '10.20.1.5');
  t.like(await e.export('svc-1'), { ok: true });
  gate.held = true;
  const replies: ServiceReply[] = [];
  const racing = ['svc-2', 'svc-3'].map((name) => e.export(name).then((r) => replies.push(r)));
  await waitFor(() => gate.pending >= 2 || (gate.pending === 1 && replies.length === 1), { timeoutMs: 10_000, intervalMs: 5, what: 'both exports in flight' });
  gate.release();
  await Promise.all(racing);
  t.is(replies.filter((r) => r.ok).length, 1, JSON.stringify(replies));
  const loser = replies.find((r) => !r.ok);
  t.regex(loser && !loser.ok ? loser.error.message : '', /cluster "c1" is at its service export limit: 1 export and 1 being written of at most 2; /);
});
