// lib/nats-connect.ts without a server: flag validation through the shared flag layer (errors name
// the flag or variable), the client options built from the settings, and the NATS addresses the
// agent hands to its route guard.
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAgentConfig } from '../agent/config.ts';
import { createRouteGuard } from '../agent/plan/route-guard.ts';
import { ValidationError } from '../lib/errors.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import { RECONNECT_ONE_SHOT, describeNats, natsConnectionOptions, natsSettingsForUrls, resolveNatsAddresses } from '../lib/nats-connect.ts';

const BASE = ['--cluster', 'c1', '--location', 'l1', '--pod-cidr', '10.10.0.0/24', '--coordinator-key', 'YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXoxMjM0NTY='];
const parse = (args: readonly string[], env: Record<string, string> = {}) => parseAgentConfig([...BASE, ...args], { env, hostname: 'node-a' });

test('agent flags: user:pass@ in the URL becomes user/password; the server list carries no secret', (t) => {
  const c = parse(['--nats-url', 'tls://agent:s3cret@nats.example:4443']);
  t.deepEqual(c.nats.servers, ['tls://nats.example:4443']);
  t.is(c.nats.user, 'agent');
  t.is(c.nats.password, 's3cret');
  t.not(c.nats.tls, null);
  t.false(JSON.stringify(describeNats(c.nats)).includes('s3cret'));
});

test('agent flags: NATS auth and TLS from CROSSLINK_* variables; errors name the variable and its flag', (t) => {
  const c = parse(['--nats-url', 'nats://10.0.0.1:4222'], {
    CROSSLINK_NATS_USER: 'agent',
    CROSSLINK_NATS_PASSWORD_FILE: '/etc/crosslink/nats/password',
    CROSSLINK_NATS_TLS_CA: '/etc/crosslink/nats/ca.crt',
  });
  t.like(c.nats, { user: 'agent', passwordFile: '/etc/crosslink/nats/password', tls: { caFile: '/etc/crosslink/nats/ca.crt', certFile: null, keyFile: null } });
  const err = t.throws(() => parse(['--nats-url', 'nats://10.0.0.1:4222'], { CROSSLINK_NATS_TLS_CERT: '/c.pem' }), { instanceOf: ValidationError });
  t.regex(err.message, /^--nats-tls-key: .*needs both --nats-tls-cert and --nats-tls-key/);
  const both = t.throws(() => parse(['--nats-url', 'nats://10.0.0.1:4222', '--nats-user', 'u', '--nats-password', 'p', '--nats-password-file', '/p']), { instanceOf: ValidationError });
  t.regex(both.message, /^--nats-password: .*not both/);
  t.false(both.message.includes('"p"'), 'the password is not echoed');
  const two = t.throws(() => parse(['--nats-url', 'nats://10.0.0.1:4222', '--nats-creds', '/a.creds', '--nats-nkey-file', '/seed']), { instanceOf: ValidationError });
  t.regex(two.message, /one NATS authentication/);
  const noUser = t.throws(() => parse(['--nats-url', 'nats://10.0.0.1:4222', '--nats-password-file', '/p']), { instanceOf: ValidationError });
  t.regex(noUser.message, /^--nats-user: .*required with a NATS password/);
});

test('client options: password read from its file (trailing newline dropped), TLS files, inbox prefix, tls:// as nats://', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'xl-natsconn-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'pw'), 'hunter2\n', { mode: 0o600 });
  const c = parse(['--nats-url', 'tls://10.0.0.1:4222', '--nats-user', 'agent', '--nats-password-file', join(dir, 'pw'), '--nats-tls-ca', '/ca.pem']);
  const o = await natsConnectionOptions(c.nats, 'xl-test', { ...RECONNECT_ONE_SHOT, inboxPrefix: '_XL_COORD' });
  t.deepEqual(o.servers, ['nats://10.0.0.1:4222']);
  t.deepEqual(o.tls, { caFile: '/ca.pem' });
  t.is(o.inboxPrefix, '_XL_COORD');
  t.is(o.maxReconnectAttempts, 2);
  // No stack trace captured per request (two Error objects per KV write otherwise: docs/benchmarks.md).
  t.true(o.noAsyncTraces);
  t.truthy(o.authenticator);
  // The authenticator answers with the file's password (nats.js calls it with the server nonce).
  const auth = (o.authenticator as (nonce?: string) => { user?: string; pass?: string })();
  t.deepEqual({ user: auth.user, pass: auth.pass }, { user: 'agent', pass: 'hunter2' });
  // An unreadable secret file is a NatsConnectError naming the file (not retried forever by the coordinator).
  const missing = parse(['--nats-url', 'nats://10.0.0.1:4222', '--nats-creds', join(dir, 'none.creds')]);
  await t.throwsAsync(natsConnectionOptions(missing.nats, 'xl-test', RECONNECT_ONE_SHOT), { name: 'NatsConnectError', message: /none\.creds/ });
});

test('NATS addresses for the route guard: IP literals as is, names resolved, unresolvable skipped; a peer CIDR covering one is refused', async (t) => {
  const s = natsSettingsForUrls(['nats://203.0.113.10:4222', 'tls://nats.example:4443', 'nats://[2001:db8::5]:4222', 'nats://gone.example:4222']);
  const resolve = (host: string): Promise<readonly string[]> => (host === 'nats.example' ? Promise.resolve(['198.51.100.7']) : Promise.reject(new Error('ENOTFOUND')));
  const addrs = await resolveNatsAddresses(s, resolve);
  t.deepEqual(addrs, ['198.51.100.7', '2001:db8::5', '203.0.113.10']);
  const self = { name: 'node-a', endpoints: [], privateAddresses: [] } as unknown as NodeRecord;
  const guard = createRouteGuard({ addresses: [], routes: [], natsAddresses: addrs }, self, []);
  t.regex(guard.reason('198.51.100.0/24') ?? '', /overlaps NATS server 198\.51\.100\.7/, 'a CIDR covering a resolved NATS server is refused');
  t.is(guard.reason('10.20.0.0/24'), null);
});
