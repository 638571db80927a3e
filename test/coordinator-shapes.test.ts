// Issue 10, coordinator memory at 10,000 nodes: the records the coordinator keeps per node share one
// V8 hidden class. Built as `{ ...material, generation, … }` every record had its own (a map plus a
// ~430-byte descriptor array each: ~5 MiB at 10,000 nodes in a heap snapshot, docs/benchmarks.md).
// V8's %HaveSameMap tells; natives syntax is switched on for the one function compiled below.
import { setFlagsFromString } from 'node:v8';
import test from 'ava';
import { aliveBinding, boundBinding } from '../coordinator/bindings.ts';
import { nodeMaterial, nodeRecordOf } from '../coordinator/registry.ts';
import type { RegistrationRequest } from '../protocol/messages.ts';

setFlagsFromString('--allow-natives-syntax');
// eslint-disable-next-line @typescript-eslint/no-implied-eval -- the only way to reach a V8 intrinsic from a test
const haveSameMap = new Function('a', 'b', 'return %HaveSameMap(a, b)') as (a: object, b: object) => boolean;

const key = (i: number, c: string): string => Buffer.alloc(32, `${c}${i}`).toString('base64');

function request(i: number): RegistrationRequest {
  return {
    v: 1,
    name: `node-${i}`,
    cluster: `c${i % 7}`,
    location: `region-${i % 5}`,
    publicKey: key(i, 'w'),
    identityKey: key(i, 'i'),
    endpoints: [`198.51.100.${i % 250}:51820`],
    privateAddresses: [`10.0.${i % 250}.10`],
    podCidrs: [`10.${i % 250}.${i % 200}.0/24`],
    listenPort: 51820,
    topology: 'mesh',
    gatewayEligible: i % 2 === 0,
    agentVersion: '0.1.0',
    sentAt: 1_700_000_000_000 + i,
  };
}

/** How many consecutive pairs of `objects` have different hidden classes. */
function shapeChanges(objects: readonly object[]): number {
  let changes = 0;
  for (let i = 1; i < objects.length; i++) if (!haveSameMap(objects[i - 1] as object, objects[i] as object)) changes++;
  return changes;
}

test('node records built at registration share one hidden class (a spread plus new keys gave each its own)', (t) => {
  const now = 1_700_000_000_000;
  const records = Array.from({ length: 300 }, (_, i) => nodeRecordOf(nodeMaterial(request(i), `100.96.${i >> 8}.${i & 255}`), 1, now + i * 0.5, now + i * 1.5));
  t.is(shapeChanges(records), 0);
  // The control: the spread this replaced does not share (so the check above can fail).
  const spread = records.map((r) => ({ ...nodeMaterial(request(1), r.overlayIp), generation: 1, registeredAt: now + 0.5, updatedAt: now + 1.5 }));
  t.true(shapeChanges(spread) > 250, 'V8 no longer gives spread objects their own class: this test needs a new control');
});

test('identity bindings marked alive share one hidden class', (t) => {
  const now = 1_700_000_000_000;
  const bindings = Array.from({ length: 300 }, (_, i) => aliveBinding(boundBinding(request(i), undefined, now + i), now + i * 1.5));
  t.is(shapeChanges(bindings), 0);
  t.is(bindings[7]?.aliveAt, now + 7 * 1.5);
});
