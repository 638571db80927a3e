// The shared flag/env layer: precedence (flag > env > alias > default), injected environment,
// booleans from the environment, labels that name where a bad value came from.
import test from 'ava';
import { Command } from 'commander';
import * as z from 'zod';
import { ValidationError } from '../lib/errors.ts';
import { addFlags, check, envNameOf, keyOf, list, resolveFlags, single, type FlagSpec } from '../lib/flags.ts';

const SPECS: readonly FlagSpec<'listenPort' | 'nodeName' | 'podCidr' | 'cleanup'>[] = [
  { key: 'listenPort', flags: '--listen-port <port>', env: 'CROSSLINK_LISTEN_PORT', default: '51820', help: 'port' },
  { key: 'nodeName', flags: '--node-name <name>', env: 'CROSSLINK_NODE_NAME', envAliases: ['NODE_NAME'], help: 'name' },
  { key: 'podCidr', flags: '--pod-cidr <cidr>', env: 'CROSSLINK_POD_CIDR', repeatable: true, help: 'cidrs' },
  { key: 'cleanup', flags: '--cleanup', env: 'CROSSLINK_CLEANUP', help: 'clean up' },
  { key: 'cleanup', flags: '--no-cleanup', help: 'leave in place' },
];

function parse(argv: string[], env: Record<string, string> = {}) {
  const cmd = addFlags(new Command('x').exitOverride(), SPECS);
  cmd.parse(argv, { from: 'user' });
  return resolveFlags(cmd, SPECS, env);
}

test('names: flag → key and variable', (t) => {
  t.is(keyOf('--listen-port'), 'listenPort');
  t.is(keyOf('--no-gateway-eligible'), 'gatewayEligible');
  t.is(envNameOf('--relay-port-range'), 'CROSSLINK_RELAY_PORT_RANGE');
});

test('command line beats environment beats alias beats default', (t) => {
  t.deepEqual(parse([]).listenPort, { label: '--listen-port', value: '51820', source: 'default' });
  t.deepEqual(parse([], { CROSSLINK_LISTEN_PORT: '1' }).listenPort, { label: 'CROSSLINK_LISTEN_PORT (--listen-port)', value: '1', source: 'env' });
  t.is(parse(['--listen-port', '2'], { CROSSLINK_LISTEN_PORT: '1' }).listenPort.value, '2');
  t.is(parse([], { NODE_NAME: 'a' }).nodeName.value, 'a');
  t.is(parse([], { NODE_NAME: 'a', CROSSLINK_NODE_NAME: 'b' }).nodeName.value, 'b');
  t.is(parse([], { CROSSLINK_NODE_NAME: '' }).nodeName.source, 'none', 'an empty variable counts as unset');
});

test('the environment is the injected one, not process.env', (t) => {
  process.env['CROSSLINK_LISTEN_PORT'] = '9';
  try {
    t.is(parse([], {}).listenPort.value, '51820');
  } finally {
    delete process.env['CROSSLINK_LISTEN_PORT'];
  }
});

test('repeatable flags collect, and accept commas', (t) => {
  const f = parse(['--pod-cidr', '10.0.0.0/24,10.0.1.0/24', '--pod-cidr', '10.0.2.0/24']);
  t.deepEqual(list(f.podCidr), ['10.0.0.0/24', '10.0.1.0/24', '10.0.2.0/24']);
  t.deepEqual(list(parse([], { CROSSLINK_POD_CIDR: 'a, b' }).podCidr), ['a', 'b']);
  t.throws(() => single(f.podCidr), { instanceOf: ValidationError });
});

test('booleans: --x / --no-x on the command line, words in the environment', (t) => {
  t.is(parse(['--no-cleanup']).cleanup.value, false);
  t.is(parse(['--cleanup'], { CROSSLINK_CLEANUP: 'no' }).cleanup.value, true);
  t.is(parse([], { CROSSLINK_CLEANUP: 'off' }).cleanup.value, false);
  t.is(parse([], { CROSSLINK_CLEANUP: 'YES' }).cleanup.value, true);
  t.is(parse([]).cleanup.value, undefined);
  const err = t.throws(() => parse([], { CROSSLINK_CLEANUP: 'maybe' }), { instanceOf: ValidationError });
  t.is(err.field, 'CROSSLINK_CLEANUP (--cleanup)');
  t.regex(err.message, /"maybe".*true, false/);
});

test('check names the field, the value and the schema\'s message', (t) => {
  t.is(check('--n', '5', z.coerce.number().max(9)), 5);
  const err = t.throws(() => check('--n', '50', z.coerce.number().max(9, 'must be 0-9')), { instanceOf: ValidationError });
  t.is(err.message, '--n: "50" is not valid; must be 0-9');
});
