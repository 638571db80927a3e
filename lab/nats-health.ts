// The state of a lab's NATS cluster as its servers report it (HTTP monitoring, /jsz?streams=true,
// read with curl inside the control namespace): which server leads the JetStream meta group, and
// for the coordinator's bucket stream which server leads and whether each replica is current. For
// `lab status` and the drills (stop the server leading the bucket's stream, see it rejoin).
import * as z from 'zod';
import { errorMessage } from '../lib/errors.ts';
import type { Runner } from '../lib/runner.ts';
import type { NatsMemberPlan, NatsPlan } from './nats-plan.ts';

/** The coordinator's bucket `crosslink` is the JetStream stream KV_crosslink. */
export const LAB_BUCKET_STREAM = 'KV_crosslink';

const Replica = z.object({ name: z.string(), current: z.boolean().optional() });
const Jsz = z.object({
  meta_cluster: z.object({ leader: z.string().optional() }).optional(),
  account_details: z
    .array(
      z.object({
        stream_detail: z
          .array(z.object({ name: z.string(), cluster: z.object({ leader: z.string().optional(), replicas: z.array(Replica).optional() }).optional() }))
          .optional(),
      }),
    )
    .optional(),
});
type Jsz = z.infer<typeof Jsz>;

export interface NatsMemberHealth {
  readonly name: string;
  /** The member answered its monitoring endpoint. */
  readonly up: boolean;
  /** Why not, when it did not. */
  readonly error: string | null;
  /** Process name of the JetStream meta leader, as this member sees it. */
  readonly metaLeader: string | null;
}

export interface StreamHealth {
  readonly stream: string;
  /** Process name of the stream's leader (null: none elected, or no member up). */
  readonly leader: string | null;
  /** The other replicas by process name, as the reporting member sees them. */
  readonly followers: readonly { readonly name: string; readonly current: boolean }[];
  /** Which member's report this is. */
  readonly reportedBy: string | null;
}

export interface NatsClusterHealth {
  readonly members: readonly NatsMemberHealth[];
  readonly stream: StreamHealth;
}

/** Reads every member's /jsz (cluster members only: a single lab server has no monitoring port). */
export async function readNatsHealth(runner: Runner, ctlNs: string, nats: NatsPlan, stream = LAB_BUCKET_STREAM): Promise<NatsClusterHealth> {
  const byServer = new Map(nats.members.map((m) => [m.serverName, m.name]));
  const nameOf = (server: string | undefined): string | null => (server === undefined || server === '' ? null : (byServer.get(server) ?? server));
  const reports = await Promise.all(nats.members.map((m) => readJsz(runner, ctlNs, m)));
  const members = nats.members.map((m, i): NatsMemberHealth => {
    const r = reports[i] ?? { error: 'not read' };
    return 'error' in r
      ? { name: m.name, up: false, error: r.error, metaLeader: null }
      : { name: m.name, up: true, error: null, metaLeader: nameOf(r.jsz.meta_cluster?.leader) };
  });
  // The stream leader's own report lists the others as replicas (with `current`); prefer it.
  let best: StreamHealth = { stream, leader: null, followers: [], reportedBy: null };
  reports.forEach((r, i) => {
    if ('error' in r) return;
    const detail = r.jsz.account_details?.flatMap((a) => a.stream_detail ?? []).find((s) => s.name === stream);
    if (!detail?.cluster) return;
    const leader = nameOf(detail.cluster.leader);
    const self = nats.members[i]?.name ?? '';
    const view: StreamHealth = {
      stream,
      leader,
      followers: (detail.cluster.replicas ?? []).map((x) => ({ name: nameOf(x.name) ?? x.name, current: x.current === true })),
      reportedBy: self,
    };
    if (best.reportedBy === null || (leader === self && best.leader !== best.reportedBy)) best = view;
  });
  return { members, stream: best };
}

async function readJsz(runner: Runner, ctlNs: string, m: NatsMemberPlan): Promise<{ jsz: Jsz } | { error: string }> {
  if (m.monitorPort === null) return { error: 'no monitoring port (single server)' };
  const url = `http://${m.host}:${m.monitorPort}/jsz?streams=true`;
  try {
    const r = await runner.run(['ip', 'netns', 'exec', ctlNs, 'curl', '-sS', '--max-time', '5', url], { allowFailure: true, timeoutMs: 15_000 });
    if (r.exitCode !== 0) return { error: `${url}: ${(r.stderr || r.stdout).trim().slice(0, 200) || `curl exit ${r.exitCode}`}` };
    const parsed = Jsz.safeParse(JSON.parse(r.stdout));
    return parsed.success ? { jsz: parsed.data } : { error: `${url}: unexpected /jsz document (${parsed.error.issues[0]?.message ?? 'invalid'})` };
  } catch (err) {
    return { error: `${url}: ${errorMessage(err)}` };
  }
}

/** `lab status` lines. */
export function formatNatsHealth(nats: NatsPlan, h: NatsClusterHealth): string[] {
  const up = h.members.filter((m) => m.up).map((m) => m.name);
  const down = h.members.filter((m) => !m.up).map((m) => m.name);
  const meta = h.members.find((m) => m.up && m.metaLeader !== null)?.metaLeader ?? 'none';
  const lines = [`nats cluster ${nats.clusterName ?? ''}: ${up.length}/${h.members.length} servers answering${down.length ? ` (not: ${down.join(', ')})` : ''}, meta leader ${meta}`];
  const s = h.stream;
  const followers = s.followers.map((f) => `${f.name} ${f.current ? 'current' : 'NOT current'}`).join(', ');
  lines.push(
    s.reportedBy === null
      ? `bucket stream ${s.stream}: not found on any answering server`
      : `bucket stream ${s.stream} (R${nats.bucketReplicas}): leader ${s.leader ?? 'NONE'}; replicas ${followers || 'none'}`,
  );
  return lines;
}
