// bucketRenumbered (agent/control/watch-progress.ts): a resume re-reads everything only when every look is behind.
import test from 'ava';
import { bucketRenumbered, RENUMBERED_LOOK_GAP_MS, RENUMBERED_LOOKS } from '../agent/control/watch-progress.ts';

function run(answers: number[][], applied: number[], stopAfterLooks = Infinity): Promise<{ renumbered: boolean; looks: number; slept: number[] }> {
  let looks = 0;
  const slept: number[] = [];
  return bucketRenumbered(
    () => Promise.resolve(answers[Math.min(looks++, answers.length - 1)] ?? []),
    applied,
    (ms) => {
      slept.push(ms);
      return Promise.resolve();
    },
    () => looks >= stopAfterLooks,
  ).then((renumbered) => ({ renumbered, looks, slept }));
}

test('in step at the first look: one look, no wait, not renumbered', async (t) => {
  t.deepEqual(await run([[10, 5]], [10, 5]), { renumbered: false, looks: 1, slept: [] });
});

test('one stale answer (a replica catching up after a crash) is not a renumbered bucket: looked again, then in step', async (t) => {
  t.deepEqual(await run([[3, 5], [10, 5]], [10, 5]), { renumbered: false, looks: 2, slept: [RENUMBERED_LOOK_GAP_MS] });
});

test('behind at every look: renumbered, after RENUMBERED_LOOKS looks', async (t) => {
  const r = await run([[3, 5]], [10, 5]);
  t.true(r.renumbered);
  t.is(r.looks, RENUMBERED_LOOKS);
  t.deepEqual(r.slept, Array<number>(RENUMBERED_LOOKS - 1).fill(RENUMBERED_LOOK_GAP_MS));
});

test('stopped: no more looks', async (t) => {
  const r = await run([[3, 5]], [10, 5], 1);
  t.is(r.looks, 1);
});
