// A registration while the bucket's stream cannot be written (a NATS server loss: the stream elects a
// new leader): the agent is told so in words an operator understands, still `internal` (the agent
// registers again, as after any write that may be half done), and the coordinator logs it once per
// interval instead of an error line per request (a whole fleet re-registering at once).
import test from 'ava';
import { pino } from 'pino';
import { GatedKv } from './helpers/gated-kv.ts';
import { fakeAgent, signedRegistration } from './helpers/fake-agent.ts';
import { addCluster } from '../coordinator/cluster-admin.ts';
import { defaultRunOptions, parseCoordinatorConfig } from '../coordinator/config.ts';
import { Liveness } from '../coordinator/liveness.ts';
import { Registry } from '../coordinator/registry.ts';
import { StateStore } from '../coordinator/store.ts';
import { systemClock } from '../lib/clock.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';

test('registrations while JetStream cannot write the bucket: a reply that says so, one log line, not one error per request', async (t) => {
  const lines: { level: number; msg: string }[] = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => void lines.push(JSON.parse(l) as { level: number; msg: string }) });
  const signingKey = await generateSigningKeyPair();
  const store = new StateStore(new GatedKv().kv, signingKey, logger);
  const { credential } = await addCluster({ store, clock: systemClock }, { name: 'c1', podCidrs: ['10.10.0.0/16'], topology: 'mesh', allowPublic: false });
  const config = parseCoordinatorConfig({ ...defaultRunOptions(), natsUrl: 'nats://127.0.0.1:4222', overlayCidr: '100.96.0.0/24' });
  const registry = await Registry.load({ store, clock: systemClock, logger, config, liveness: new Liveness(), holdsLease: () => true });
  // nats.js's error for "no responders" on a JetStream subject: what a write gets while the stream has no leader.
  store.putIpam = () => Promise.reject(Object.assign(new Error('jetstream is not enabled'), { name: 'JetStreamNotEnabled' }));
  lines.length = 0;
  for (let i = 0; i < 5; i++) {
    const a = await fakeAgent(`js-${i}`, { cluster: 'c1', podCidrs: [`10.10.${i}.0/24`] });
    const reply = await registry.register(Buffer.from(await signedRegistration(a.request(), a.identity.secretKey, credential)));
    t.false(reply.ok);
    if (reply.ok) return;
    t.is(reply.error.code, 'internal');
    t.regex(reply.error.message, /bucket cannot be written right now \(NATS JetStream unavailable: jetstream is not enabled; .*elects a new leader.*\); retry$/);
  }
  const about = lines.filter((l) => /JetStream unavailable/.test(l.msg));
  t.is(about.filter((l) => l.level >= 40).length, 1, 'one warning for the five');
  t.is(lines.filter((l) => l.level >= 50).length, 0, 'no error line per request');
});
