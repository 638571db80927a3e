// The watch broker's budget per node (docs/security-review.md finding 6), against a real nats-server
// and a real coordinator with small injected budgets. The adversary holds an agent NATS user but no
// node's heartbeat MAC key K: it floods watch-broker requests without a MAC, with a MAC under a fresh
// key naming a real node, naming a made-up node, and a stale one, until the shared budget is empty
// (they are answered `rate-limited`); an honest registered agent's MAC'd requests (K_watch, headers)
// are still served at once, from its own budget (bounded too); a request without headers (an older
// agent) draws from the shared budget — served while it has tokens, refused once the flood emptied it.
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { headers } from '@nats-io/transport-node';
import { brokeredWatchSource, watchMacHeaders, WatchBrokerError, type BrokeredWatchSource } from '../agent/control/brokered-watch.ts';
import type { CoordinatorMetricsHooks } from '../coordinator/metrics.ts';
import { NODE_WATCH_BUDGET_DEFAULTS } from '../coordinator/watch-broker.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { subjects } from '../protocol/subjects.ts';
import { WatchReply } from '../protocol/watch-broker.ts';
import { watchRequestMacKey, WATCH_MAC_HEADERS, type WatchRequestAuthOutcome, type WatchRequestMac } from '../protocol/watch-request-mac.ts';
import { agentClient, fakeAgent } from './helpers/fake-agent.ts';
import { startCoordinatorEnv, type CoordinatorEnvOptions } from './helpers/coordinator-fixture.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';

const server = useNatsServer('xl-watchbudget');

const SHARED = 3;
const PER_NODE = 4;
/** Refills too slow to matter while the test runs. */
const SLOW = 0.001;

test('a flood without a valid MAC empties only the shared budget: an honest agent\'s MAC\'d requests are served at once from its own; an older agent (no headers) shares the flood\'s budget', async (t) => {
  const auth = new Map<WatchRequestAuthOutcome, number>();
  const metrics: CoordinatorMetricsHooks = {
    registration: () => undefined,
    heartbeat: () => undefined,
    heartbeatForm: () => undefined,
    heartbeatMacAgreement: () => undefined,
    nodeRemoved: () => undefined,
    watchRequestAuth: (o) => auth.set(o, (auth.get(o) ?? 0) + 1),
  };
  const env = await startCoordinatorEnv(t, {
    natsUrl: server().url,
    bucketTag: 'xlwatchbudget',
    config: { nodeTtl: '60s', leaseTtl: '30s' },
    metrics,
    bounds: { watchBudgets: { burst: SHARED, ratePerSecond: SLOW, nodeBudget: { ...NODE_WATCH_BUDGET_DEFAULTS, burst: PER_NODE, ratePerSecond: SLOW } } },
  });
  const subject = subjects(env.prefix).watch;
  const client = agentClient(env.nc, env.prefix, { credentialFor: env.enrollment.credentialFor, heartbeatMac: env.key.publicKey });
  const honest = await fakeAgent('node-honest', { podCidrs: ['10.20.1.0/24'] });
  t.true((await client.register(honest)).ok);
  const k = honest.heartbeatMac.current;
  if (k === undefined) return t.fail('the honest agent agreed no heartbeat MAC key');
  const mac: WatchRequestMac = { node: honest.name, key: watchRequestMacKey(k.key) };
  const source = (requestMac?: () => WatchRequestMac | undefined) =>
    brokeredWatchSource({ nc: env.nc, bucket: env.bucket, subjectPrefix: env.prefix, logger: silentLogger(), clock: systemClock, coordinatorKey: env.key.publicKey, ...(requestMac ? { requestMac } : {}) });
  const honestSource = source(() => mac);
  const olderAgent = source();
  const rateLimited = (err: unknown): boolean => err instanceof WatchBrokerError && err.code === 'rate-limited';

  // An older agent (no headers) is served from the shared budget while it has tokens.
  t.true((await olderAgent.count('nodes.>')).keys >= 1);
  t.is(auth.get('unsigned'), 1);

  // The flood: no MAC; a MAC under a fresh key naming the honest node; a made-up node; the honest
  // node's valid MAC but a sentAt far outside the clock skew (a captured request replayed late).
  const body = Buffer.from(JSON.stringify({ kind: 'count', filter: 'nodes.>' }), 'utf8');
  const forged = (node: string, key: Buffer, sentAt = Date.now()) => watchMacHeaders({ node, key }, sentAt, body);
  const bogus = headers();
  bogus.set(WATCH_MAC_HEADERS.node, honest.name);
  bogus.set(WATCH_MAC_HEADERS.sentAt, String(Date.now()));
  bogus.set(WATCH_MAC_HEADERS.mac, 'not a mac');
  const flood = [undefined, forged(honest.name, randomBytes(32)), forged('node-made-up', randomBytes(32)), forged(honest.name, mac.key, Date.now() - 3_600_000), bogus];
  const replies: WatchReply[] = [];
  for (let i = 0; i < 3; i++) {
    for (const h of flood) {
      const msg = await env.nc.request(subject, body, { timeout: 3000, ...(h === undefined ? {} : { headers: h }) });
      replies.push(WatchReply.parse(JSON.parse(msg.string())));
    }
  }
  // The shared budget had SHARED − 1 tokens left: the flood got those, then `rate-limited`.
  t.is(replies.filter((r) => r.ok).length, SHARED - 1);
  const refused = replies.slice(SHARED - 1);
  t.true(refused.every((r) => !r.ok && r.code === 'rate-limited'), JSON.stringify(refused));
  t.like(Object.fromEntries(auth), { unsigned: 1 + 3, 'bad-mac': 2 * 3, 'unknown-node': 3, stale: 3 });

  // The honest agent's MAC'd requests are served at once, from its own budget (bounded too; past it the
  // shared one, which the flood emptied).
  for (let i = 0; i < PER_NODE; i++) t.true((await honestSource.count('nodes.>')).keys >= 1, `honest request ${i + 1}`);
  t.is(auth.get('node'), PER_NODE);
  t.true(rateLimited(await honestSource.count('nodes.>').catch((err: unknown) => err)), 'past its own burst');

  // An older agent shares the flood's budget: empty now.
  t.true(rateLimited(await olderAgent.count('nodes.>').catch((err: unknown) => err)));
});

/**
 * A coordinator with `watchBudgets`, node-a and node-b registered, and two broker clients: node-a's
 * (its requests MAC'd) and an older agent's (no headers).
 */
async function twoNodes(t: ExecutionContext, bucketTag: string, watchBudgets: NonNullable<NonNullable<CoordinatorEnvOptions['bounds']>['watchBudgets']>): Promise<{ honest: BrokeredWatchSource; older: BrokeredWatchSource } | undefined> {
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag, config: { nodeTtl: '60s', leaseTtl: '30s' }, bounds: { watchBudgets } });
  const client = agentClient(env.nc, env.prefix, { credentialFor: env.enrollment.credentialFor, heartbeatMac: env.key.publicKey });
  const a = await fakeAgent('node-a', { podCidrs: ['10.20.1.0/24'] });
  const b = await fakeAgent('node-b', { podCidrs: ['10.20.2.0/24'] });
  t.true((await client.register(a)).ok);
  t.true((await client.register(b)).ok);
  const k = a.heartbeatMac.current;
  if (k === undefined) {
    t.fail('node-a agreed no heartbeat MAC key');
    return undefined;
  }
  const opts = { nc: env.nc, bucket: env.bucket, subjectPrefix: env.prefix, logger: silentLogger(), clock: systemClock, coordinatorKey: env.key.publicKey };
  return { older: brokeredWatchSource(opts), honest: brokeredWatchSource({ ...opts, requestMac: () => ({ node: a.name, key: watchRequestMacKey(k.key) }) }) };
}

test('catch-up: a MAC\'d page is read from the node\'s own entry budget while the shared one is empty', async (t) => {
  const nodes = await twoNodes(t, 'xlwatchbudgetcu', { catchUpEntryRate: { burst: 1, ratePerSecond: SLOW }, nodeBudget: { ...NODE_WATCH_BUDGET_DEFAULTS, ratePerSecond: SLOW } });
  if (!nodes) return;
  const { older, honest } = nodes;
  const ask = { filter: 'nodes.>', afterRevision: 0, limit: 10 };
  // The shared entry budget (1) is spent by an unsigned page; the next is refused.
  t.is((await older.catchUp(ask)).entries.length, 1);
  const err = await older.catchUp(ask).catch((e: unknown) => e);
  t.true(err instanceof WatchBrokerError && err.code === 'rate-limited', String(err));
  // node-a's page comes from its own budget: both records.
  t.is((await honest.catchUp(ask)).entries.length, 2);
});

test('a node past its own budget still draws on the shared one while it has tokens (a new agent reading a big mesh loses nothing it had)', async (t) => {
  const nodes = await twoNodes(t, 'xlwatchbudgetspill', { burst: 2, ratePerSecond: SLOW, catchUpEntryRate: { burst: 10, ratePerSecond: SLOW }, nodeBudget: { ...NODE_WATCH_BUDGET_DEFAULTS, burst: 1, ratePerSecond: SLOW, catchUpEntryRate: { burst: 1, ratePerSecond: SLOW } } });
  if (!nodes) return;
  const { honest } = nodes;
  // Its own request budget (1), then the shared one (2), then nothing.
  for (let i = 0; i < 3; i++) t.true((await honest.count('nodes.>')).keys >= 1, `request ${i + 1}`);
  const err = await honest.count('nodes.>').catch((e: unknown) => e);
  t.true(err instanceof WatchBrokerError && err.code === 'rate-limited', String(err));
  // Catch-up entries: its own (1) is spent by the first page; the shared entries (10) serve the rest.
  const ask = { filter: 'nodes.>', afterRevision: 0, limit: 10 };
  t.is((await honest.catchUp(ask)).entries.length, 1, 'its own budget: one entry');
  t.is((await honest.catchUp(ask)).entries.length, 2, 'then the shared entries: the whole page');
});
