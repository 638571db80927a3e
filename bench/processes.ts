// Real processes the control-plane benchmarks run against: the coordinator as its own process
// (dist/coordinator/main.js, what bin/crosslink-coordinator and the image run) and CPU time read from /proc, so the
// coordinator's and nats-server's cost is measured apart from the simulated agents in this process.
import { execFileSync } from 'node:child_process';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Child } from '../lib/child-process.ts';
import { CrosslinkError } from '../lib/errors.ts';
import type { SigningKeyPair } from '../protocol/signing.ts';

import { coordinatorCommand } from './coordinator-command.ts';
import { threadCpu, type ThreadCpu } from './thread-cpu.ts';

export { COORDINATOR_NODE_FLAGS } from './coordinator-command.ts';

const ROOT = new URL('..', import.meta.url).pathname;
let built = false;

/**
 * Builds dist/ once per bench run (if stale), before the first coordinator starts. Later starts run
 * dist/ as it is: bin/ would rebuild when a source changed meanwhile, and a coordinator restarted in
 * the middle of a measurement would then spend its "restart" compiling.
 */
function buildOnce(): void {
  if (built) return;
  execFileSync('bash', [join(ROOT, 'scripts', 'build.sh'), '--if-stale'], { stdio: ['ignore', 'inherit', 'inherit'] });
  built = true;
}

/** USER_HZ: the unit of utime/stime in /proc/<pid>/stat; 100 on every Linux ABI Node runs on. */
const TICKS_PER_SECOND = 100;

/** CPU time (user + system, all threads) a process has used so far, in ms; 10 ms resolution. */
export async function processCpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces; fields after it are space-separated.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat, i.e. 11 and 12 after the name.
  const ticks = Number(fields[11]) + Number(fields[12]);
  return (ticks * 1000) / TICKS_PER_SECOND;
}

/** The pid of the process whose command line contains `arg` (e.g. nats-server's unique store dir). */
export async function findPidByArg(arg: string): Promise<number | undefined> {
  for (const entry of await readdir('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    try {
      const cmdline = await readFile(join('/proc', entry, 'cmdline'), 'utf8');
      if (cmdline.split('\0').includes(arg)) return Number(entry);
    } catch {
      // The process exited meanwhile.
    }
  }
  return undefined;
}

export interface CoordinatorProcessOptions {
  readonly natsUrl: string;
  readonly bucket: string;
  readonly subjectPrefix: string;
  readonly signingKeyFile: string;
  readonly nodeTtl: string;
  /** --lease-ttl; undefined: none passed, the coordinator's shipped default. */
  readonly leaseTtl?: string | undefined;
  /** --replicas of the bucket (3 on a 3-server cluster); undefined: the coordinator's default. */
  readonly replicas?: number | undefined;
  readonly logLevel?: string;
  /** POD_NAME for the lease holder id (a stable one lets a restarted coordinator reclaim its lease at once, as in deploy/). */
  readonly podName?: string;
  /** --registration-rate / --registration-burst (per cluster); default the coordinator's own. */
  readonly registrationRate?: number;
  readonly registrationBurst?: number;
  /** Every output line as it comes (e.g. the pino JSON lines a phase breakdown reads). */
  readonly onLine?: (line: string) => void;
}

/** Writes a signing key file the coordinator accepts (mode 0600), so the bench knows the public key. */
export async function writeSigningKeyFile(path: string, key: SigningKeyPair): Promise<void> {
  await writeFile(path, `${JSON.stringify({ publicKey: key.publicKey, secretKey: key.secretKey })}\n`, { mode: 0o600, flag: 'wx' });
}

/** The coordinator as a child process (lib/child-process.ts: killed with the bench if it exits early). */
export class CoordinatorProcess {
  private constructor(private readonly child: Child) {}

  static start(o: CoordinatorProcessOptions): CoordinatorProcess {
    const args = [
      'run',
      '--nats-url', o.natsUrl,
      '--signing-key-file', o.signingKeyFile,
      '--bucket', o.bucket,
      '--subject-prefix', o.subjectPrefix,
      '--node-ttl', o.nodeTtl,
      ...(o.leaseTtl !== undefined ? ['--lease-ttl', o.leaseTtl] : []),
      ...(o.replicas !== undefined ? ['--replicas', String(o.replicas)] : []),
      '--log-level', o.logLevel ?? 'warn',
      ...(o.registrationRate !== undefined ? ['--registration-rate', String(o.registrationRate)] : []),
      ...(o.registrationBurst !== undefined ? ['--registration-burst', String(o.registrationBurst)] : []),
    ];
    // The environment must not leak CROSSLINK_* settings of the caller into the run.
    const env = {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CROSSLINK_') && k !== 'POD_NAME')),
      ...(o.podName !== undefined ? { POD_NAME: o.podName } : {}),
    };
    // XL_BENCH_COORDINATOR_DIR / XL_BENCH_COORDINATOR_NODE_FLAGS: bench/coordinator-command.ts.
    const command = coordinatorCommand();
    if (command.own) buildOnce();
    const child = Child.start([...command.argv, ...args], { env, keepLines: 200, ...(o.onLine ? { onLine: o.onLine } : {}) });
    if (child.pid === undefined) throw new CrosslinkError(`could not start ${command.argv.join(' ')}`);
    return new CoordinatorProcess(child);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get running(): boolean {
    return this.child.running;
  }

  cpuMs(): Promise<number> {
    return processCpuMs(this.pid);
  }

  /** CPU time by thread, ns precision (bench/thread-cpu.ts). */
  threadCpu(): Promise<ThreadCpu> {
    return threadCpu(this.pid);
  }

  /** SIGTERM (clean stop: the lease is released) or SIGKILL (crash); waits for the exit, SIGKILL after 10 s. */
  async stop(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    if (signal === 'SIGKILL') this.child.kill('SIGKILL');
    await this.child.stop({ graceMs: 10_000 });
  }

  recentLog(): string {
    return this.child.tail().join('\n');
  }
}
