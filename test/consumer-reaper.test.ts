// The coordinator's consumer reaper against a fake consumer API (the real server path is in
// test/nats-auth.test.ts): only durables go, each removal is logged and published, failures are
// retried by the next sweep, and the sweep runs on the injected clock.
import test from 'ava';
import { pino } from 'pino';
import { JetStreamApiError } from '@nats-io/jetstream';
import { ConsumerReaper, consumerCreatedAdvisory, type ConsumerApi, type ConsumerView } from '../coordinator/consumer-reaper.ts';
import { isConsumerNotFound, natsConsumerApi, type NatsConsumers } from '../coordinator/consumer-reaper-nats.ts';
import type { EventInput, EventPublisher } from '../protocol/events.ts';
import { waitFor } from '../lib/wait.ts';
import { ManualClock } from './helpers/manual-clock.ts';

class FakeApi implements ConsumerApi {
  readonly consumers = new Map<string, ConsumerView>();
  readonly deleted: string[] = [];
  failDelete: Error | null = null;
  failList: Error | null = null;
  lists = 0;
  add(name: string, durable: boolean): void {
    this.consumers.set(name, { name, config: { ...(durable ? { durable_name: name } : {}), filter_subject: '$KV.crosslink.nodes.>', deliver_subject: `_INBOX.${name}` } });
  }
  list(): Promise<readonly ConsumerView[]> {
    this.lists++;
    if (this.failList) return Promise.reject(this.failList);
    return Promise.resolve([...this.consumers.values()]);
  }
  info(name: string): Promise<ConsumerView | null> {
    return Promise.resolve(this.consumers.get(name) ?? null);
  }
  delete(name: string): Promise<boolean> {
    if (this.failDelete) return Promise.reject(this.failDelete);
    if (!this.consumers.delete(name)) return Promise.resolve(false);
    this.deleted.push(name);
    return Promise.resolve(true);
  }
}

function setup(random = (): number => 0): { api: FakeApi; reaper: ConsumerReaper; clock: ManualClock; events: EventInput[]; logs: string[] } {
  const api = new FakeApi();
  const clock = new ManualClock();
  const events: EventInput[] = [];
  const publisher: EventPublisher = { publish: (e) => void events.push(e) };
  const logs: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => void logs.push(line) });
  const reaper = new ConsumerReaper({ stream: 'KV_crosslink', api, clock, logger, events: publisher, sweepIntervalMs: 10_000, random });
  return { api, reaper, clock, events, logs };
}

test('an ephemeral consumer asking to outlive its reader is removed like a durable; Crosslink\'s own thresholds are not', async (t) => {
  const { api, reaper } = setup();
  const min = 60e9;
  const add = (name: string, inactive: number | undefined): void => void api.consumers.set(name, { name, config: { filter_subject: '$KV.crosslink.nodes.>', inactive_threshold: inactive } });
  add('watch', 5 * min);
  add('audit', 1 * min);
  add('server-default', undefined);
  add('lingering', 365 * 24 * 60 * min);
  t.is(await reaper.sweep(), 1);
  t.deepEqual([...api.consumers.keys()].sort(), ['audit', 'server-default', 'watch']);
});

test('advisory subject: every consumer created on the bucket stream', (t) => {
  t.is(consumerCreatedAdvisory('KV_crosslink'), '$JS.EVENT.ADVISORY.CONSUMER.CREATED.KV_crosslink.*');
});

test('sweep removes durables only, logs and publishes each', async (t) => {
  const { api, reaper, events, logs } = setup();
  api.add('KV_WATCHER_abc', false);
  api.add('oc_xyz_2', false);
  api.add('evil', true);
  api.add('evil2', true);
  t.is(await reaper.sweep(), 2);
  t.deepEqual([...api.consumers.keys()], ['KV_WATCHER_abc', 'oc_xyz_2']);
  t.deepEqual(events.map((e) => [e.type, e.severity, e.details?.['consumer'], e.details?.['found']]), [
    ['consumer-removed', 'warning', 'evil', 'sweep'],
    ['consumer-removed', 'warning', 'evil2', 'sweep'],
  ]);
  t.is(logs.filter((l) => l.includes('removed a durable or long-lived consumer')).length, 2);
  t.is(reaper.removed, 2);
});

test('advisory: a new durable goes at once; a watch, or a consumer already gone, is left alone', async (t) => {
  const { api, reaper, events } = setup();
  api.add('evil', true);
  api.add('KV_WATCHER_abc', false);
  await reaper.onCreated('evil');
  await reaper.onCreated('KV_WATCHER_abc');
  await reaper.onCreated('vanished');
  t.deepEqual(api.deleted, ['evil']);
  t.deepEqual(events.map((e) => e.details?.['found']), ['advisory']);
});

test('fault: a failed delete is logged, not counted, and retried by the next sweep; a consumer gone already is no failure', async (t) => {
  const { api, reaper, events, logs } = setup();
  api.add('evil', true);
  api.failDelete = new Error('timeout');
  await reaper.onCreated('evil');
  t.is(await reaper.sweep(), 0);
  t.true(api.consumers.has('evil'));
  t.is(events.length, 0);
  t.true(logs.some((l) => l.includes('could not remove a durable consumer')));
  api.failDelete = null;
  t.is(await reaper.sweep(), 1);
  t.false(api.consumers.has('evil'));
  // Removed meanwhile by someone else (another replica): neither an error nor a removal of ours.
  api.add('evil2', true);
  api.delete = () => Promise.resolve(false);
  const warnings = logs.length;
  t.is(await reaper.sweep(), 0);
  t.is(logs.length, warnings);
  t.is(events.length, 1);
});

test('the first sweep waits half to one interval (not at the takeover, with the fleet\'s re-heartbeat), then every interval on the injected clock; survives a failed list, and stops', async (t) => {
  const early = setup(() => 0);
  const late = setup(() => 0.999);
  t.is(early.reaper.firstSweepDelayMs, 5000);
  t.is(late.reaper.firstSweepDelayMs, 9995);
  const { api, reaper, clock } = early;
  api.failList = new Error('no responders');
  const startedAt = clock.now();
  reaper.start();
  await waitFor(() => clock.hasSleeperAt(startedAt + 5000), { timeoutMs: 5000, what: 'the wait for the first sweep' });
  t.is(api.lists, 0, 'no sweep at the takeover');
  clock.advance(5000);
  await waitFor(() => api.lists === 1 && clock.hasSleeperAt(startedAt + 15_000), { timeoutMs: 5000, what: 'the first sweep, then a sleep' });
  api.failList = null;
  api.add('evil', true);
  clock.advance(10_000);
  await waitFor(() => api.deleted.includes('evil') && clock.hasSleeperAt(startedAt + 25_000), { timeoutMs: 5000, what: 'the second sweep' });
  t.is(api.lists, 2);
  await reaper.stop();
  t.is(clock.sleepers, 0);
  api.add('evil2', true);
  await reaper.onCreated('evil2');
  t.true(api.consumers.has('evil2'), 'nothing after stop');
});

test('a consumer info without config (the consumer vanished before the info request) is skipped, never a crash', async (t) => {
  const { api, reaper } = setup();
  api.consumers.set('oc_gone', { name: 'oc_gone' } as unknown as ConsumerView);
  await t.notThrowsAsync(reaper.onCreated('oc_gone'));
  t.is(await reaper.sweep(), 0);
  t.deepEqual(api.deleted, []);
});

test('a burst of advisories: at most `concurrency` checks in flight, the queue bounded (the rest left to the sweep), durables among them removed', async (t) => {
  const api = new FakeApi();
  let inFlight = 0;
  let peak = 0;
  const release: (() => void)[] = [];
  const info = api.info.bind(api);
  api.info = async (name: string): Promise<ConsumerView | null> => {
    inFlight++;
    peak = Math.max(peak, inFlight);
    await new Promise<void>((r) => release.push(r));
    inFlight--;
    return info(name);
  };
  const logs: string[] = [];
  const reaper = new ConsumerReaper({ stream: 'KV_crosslink', api, clock: new ManualClock(), logger: pino({ level: 'warn' }, { write: (l: string) => void logs.push(l) }), concurrency: 2, maxQueued: 5 });
  for (let i = 0; i < 10; i++) api.add(`c${i}`, i === 1 || i === 9);
  for (let i = 0; i < 10; i++) reaper.enqueue(`c${i}`);
  // 2 in flight, 5 queued, 3 dropped (c7, c8, c9).
  t.is(reaper.dropped, 3);
  t.is(logs.filter((l) => l.includes('too many new consumers')).length, 1, 'warned once, not per advisory');
  for (let spins = 0; (api.deleted.length < 1 || release.length > 0 || inFlight > 0) && spins < 10_000; spins++) {
    t.true(inFlight <= 2);
    const r = release.shift();
    if (r) r();
    await new Promise((res) => setImmediate(res));
  }
  t.is(peak, 2);
  t.deepEqual(api.deleted, ['c1']);
  t.true(api.consumers.has('c9'), 'dropped: not checked yet');
  t.is(await reaper.sweep(), 1, 'the sweep removes the durable the burst left behind');
  t.deepEqual(api.deleted, ['c1', 'c9']);
});

test('stop waits for the advisory checks in flight, and such a check removes nothing once stopped', async (t) => {
  const { api, reaper, events } = setup();
  api.add('evil', true);
  let release: (() => void) | undefined;
  const info = api.info.bind(api);
  let asked = 0;
  api.info = async (name: string): Promise<ConsumerView | null> => {
    asked++;
    await new Promise<void>((r) => (release = r));
    return info(name);
  };
  reaper.enqueue('evil');
  await waitFor(() => asked === 1, { timeoutMs: 5000, what: 'the check to ask for the consumer' });
  let stopped = false;
  const stopping = reaper.stop().then(() => (stopped = true));
  // The check cannot finish before it is released, so stop cannot have resolved either.
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  t.false(stopped, 'stop resolved while a check was still in flight');
  release?.();
  await stopping;
  t.deepEqual(api.deleted, [], 'a term that ended removes nothing');
  t.deepEqual(events, []);
});

test('nats adapter: only "consumer not found" (10014) means gone; "stream not found" (10059) is a failure', async (t) => {
  const apiError = (err_code: number, description: string): JetStreamApiError => new JetStreamApiError({ code: 404, err_code, description });
  let failure: JetStreamApiError = apiError(10014, 'consumer not found');
  const consumers = {
    list: () => {
      throw new Error('not used');
    },
    info: () => Promise.reject(failure),
    delete: () => Promise.reject(failure),
  } as unknown as NatsConsumers;
  const api = natsConsumerApi(consumers, 'KV_crosslink');
  t.is(await api.info('gone'), null);
  t.false(await api.delete('gone'));
  failure = apiError(10059, 'stream not found');
  await t.throwsAsync(api.info('x'), { message: 'stream not found' });
  await t.throwsAsync(api.delete('x'), { message: 'stream not found' });
  t.true(isConsumerNotFound(apiError(10014, 'whatever the text says')));
  t.false(isConsumerNotFound(new Error('consumer not found')), 'by code, not by text');
});
