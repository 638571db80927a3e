// Health-driven gateway failover over a real nats-server and a real Coordinator: signed gateway
// verdicts published by two reporters on `<prefix>.gateway-health` make the leader replace a gateway
// that still heartbeats (node TTL 30 s: no expiry is involved); a forged verdict does not count.
// The quorum and hostile-node rules themselves are table-tested in gateway-health.test.ts.
import test from 'ava';
import { fakeAgent, type FakeAgent } from './helpers/fake-agent.ts';
import { waitFor } from '../lib/wait.ts';
import type { GatewayHealthReport } from '../protocol/gateway-health.ts';
import { signEnvelope } from '../protocol/signing.ts';
import { subjects } from '../protocol/subjects.ts';
import { readClusterRecord, startCoordinatorEnv } from './helpers/coordinator-fixture.ts';
import { useNatsServer } from './helpers/nats-fixture.ts';

const server = useNatsServer('xl-gwhealth');

test('two signed down verdicts replace a gateway that still heartbeats; a forged one does not count', async (t) => {
  const env = await startCoordinatorEnv(t, { natsUrl: server().url, bucketTag: 'xlgwh', config: { nodeTtl: '30s' } });
  const base = { cluster: 'gcp', topology: 'gateway' as const, gatewayEligible: true };
  const g1 = await fakeAgent('gcp-g1', { ...base, endpoints: ['203.0.113.1:51820'], podCidrs: ['10.50.1.0/24'] });
  const g2 = await fakeAgent('gcp-g2', { ...base, endpoints: ['203.0.113.2:51820'], podCidrs: ['10.50.2.0/24'] });
  const r1 = await fakeAgent('aws-n1', { cluster: 'aws', endpoints: ['198.51.100.1:51820'], podCidrs: ['10.60.1.0/24'] });
  const r2 = await fakeAgent('azure-n1', { cluster: 'azure', endpoints: ['198.51.100.2:51820'], podCidrs: ['10.70.1.0/24'] });
  for (const a of [g1, g2, r1, r2]) t.true((await env.client.register(a)).ok, a.name);
  const gatewayIs = (name: string) =>
    waitFor(async () => {
      const c = await readClusterRecord(env.kv, env.key, 'gcp');
      return c?.gateway === name ? c : undefined;
    }, { timeoutMs: 10_000, intervalMs: 50, what: `${name} as gateway of gcp` });
  const before = await gatewayIs('gcp-g1');

  const subject = subjects(env.prefix).gatewayHealth;
  let at = Date.now();
  const publish = async (reporter: string, signer: FakeAgent, state: 'up' | 'down', reportAt = ++at): Promise<void> => {
    const report: GatewayHealthReport = { kind: 'gateway-health', v: 1, reporter, at: reportAt, verdicts: [{ gateway: 'gcp-g1', state }] };
    env.nc.publish(subject, JSON.stringify(await signEnvelope(report, signer.identity.secretKey)));
    await env.nc.flush();
  };
  // aws-n1's verdict forged with azure-n1's key, dated ahead: had it counted, aws-n1's real (older)
  // report below would be refused as a replay and no quorum would ever form.
  await publish('aws-n1', r2, 'down', at + 20_000);
  await publish('azure-n1', r2, 'down');
  // aws-n1's real verdict completes the quorum.
  const sentAt = Date.now();
  await publish('aws-n1', r1, 'down');
  const after = await gatewayIs('gcp-g2');
  t.log(`measured: quorum-completing report → new gateway in the bucket ${Date.now() - sentAt} ms`);
  t.is(after.gatewayEpoch, before.gatewayEpoch + 1);
  t.true((await readClusterRecord(env.kv, env.key, 'gcp'))?.gateway === 'gcp-g2');
});
