import test from 'ava';
import { AsyncQueue } from '../lib/async-queue.ts';

const iterable = <T>(q: AsyncQueue<T>, onReturn: () => void = () => undefined): AsyncIterable<T> => ({ [Symbol.asyncIterator]: () => q.iterator(onReturn) });

test('items arrive once, in order; a consumer waiting is woken by a push; close ends after the queued items', async (t) => {
  const q = new AsyncQueue<number>();
  q.push(1);
  const seen: number[] = [];
  const consumed = (async () => {
    for await (const n of iterable(q)) seen.push(n);
  })();
  await Promise.resolve();
  q.push(2);
  q.push(3);
  q.close();
  q.push(4); // after close: ignored
  await consumed;
  t.deepEqual(seen, [1, 2, 3]);
  t.true(q.closed);
});

test('a waiting consumer ends when the queue closes with nothing queued', async (t) => {
  const q = new AsyncQueue<string>();
  const it = q.iterator(() => undefined);
  const next = it.next();
  q.close();
  t.deepEqual(await next, { value: undefined, done: true });
});

test('stopping the loop early (break) runs onReturn once', async (t) => {
  const q = new AsyncQueue<number>();
  let returned = 0;
  q.push(1);
  q.push(2);
  for await (const n of iterable(q, () => returned++)) {
    if (n === 1) break;
  }
  t.is(returned, 1);
});
