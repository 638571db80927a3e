// agent/start-gate.ts: deliveries held until the local start is done, then run in order; after, at once.
import test from 'ava';
import { StartGate } from '../agent/start-gate.ts';

test('held until opened, then run in arrival order; after that at once; a throwing one does not stop the others', (t) => {
  const errors: unknown[] = [];
  const gate = new StartGate((err) => errors.push(err));
  const ran: string[] = [];
  gate.run(() => ran.push('record'));
  gate.run(() => {
    throw new Error('listener broke');
  });
  gate.run(() => ran.push('snapshot'));
  t.deepEqual(ran, [], 'nothing before the gate opens');
  gate.open();
  t.deepEqual(ran, ['record', 'snapshot']);
  t.is(errors.length, 1);
  gate.run(() => ran.push('later'));
  t.deepEqual(ran, ['record', 'snapshot', 'later'], 'at once once open');
  gate.open();
  t.deepEqual(ran, ['record', 'snapshot', 'later'], 'opening again runs nothing twice');
});
