// `crosslink-coordinator cluster set <name> --max-nodes N --max-exports N`, and the two limit flags
// `cluster add` shares with it (cluster-limits.ts: what they mean, the defaults of `cluster add`).
import { Option, type Command } from 'commander';
import { systemClock } from '../lib/clock.ts';
import { parseClusterName } from './cluster-admin.ts';
import { clusterUsage, setClusterLimits, type ClusterLimits } from './cluster-limits-admin.ts';
import { DEFAULT_MAX_EXPORTS, DEFAULT_MAX_NODES, parseLimit, usageText } from './cluster-limits.ts';
import { addSharedOptions, sharedConfig, withAdmin, type SharedOptions } from './revocation-commands.ts';

export interface LimitOptions {
  readonly maxNodes?: string;
  readonly maxExports?: string;
}

/** Adds --max-nodes and --max-exports; `defaults`: mention the defaults of `cluster add` in the help. */
export function addLimitOptions(cmd: Command, defaults: boolean): Command {
  const d = (n: number): string => (defaults ? ` (default ${n})` : '');
  return cmd
    .addOption(new Option('--max-nodes <n>', `the most live nodes the cluster may have; a new node beyond it is refused, a live one re-registering never${d(DEFAULT_MAX_NODES)}`))
    .addOption(new Option('--max-exports <n>', `the most service exports the cluster may have; a new export beyond it is refused, an update never${d(DEFAULT_MAX_EXPORTS)}`));
}

/** The limits given on the command line (validated: a whole number from 1 to CLUSTER_LIMIT_MAX). */
function limitsOf(opts: LimitOptions): ClusterLimits {
  return { maxNodes: parseLimit('--max-nodes', opts.maxNodes), maxExports: parseLimit('--max-exports', opts.maxExports) };
}

/** The limits of a new cluster: the given ones, else the defaults. */
export function newClusterLimits(opts: LimitOptions): { maxNodes: number; maxExports: number } {
  const given = limitsOf(opts);
  return { maxNodes: given.maxNodes ?? DEFAULT_MAX_NODES, maxExports: given.maxExports ?? DEFAULT_MAX_EXPORTS };
}

export function addClusterSetCommand(cluster: Command): void {
  addLimitOptions(
    addSharedOptions(
      cluster
        .command('set')
        .argument('<name>', 'cluster name')
        .description("change a cluster's limits (live nodes and exports already there stay; new ones are refused while at the limit)"),
    ),
    false,
  ).action(async (name: string, opts: SharedOptions & LimitOptions, cmd: Command) => {
    const c = parseClusterName(name);
    const limits = limitsOf(opts);
    const config = sharedConfig(opts, cmd);
    const { definition, usage } = await withAdmin(config, async ({ store }) => {
      const definition = await setClusterLimits({ store, clock: systemClock }, c, limits);
      return { definition, usage: (await clusterUsage(store)).get(c) };
    });
    process.stdout.write(
      `set the limits of cluster "${c}": live nodes ${usageText(usage?.nodes ?? 0, definition.maxNodes)}; service exports ${usageText(usage?.exports ?? 0, definition.maxExports)}\n`,
    );
  });
}
