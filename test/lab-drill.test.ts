// `lab stop|start|restart <process>` against a fake Lab: the right Lab call for each process, in
// order, and the state the Lab records follows (so `lab status` is right afterwards).
import test from 'ava';
import { drill, type DrillLab } from '../lab/drill.ts';
import { ValidationError } from '../lib/errors.ts';

class FakeLab implements DrillLab {
  readonly plan: DrillLab['plan'];
  readonly running: Set<string>;
  constructor(nats: readonly string[] = ['nats-server']) {
    this.plan = { nodes: [{ name: 'aws-n1' }, { name: 'onprem-n1' }], nats: { members: nats.map((name) => ({ name })) } };
    this.running = new Set([...nats, 'coordinator', 'aws-n1', 'onprem-n1']);
  }
  readonly calls: string[] = [];
  isRunning(name: string): boolean {
    return this.running.has(name);
  }
  private did(call: string, name: string, up: boolean): Promise<void> {
    this.calls.push(call);
    if (up) this.running.add(name);
    else this.running.delete(name);
    return Promise.resolve();
  }
  startNats = (name: string) => this.did(`startNats ${name}`, name, true);
  stopNats = (name: string) => this.did(`stopNats ${name}`, name, false);
  startCoordinator = (level?: string) => this.did(`startCoordinator ${level}`, 'coordinator', true);
  stopCoordinator = () => this.did('stopCoordinator', 'coordinator', false);
  startAgent = (name: string, level?: string) => this.did(`startAgent ${name} ${level}`, name, true);
  stopAgent = (name: string) => this.did(`stopAgent ${name}`, name, false);
}

test('restart = stop then start, through the Lab (which records both); each process by its name', async (t) => {
  const lab = new FakeLab();
  t.is(await drill(lab, 'restart', 'aws-n1'), 'restarted aws-n1');
  t.is(await drill(lab, 'restart', 'coordinator', 'debug'), 'restarted coordinator');
  t.is(await drill(lab, 'restart', 'nats'), 'restarted nats-server');
  t.deepEqual(lab.calls, ['stopAgent aws-n1', 'startAgent aws-n1 info', 'stopCoordinator', 'startCoordinator debug', 'stopNats nats-server', 'startNats nats-server']);
  t.deepEqual([...lab.running].sort(), ['aws-n1', 'coordinator', 'nats-server', 'onprem-n1']);
});

test('stop, then start; starting a running process is refused, stopping a stopped one is not', async (t) => {
  const lab = new FakeLab();
  t.is(await drill(lab, 'stop', 'onprem-n1'), 'stopped onprem-n1');
  t.false(lab.isRunning('onprem-n1'));
  t.is(await drill(lab, 'stop', 'onprem-n1'), 'onprem-n1 was not running');
  t.is(await drill(lab, 'restart', 'onprem-n1'), 'started onprem-n1');
  await t.throwsAsync(drill(lab, 'start', 'onprem-n1'), { message: 'onprem-n1 is already running (use restart)' });
  t.deepEqual(lab.calls, ['stopAgent onprem-n1', 'startAgent onprem-n1 info']);
});

test('an unknown process names the value and what is allowed', async (t) => {
  const err = await t.throwsAsync(drill(new FakeLab(), 'stop', 'gcp-n9'), { instanceOf: ValidationError });
  t.is(err.message, '<process>: "gcp-n9" is not valid; use nats-server, coordinator or a node of this lab (aws-n1, onprem-n1)');
});

test('--nats-servers 3: each server by its name (nats-0 … nats-2); the ambiguous `nats` is refused naming them', async (t) => {
  const lab = new FakeLab(['nats-0', 'nats-1', 'nats-2']);
  t.is(await drill(lab, 'stop', 'nats-1'), 'stopped nats-1');
  t.deepEqual([...lab.running].filter((n) => n.startsWith('nats')).sort(), ['nats-0', 'nats-2']);
  t.is(await drill(lab, 'start', 'nats-1'), 'started nats-1');
  t.is(await drill(lab, 'restart', 'nats-2'), 'restarted nats-2');
  t.deepEqual(lab.calls, ['stopNats nats-1', 'startNats nats-1', 'stopNats nats-2', 'startNats nats-2']);
  const err = await t.throwsAsync(drill(lab, 'stop', 'nats'), { instanceOf: ValidationError });
  t.is(err.message, '<process>: "nats" is not valid; use nats-0, nats-1, nats-2, coordinator or a node of this lab (aws-n1, onprem-n1)');
  await t.throwsAsync(drill(lab, 'stop', 'nats-3'), { instanceOf: ValidationError });
});
