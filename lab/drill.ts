// `npm run lab -- stop|start|restart <process>`: one process of a running lab, for drills (a
// coordinator failover, an agent restart, NATS going away). Goes through the Lab, which records
// every start and stop in the lab's state, so `lab status` stays right (a process restarted by hand
// would show NOT RUNNING: the state knows only the pid it started).
import { CrosslinkError, ValidationError } from '../lib/errors.ts';

export type DrillAction = 'stop' | 'start' | 'restart';

/** What a drill needs of a Lab (lab/lab.ts implements it). */
export interface DrillLab {
  readonly plan: { readonly nodes: readonly { readonly name: string }[] };
  isRunning(name: string): boolean;
  startNats(): Promise<void>;
  stopNats(): Promise<void>;
  startCoordinator(logLevel?: string): Promise<void>;
  stopCoordinator(): Promise<void>;
  startAgent(name: string, logLevel?: string): Promise<void>;
  stopAgent(name: string): Promise<void>;
}

interface Process {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** `nats-server` (or `nats`), `coordinator`, or a node name (its agent). */
export function drillProcess(lab: DrillLab, name: string, logLevel = 'info'): Process {
  if (name === 'nats' || name === 'nats-server') return { name: 'nats-server', start: () => lab.startNats(), stop: () => lab.stopNats() };
  if (name === 'coordinator') return { name, start: () => lab.startCoordinator(logLevel), stop: () => lab.stopCoordinator() };
  if (lab.plan.nodes.some((n) => n.name === name)) return { name, start: () => lab.startAgent(name, logLevel), stop: () => lab.stopAgent(name) };
  throw new ValidationError('<process>', name, `use nats-server, coordinator or a node of this lab (${lab.plan.nodes.map((n) => n.name).join(', ')})`);
}

/** Runs the action; returns what was done, one line. Starting a running process is an error, stopping a stopped one is not. */
export async function drill(lab: DrillLab, action: DrillAction, name: string, logLevel = 'info'): Promise<string> {
  const p = drillProcess(lab, name, logLevel);
  const running = lab.isRunning(p.name);
  if (action === 'start' && running) throw new CrosslinkError(`${p.name} is already running (use restart)`);
  if (action !== 'start' && running) await p.stop();
  if (action === 'stop') return running ? `stopped ${p.name}` : `${p.name} was not running`;
  await p.start();
  return `${action === 'restart' && running ? 'restarted' : 'started'} ${p.name}`;
}
