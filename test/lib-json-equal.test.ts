// lib/json-equal.ts: equality of plain JSON data, checked against node:util's isDeepStrictEqual on
// hand-picked cases and on random JSON values and their one-step mutations (seeded, repeatable).
import test from 'ava';
import { isDeepStrictEqual } from 'node:util';
import { jsonEqual } from '../lib/json-equal.ts';

test('values, arrays and objects: by value, key order ignored', (t) => {
  t.true(jsonEqual({ a: 1, b: [1, 'x', { c: null }] }, { b: [1, 'x', { c: null }], a: 1 }));
  t.false(jsonEqual({ a: 1 }, { a: 1, b: undefined }), 'a key more (even undefined) differs, as for isDeepStrictEqual');
  t.false(jsonEqual({ a: undefined }, { b: undefined }), 'different keys');
  t.false(jsonEqual([1, 2], [2, 1]), 'array order counts');
  t.false(jsonEqual([1], { 0: 1 }), 'an array is not an object with index keys');
  t.false(jsonEqual({ 0: 1 }, [1]));
  t.false(jsonEqual(1, '1'));
  t.false(jsonEqual(null, {}));
  t.false(jsonEqual({}, null));
  t.true(jsonEqual(null, null));
});

// A small seeded generator (mulberry32): random JSON values of bounded depth.
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let r = Math.imul(s ^ (s >>> 15), 1 | s);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}
function value(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 0 ? 7 : 4));
  if (k === 0) return Math.floor(r() * 4);
  if (k === 1) return ['a', 'b', ''][Math.floor(r() * 3)];
  if (k === 2) return [null, true, false][Math.floor(r() * 3)];
  if (k === 3) return 1.25;
  if (k === 4 || k === 5) return Array.from({ length: Math.floor(r() * 3) }, () => value(r, depth - 1));
  const o: Record<string, unknown> = {};
  for (let i = Math.floor(r() * 3); i > 0; i--) o[['x', 'y', 'z'][Math.floor(r() * 3)]!] = value(r, depth - 1);
  return o;
}
/** A copy, sometimes changed in one place (a value replaced, a key added or dropped, an element added). */
function mutate(v: unknown, r: () => number): unknown {
  if (Array.isArray(v)) {
    const c = (v as unknown[]).map((x): unknown => (r() < 0.3 ? mutate(x, r) : x));
    if (r() < 0.1) c.push(0);
    return c;
  }
  if (typeof v === 'object' && v !== null) {
    const c: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (r() > 0.05) c[k] = r() < 0.3 ? mutate(x, r) : x;
    if (r() < 0.1) c['w'] = 1;
    return c;
  }
  return r() < 0.2 ? value(r, 0) : v;
}

test('agrees with isDeepStrictEqual on 20,000 random JSON pairs (equal copies and one-step changes)', (t) => {
  const r = rng(7);
  let equal = 0;
  let different = 0;
  for (let i = 0; i < 20_000; i++) {
    const a = value(r, 3);
    const b = r() < 0.5 ? (JSON.parse(JSON.stringify(a)) as unknown) : mutate(a, r);
    const want = isDeepStrictEqual(a, b);
    if (jsonEqual(a, b) !== want) return t.fail(`differs on ${JSON.stringify(a)} vs ${JSON.stringify(b)}: want ${want}`);
    if (want) equal++;
    else different++;
  }
  // Both outcomes must have been exercised, or the check says nothing.
  t.true(equal > 5_000, `equal pairs ${equal}`);
  t.true(different > 1_000, `different pairs ${different}`);
});
