// lib/frozen-map.ts: the immutable Map every MeshWatch snapshot is made of. It copies its entries
// (in order, detached from the source) and refuses every mutation at run time once built.
import test from 'ava';
import { FrozenMap, frozenMap } from '../lib/frozen-map.ts';

test('a frozen map holds a detached copy of its entries, in order', (t) => {
  const source = new Map([['b', 2], ['a', 1], ['c', 3]]);
  const m = frozenMap(source);
  t.deepEqual([...m], [['b', 2], ['a', 1], ['c', 3]]);
  t.is(m.size, 3);
  source.set('d', 4);
  source.delete('a');
  t.deepEqual([...m.keys()], ['b', 'a', 'c']);
  t.true(m instanceof Map);
  t.deepEqual([...new FrozenMap<string, number>()], []);
  t.deepEqual([...frozenMap([['x', 1], ['x', 2]] as const)], [['x', 2]], 'a repeated key keeps its last value, as new Map does');
});

test('once built, set, delete and clear refuse (naming the key) and change nothing', (t) => {
  const m = new FrozenMap([['a', 1]]);
  t.throws(() => m.set('z', 9), { instanceOf: TypeError, message: /cannot set z/ });
  t.throws(() => m.set('a', 2), { instanceOf: TypeError, message: /cannot set a/ });
  t.throws(() => m.delete('a'), { instanceOf: TypeError, message: /cannot delete a/ });
  t.throws(() => m.clear(), { instanceOf: TypeError, message: /cannot clear/ });
  t.deepEqual([...m], [['a', 1]]);
  t.true(Object.isFrozen(m));
  // The seal cannot be lifted from outside: the instance is frozen.
  t.throws(() => Object.assign(m, { sealed: false }), { instanceOf: TypeError });
  t.throws(() => m.set('z', 9), { instanceOf: TypeError });
});
