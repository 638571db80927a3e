// `npm run lab -- stop|start|restart <process>`: one process of a running lab, for drills (a
// coordinator failover, an agent restart, NATS going away). Goes through the Lab, which records
// every start and stop in the lab's state, so `lab status` stays right (a process restarted by hand
// would show NOT RUNNING: the state knows only the pid it started).
import { CrosslinkError, ValidationError } from '../lib/errors.ts';

export type DrillAction = 'stop' | 'start' | 'restart';

/** What a drill needs of a Lab (lab/lab.ts implements it). */
export interface DrillLab {
  readonly plan: { readonly nodes: readonly { readonly name: string }[]; readonly nats: { readonly members: readonly { readonly name: string }[] } };
  isRunning(name: string): boolean;
  /** `name`: the NATS server's process name (`nats-server` alone, `nats-<i>` in a cluster). */
  startNats(name: string): Promise<void>;
  stopNats(name: string): Promise<void>;
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

/** `nats-server` (or `nats`; `nats-<i>` with `--nats-servers 3`), `coordinator`, or a node name (its agent). */
export function drillProcess(lab: DrillLab, name: string, logLevel = 'info'): Process {
  const nats = lab.plan.nats.members.map((m) => m.name);
  const natsName = nats.length === 1 && (name === 'nats' || name === 'nats-server') ? nats[0] : nats.find((m) => m === name);
  if (natsName !== undefined) return { name: natsName, start: () => lab.startNats(natsName), stop: () => lab.stopNats(natsName) };
  if (name === 'coordinator') return { name, start: () => lab.startCoordinator(logLevel), stop: () => lab.stopCoordinator() };
  if (lab.plan.nodes.some((n) => n.name === name)) return { name, start: () => lab.startAgent(name, logLevel), stop: () => lab.stopAgent(name) };
  const natsHelp = nats.length === 1 ? 'nats-server' : nats.join(', ');
  throw new ValidationError('<process>', name, `use ${natsHelp}, coordinator or a node of this lab (${lab.plan.nodes.map((n) => n.name).join(', ')})`);
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
