// Records the access-policy tests build their mesh from: verified node records and the clusters'
// enrolled definitions (the policy maps `{cluster: X}` to X's enrolled ranges: protocol/policy/context.ts).
import { RecordingRunner } from './recording-runner.ts';
import type { ClusterDefinition, NodeRecord } from '../../protocol/messages.ts';

const K = (n: number): string => Buffer.alloc(32, n).toString('base64');

export function policyNode(name: string, cluster: string, podCidrs: readonly string[], overlayIp: string): NodeRecord {
  return {
    kind: 'node', v: 1, name, cluster, location: 'x', publicKey: K(1), identityKey: K(2), endpoints: [], privateAddresses: [],
    podCidrs: [...podCidrs], listenPort: 51820, topology: 'mesh', gatewayEligible: false, overlayIp, generation: 1, registeredAt: 0, updatedAt: 0,
  };
}

export function enrolledCluster(name: string, podCidrs: readonly string[], updatedAt = 0): ClusterDefinition {
  return {
    kind: 'cluster-definition', v: 1, name, podCidrs: [...podCidrs], topology: 'mesh', allowPublic: false, joinKey: K(9),
    credentialGeneration: 1, createdAt: 0, updatedAt,
  };
}

/** Definitions by name, as the agent's EnrollmentWatch holds them. */
export const enrollmentsOf = (...defs: ClusterDefinition[]): ReadonlyMap<string, ClusterDefinition> => new Map(defs.map((d) => [d.name, d]));

/** `nft` or a path to it (AgentPolicy resolves a bare nft to /usr/sbin/nft). */
const isNft = (cmd: string | undefined): boolean => cmd !== undefined && /(^|\/)nft$/.test(cmd);

/** A RecordingRunner that keeps the table `nft -f` gave it and lists it as nft's JSON would. */
export function fakeNft(initial: { version: number; counters: Record<string, number> } | null = null): { runner: RecordingRunner; applied: string[] } {
  let table = initial;
  const applied: string[] = [];
  const runner = new RecordingRunner().respond((argv) => {
    if (!isNft(argv[0])) return undefined;
    if (argv[1] === '--version') return { stdout: 'nftables v1.0.6\n', stderr: '', exitCode: 0 };
    if (argv[1] === '-j') {
      if (!table) return { stdout: '', stderr: 'Error: No such file or directory\n', exitCode: 1 };
      const items: unknown[] = Object.entries(table.counters).map(([name, packets]) => ({ counter: { family: 'inet', name, table: 'crosslink_policy', packets, bytes: packets * 100 } }));
      items.push({ rule: { chain: 'tunnel', comment: `default (crosslink policy v${table.version} cdcdcdcdcdcd)` } });
      return { stdout: JSON.stringify({ nftables: items }), stderr: '', exitCode: 0 };
    }
    return undefined;
  });
  // `nft -f -`: remember what it was given (the fake's table follows it).
  const run = runner.run.bind(runner);
  runner.run = async (argv, options) => {
    const r = await run(argv, options);
    if (isNft(argv[0]) && argv[1] === '-f' && options?.input !== undefined) {
      applied.push(options.input);
      const v = /crosslink policy v([0-9]+)/.exec(options.input)?.[1];
      const counters: Record<string, number> = {};
      for (const m of options.input.matchAll(/counter (\w+) \{ packets ([0-9]+)/g)) counters[m[1] ?? ''] = Number(m[2]);
      table = v === undefined ? null : { version: Number(v), counters };
    }
    return r;
  };
  return { runner, applied };
}
