// agent/services/export-client.ts: an export or unexport request lost with the NATS connection (its
// server went away) ends at the disconnect as 'unavailable' (the caller retries; the API answers 503),
// not at its timeout — on a fake connection whose request never answers.
import test from 'ava';
import type { Msg, NatsConnection, Status } from '@nats-io/transport-node';
import { ServiceRequestError, requestExport, requestUnexport } from '../agent/services/export-client.ts';
import { ConnectionLostError } from '../lib/nats-request.ts';
import { ServiceExportRequest, ServiceUnexportRequest } from '../protocol/service.ts';
import { generateSigningKeyPair } from '../protocol/signing.ts';
import { scriptedStatus } from './helpers/scripted-status.ts';

const disconnect: Status = { type: 'disconnect', server: 'nats://127.0.0.1:4222' };

test('an export and an unexport lost with the connection end at the disconnect as unavailable, caused by ConnectionLostError', async (t) => {
  const subjects: string[] = [];
  const scripted = scriptedStatus({
    request: (subject: string) => {
      subjects.push(subject);
      return new Promise<Msg>(() => undefined); // never answered: the reply went with the server
    },
  } as unknown as NatsConnection);
  const identityKey = await generateSigningKeyPair();
  const coordinator = await generateSigningKeyPair();
  const o = { nc: scripted.nc, coordinatorKey: coordinator.publicKey, identityKey, subjectPrefix: 'xl-svcreq', timeoutMs: 600_000 };
  const unexport = ServiceUnexportRequest.parse({ v: 1, name: 'web', namespace: 'shop', cluster: 'aws', node: 'aws-n1', identityKey: identityKey.publicKey, sentAt: Date.now() });
  const exported = ServiceExportRequest.parse({ ...unexport, ports: [{ port: 80, protocol: 'TCP' }], addresses: ['10.1.0.5'] });
  const calls = [requestExport(o, exported), requestUnexport(o, unexport)];
  await new Promise<void>((r) => setImmediate(r));
  t.is(subjects.length, 2, 'both requests sent');
  scripted.say(disconnect);
  for (const call of calls) {
    const err = await t.throwsAsync(call, { instanceOf: ServiceRequestError });
    t.is(err?.failure, 'unavailable');
    t.true(err?.cause instanceof ConnectionLostError, 'the cause says the connection was lost');
  }
  t.is(scripted.open(), 0, 'no status stream left open');
});
