// `crosslink-coordinator cluster add | list | show | remove | rotate-credential`: the operator's side
// of cluster enrollment. Same NATS, bucket and signing-key flags as `revoke`; works on the bucket
// directly (cluster-admin.ts), so no running coordinator is needed.
import { unlink } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { renderTable } from '../lib/text-format.ts';
import { systemClock } from '../lib/clock.ts';
import { ValidationError } from '../lib/errors.ts';
import { generateJoinCredential } from '../protocol/join-credential.ts';
import type { ClusterDefinition } from '../protocol/messages.ts';
import {
  EnrolledUncheckedError,
  addCluster,
  listClusters,
  parseClusterName,
  removeCluster,
  rotateCredential,
  showCluster,
  writeCredentialFile,
  type ClusterDetails,
} from './cluster-admin.ts';
import { addSharedOptions, sharedConfig, withAdmin, type SharedOptions } from './revocation-commands.ts';
import { addClusterSetCommand, addLimitOptions, newClusterLimits, type LimitOptions } from './cluster-limit-commands.ts';
import { clusterExportCount, clusterUsage, type ClusterUsage } from './cluster-limits-admin.ts';
import { usageText } from './cluster-limits.ts';

const iso = (ms: number): string => new Date(ms).toISOString();
const collect = (v: string, prev: string[] | undefined): string[] => [...(prev ?? []), ...v.split(',').map((x) => x.trim()).filter((x) => x !== '')];

function parseTopology(v: string | undefined): 'mesh' | 'gateway' {
  const t = v ?? 'mesh';
  if (t !== 'mesh' && t !== 'gateway') throw new ValidationError('--topology', t, 'use mesh or gateway');
  return t;
}

function credentialOut(v: string | undefined): string {
  if (v === undefined || v.trim() === '') throw new ValidationError('--credential-out', v, 'required: the file the join credential is written to (mode 0600)');
  return v;
}

/** "3/5000", or "3/-" without a limit. */
const ofLimit = (count: number, limit: number | undefined): string => `${count}/${limit ?? '-'}`;

export function formatClusterList(rows: readonly { value: ClusterDefinition }[], usage: ReadonlyMap<string, ClusterUsage> = new Map()): string {
  if (rows.length === 0) return 'no clusters are enrolled\n';
  return `${renderTable(
    ['NAME', 'TOPOLOGY', 'POD RANGES', 'NODES/MAX', 'EXPORTS/MAX', 'CREDENTIAL', 'ENROLLED AT'],
    rows.map(({ value: d }) => [
      d.name,
      d.topology,
      d.podCidrs.join(','),
      ofLimit(usage.get(d.name)?.nodes ?? 0, d.maxNodes),
      ofLimit(usage.get(d.name)?.exports ?? 0, d.maxExports),
      `generation ${d.credentialGeneration}`,
      iso(d.createdAt),
    ]),
  )}\n`;
}

export function formatClusterDetails(d: ClusterDetails, exports = 0): string {
  const v = d.definition.value;
  const lines = [
    `cluster:            ${v.name}`,
    `topology:           ${v.topology}`,
    `pod ranges:         ${v.podCidrs.join(', ')}${v.allowPublic ? ' (public space allowed)' : ''}`,
    `join key:           ${v.joinKey} (credential generation ${v.credentialGeneration})`,
    `enrolled at:        ${iso(v.createdAt)}; updated ${iso(v.updatedAt)}`,
    `node limit:         ${usageText(d.nodes.length, v.maxNodes)} live`,
    `export limit:       ${usageText(exports, v.maxExports)} service exports`,
    `gateway:            ${d.record?.gateway ?? '-'}`,
    `live nodes:         ${d.nodes.length === 0 ? '-' : d.nodes.map((n) => `${n.name} (${n.overlayIp}, ${n.podCidrs.join(',')})`).join('; ')}`,
  ];
  return `${lines.join('\n')}\n`;
}

export function addClusterCommands(program: Command): void {
  const cluster = program.command('cluster').description('enroll clusters: their pod ranges, topology and join credential');

  addLimitOptions(
    addSharedOptions(
      cluster
        .command('add')
        .argument('<name>', 'cluster name (a DNS label)')
        .description('enroll a cluster and write its join credential (a secret file for its agents)'),
    ),
    true,
  )
    .addOption(new Option('--pod-cidr <cidr>', 'a pod range of the cluster; repeatable or comma-separated (required)').argParser(collect))
    .addOption(new Option('--topology <mode>', 'mesh | gateway (default mesh)'))
    .addOption(new Option('--allow-public', 'allow pod ranges outside private space (public, or shared 100.64.0.0/10)'))
    .addOption(new Option('--credential-out <file>', 'where to write the join credential (mode 0600; required)'))
    .action(async (name: string, opts: SharedOptions & LimitOptions & { podCidr?: string[]; topology?: string; allowPublic?: boolean; credentialOut?: string }, cmd: Command) => {
      const cluster = parseClusterName(name);
      const topology = parseTopology(opts.topology);
      const limits = newClusterLimits(opts);
      const out = credentialOut(opts.credentialOut);
      if (!opts.podCidr || opts.podCidr.length === 0) throw new ValidationError('--pod-cidr', undefined, 'required: the pod ranges of the cluster, e.g. --pod-cidr 10.244.0.0/16');
      const config = sharedConfig(opts, cmd);
      const credential = await generateJoinCredential(cluster);
      // The file first: a definition whose credential nobody holds would need a rotation.
      await writeCredentialFile(out, credential);
      try {
        const r = await withAdmin(config, ({ store }) =>
          addCluster({ store, clock: systemClock }, { name: cluster, podCidrs: opts.podCidr ?? [], topology, allowPublic: opts.allowPublic === true, credential, ...limits }),
        );
        process.stdout.write(
          `enrolled cluster "${cluster}" (${r.definition.topology}; pod ranges ${r.definition.podCidrs.join(', ')}; at most ${limits.maxNodes} live nodes and ${limits.maxExports} service exports)\n` +
            `  join credential written to ${out} (mode 0600): give it to the cluster's agents (--join-credential-file)\n`,
        );
      } catch (err) {
        // Stored but unchecked: the cluster is enrolled with this credential, so it stays on disk.
        if (err instanceof EnrolledUncheckedError) throw new EnrolledUncheckedError(`${err.message}; the join credential is in ${out} (mode 0600)`, { cause: err });
        await unlink(out).catch(() => undefined);
        throw err;
      }
    });

  addSharedOptions(cluster.command('list').description('list enrolled clusters'))
    .addOption(new Option('--json', 'print JSON'))
    .action(async (opts: SharedOptions & { json?: boolean }, cmd: Command) => {
      const { rows, usage } = await withAdmin(sharedConfig(opts, cmd), async ({ store }) => ({ rows: await listClusters({ store }), usage: await clusterUsage(store) }));
      process.stdout.write(opts.json === true ? `${JSON.stringify(rows.map((r) => r.value), null, 2)}\n` : formatClusterList(rows, usage));
    });

  addSharedOptions(cluster.command('show').argument('<name>', 'cluster name').description('show a cluster definition and its live nodes'))
    .addOption(new Option('--json', 'print JSON'))
    .action(async (name: string, opts: SharedOptions & { json?: boolean }, cmd: Command) => {
      const c = parseClusterName(name);
      const { d, exports } = await withAdmin(sharedConfig(opts, cmd), async ({ store }) => ({ d: await showCluster({ store }, c), exports: await clusterExportCount(store, c) }));
      process.stdout.write(opts.json === true ? `${JSON.stringify({ definition: d.definition.value, record: d.record, nodes: d.nodes, exports }, null, 2)}\n` : formatClusterDetails(d, exports));
    });

  addSharedOptions(cluster.command('remove').argument('<name>', 'cluster name').description('remove an enrollment: its live nodes are removed and nothing can register into it')).action(
    async (name: string, opts: SharedOptions, cmd: Command) => {
      const c = parseClusterName(name);
      const removed = await withAdmin(sharedConfig(opts, cmd), ({ store }) => removeCluster({ store }, c));
      process.stdout.write(`removed cluster "${removed.name}" (${removed.podCidrs.join(', ')}); the coordinator removes its live nodes\n`);
    },
  );

  addSharedOptions(
    cluster
      .command('rotate-credential')
      .argument('<name>', 'cluster name')
      .description('replace the join credential: the old one can no longer register nodes (live nodes keep running)'),
  )
    .addOption(new Option('--credential-out <file>', 'where to write the new join credential (mode 0600; required)'))
    .action(async (name: string, opts: SharedOptions & { credentialOut?: string }, cmd: Command) => {
      const c = parseClusterName(name);
      const out = credentialOut(opts.credentialOut);
      const config = sharedConfig(opts, cmd);
      const credential = await generateJoinCredential(c);
      await writeCredentialFile(out, credential);
      const r = await withAdmin(config, ({ store }) => rotateCredential({ store, clock: systemClock }, c, credential));
      process.stdout.write(`rotated the join credential of cluster "${c}" (generation ${r.definition.credentialGeneration}); written to ${out} (mode 0600)\n`);
    });

  addClusterSetCommand(cluster);
}
