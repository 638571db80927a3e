// lib/name-index.ts: key → names, a lone name stored as itself, a Set from the second on.
import test from 'ava';
import { NameIndex } from '../lib/name-index.ts';

test('add/delete/names/count/holds through one, two and back to one name, and gone', (t) => {
  const ix = new NameIndex<bigint>();
  t.true(ix.add(1n, 'a'), 'a new key');
  t.false(ix.add(1n, 'a'), 'the same name again: nothing new');
  t.deepEqual(ix.names(1n), ['a']);
  t.false(ix.add(1n, 'b'));
  t.deepEqual([...ix.names(1n)].sort(), ['a', 'b']);
  t.is(ix.count(1n), 2);
  t.true(ix.holds(1n, 'b'));
  t.false(ix.delete(1n, 'c'), 'a name it does not hold');
  t.false(ix.delete(1n, 'a'), 'b still holds it');
  t.deepEqual(ix.names(1n), ['b']);
  t.false(ix.holds(1n, 'a'));
  t.false(ix.delete(1n, 'a'));
  t.true(ix.delete(1n, 'b'), 'the last name: the key is gone');
  t.false(ix.has(1n));
  t.deepEqual(ix.names(1n), []);
  t.is(ix.count(1n), 0);
  t.is(ix.size, 0);
});

test('names() is a copy: changing the index while iterating it is safe', (t) => {
  const ix = new NameIndex<string>();
  for (const n of ['a', 'b', 'c']) ix.add('k', n);
  for (const n of ix.names('k')) ix.delete('k', n);
  t.false(ix.has('k'));
});
