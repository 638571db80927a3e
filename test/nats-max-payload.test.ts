// The max_payload Crosslink ships (protocol/nats-payload.ts): the config `crosslink-coordinator
// nats-config` renders sets it, and a real nats-server started with that config carries the largest
// legitimate message — a catch-up reply at its worst (CATCHUP_MAX_BYTES of values plus one more, every
// value a SignedEnvelope at its largest, 256 entries, the signed page), answered by the coordinator user
// to an agent's request through the accounts' service import — while a publish one byte over the limit
// is refused by the server itself (`Maximum Payload Violation`, on a raw connection: no client-side check).
// deploy/control-plane/nats.yaml: test/manifests.test.ts.
import test from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '@nats-io/transport-node';
import { renderAccounts, type NatsUserSpec } from '../coordinator/nats-permissions.ts';
import { freeLoopbackPort } from '../lib/nats-server.ts';
import { waitFor } from '../lib/wait.ts';
import { LARGEST_CATCHUP_REPLY_BYTES, NATS_MAX_PAYLOAD, SIGNED_ENVELOPE_MAX_BYTES } from '../protocol/nats-payload.ts';
import { subjects } from '../protocol/subjects.ts';
import { CATCHUP_MAX_BYTES, CATCHUP_MAX_LIMIT, CatchUpReply } from '../protocol/watch-broker.ts';

const P = 'xl.payload.v1';
const PASSWORDS = { coordinator: 'c-secret-1', agent: 'a-secret-2', reader: 'r-secret-3' };
const USERS: NatsUserSpec[] = [
  { user: 'crosslink-coordinator', role: 'coordinator', password: PASSWORDS.coordinator },
  { user: 'crosslink-agent', role: 'agent', password: PASSWORDS.agent },
  { user: 'crosslink-reader', role: 'reader', password: PASSWORDS.reader },
];

/** A SignedEnvelope's JSON of exactly `bytes` bytes (the largest: SIGNED_ENVELOPE_MAX_BYTES). */
const envelopeOf = (bytes: number): string => JSON.stringify({ payload: 'A'.repeat(bytes - SIGNED_ENVELOPE_MAX_BYTES + 65_536), sig: `${'A'.repeat(86)}==` });

/** The largest catch-up reply: 249 one-byte values, then values adding up to CATCHUP_MAX_BYTES - 1, then one more of the largest. */
function largestCatchUpReply(): string {
  const values: Buffer[] = Array.from({ length: 249 }, () => Buffer.from('x'));
  for (let i = 0; i < 5; i++) values.push(Buffer.from(envelopeOf(SIGNED_ENVELOPE_MAX_BYTES)));
  values.push(Buffer.from(envelopeOf(CATCHUP_MAX_BYTES - 1 - values.reduce((n, v) => n + v.length, 0))));
  values.push(Buffer.from(envelopeOf(SIGNED_ENVELOPE_MAX_BYTES)));
  if (values.length !== CATCHUP_MAX_LIMIT) throw new Error(`${values.length} values`);
  return JSON.stringify({ ok: true, page: JSON.parse(envelopeOf(SIGNED_ENVELOPE_MAX_BYTES)) as unknown, values: values.map((v) => v.toString('base64')) });
}

/**
 * Announces a publish of `bytes` bytes on `subject` over a raw client connection as `user` and, with
 * `payload`, sends them and a PING: the server's first line after it. A server refusing the size says
 * so on the PUB line itself and closes the connection, so the refused case sends no payload (writing
 * it would race the server's reset, which can discard the error line before it is read); a server
 * that took the size would wait for the payload and say nothing, and the deadline fails the test.
 */
function rawPublish(port: number, user: string, pass: string, subject: string, bytes: number, payload: boolean): Promise<{ info: { max_payload?: number }; answer: string }> {
  return new Promise((resolve, reject) => {
    const socket = connectTcp({ host: '127.0.0.1', port });
    let text = '';
    let info: { max_payload?: number } | undefined;
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer from nats-server: ${text.slice(0, 300)}`));
    }, 10_000);
    const done = (answer: string): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ info: info ?? {}, answer });
    };
    const verdict = (): string | undefined => {
      const rest = text.replace('PUB-SENT', '');
      return text.startsWith('PUB-SENT') && rest.includes('\r\n') ? rest.slice(0, rest.indexOf('\r\n')) : undefined;
    };
    socket.on('error', (err) => {
      const v = verdict();
      if (v !== undefined) return done(v);
      clearTimeout(timer);
      reject(err);
    });
    socket.on('data', (d: Buffer) => {
      text += d.toString('utf8');
      if (!info && text.includes('\r\n')) {
        info = JSON.parse(text.slice(text.indexOf('{'), text.indexOf('\r\n'))) as { max_payload?: number };
        text = text.slice(text.indexOf('\r\n') + 2);
        socket.write(`CONNECT ${JSON.stringify({ verbose: false, pedantic: false, user, pass, protocol: 1 })}\r\nPING\r\n`);
        return;
      }
      // The first PONG answers CONNECT's PING; the next line after the publish is the verdict.
      if (text.startsWith('PONG\r\n') && !text.includes('PUB-SENT')) {
        text = 'PUB-SENT';
        socket.write(payload ? Buffer.concat([Buffer.from(`PUB ${subject} ${bytes}\r\n`), Buffer.alloc(bytes, 0x78), Buffer.from('\r\nPING\r\n')]) : `PUB ${subject} ${bytes}\r\n`);
        return;
      }
      const v = verdict();
      if (v !== undefined) done(v);
    });
  });
}

test('the rendered nats-config sets max_payload; a real nats-server with it carries the largest catch-up reply and refuses a publish one byte over', async (t) => {
  const rendered = renderAccounts(USERS, { bucket: 'crosslink', subjectPrefix: P });
  const line = new RegExp(`^max_payload: ${NATS_MAX_PAYLOAD}$`, 'm').exec(rendered);
  t.truthy(line, 'the rendered config sets max_payload at the top level');
  t.true((line?.index ?? Infinity) < rendered.indexOf('accounts {'), 'before the accounts block');

  const reply = largestCatchUpReply();
  t.true(reply.length <= LARGEST_CATCHUP_REPLY_BYTES && reply.length > LARGEST_CATCHUP_REPLY_BYTES - 2048, `the largest catch-up reply: ${reply.length} bytes, bound ${LARGEST_CATCHUP_REPLY_BYTES}`);
  t.true(LARGEST_CATCHUP_REPLY_BYTES * 1.1 < NATS_MAX_PAYLOAD, 'at least 10 % headroom');

  const dir = await mkdtemp(join(tmpdir(), 'xl-payload-'));
  const port = await freeLoopbackPort();
  await writeFile(join(dir, 'auth.conf'), rendered);
  await writeFile(join(dir, 'server.conf'), [`listen: 127.0.0.1:${port}`, `server_name: xl-payload-${randomBytes(3).toString('hex')}`, `jetstream { store_dir: ${JSON.stringify(join(dir, 'js'))} }`, 'include auth.conf', ''].join('\n'));
  const server = spawn('nats-server', ['-c', join(dir, 'server.conf')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const onData = (d: Buffer): void => {
    log = (log + d.toString()).slice(-20_000);
  };
  server.stdout.on('data', onData);
  server.stderr.on('data', onData);
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  t.teardown(async () => {
    if (server.exitCode === null) server.kill('SIGTERM');
    await exited;
    await rm(dir, { recursive: true, force: true });
  });
  await waitFor(() => log.includes('Server is ready') || server.exitCode !== null, { timeoutMs: 20_000, what: 'nats-server with the rendered config' });
  if (!log.includes('Server is ready')) return t.fail(`nats-server did not start: ${log}`);

  // The coordinator answers a catch-up request with the largest reply; the agent receives it whole.
  const url = `nats://127.0.0.1:${port}`;
  const coordinator = await connect({ servers: url, user: 'crosslink-coordinator', pass: PASSWORDS.coordinator });
  const agent = await connect({ servers: url, user: 'crosslink-agent', pass: PASSWORDS.agent });
  t.teardown(async () => {
    await agent.close();
    await coordinator.close();
  });
  t.is(agent.info?.max_payload, NATS_MAX_PAYLOAD);
  const watch = subjects(P).watch;
  coordinator.subscribe(watch, { callback: (_err, msg) => void msg.respond(reply) });
  await coordinator.flush();
  const answer = await agent.request(watch, JSON.stringify({ kind: 'catchup', filter: 'nodes.>', afterRevision: 0, limit: CATCHUP_MAX_LIMIT, nonce: 'n'.repeat(16) }), { timeout: 10_000 });
  t.is(answer.data.length, reply.length, 'the largest catch-up reply arrives whole');
  t.true(CatchUpReply.safeParse(JSON.parse(answer.string())).success);

  // The server itself: a publish of exactly max_payload is taken, one byte more refused.
  const at = await rawPublish(port, 'crosslink-agent', PASSWORDS.agent, subjects(P).register, NATS_MAX_PAYLOAD, true);
  t.is(at.info.max_payload, NATS_MAX_PAYLOAD, 'the server announces it');
  t.is(at.answer, 'PONG', 'max_payload bytes: taken');
  const over = await rawPublish(port, 'crosslink-agent', PASSWORDS.agent, subjects(P).register, NATS_MAX_PAYLOAD + 1, false);
  t.regex(over.answer, /^-ERR 'Maximum Payload Violation'/, 'one byte more: refused by the server');
});
