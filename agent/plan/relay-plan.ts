// Relay choice for NAT-to-NAT pairs. Two overlay members in different clusters that both lack a
// public endpoint cannot reach each other; a public overlay member forwards their (still end-to-end
// encrypted) WireGuard datagrams on a UDP port of its relay range. Pure and deterministic: every
// node computes the same plan from the same view, so both sides of a pair and the relay agree on
// relay and port without talking to each other.
import { createHash } from 'node:crypto';
import { formatEndpoint, parseEndpoint } from '../../protocol/cidr.ts';
import type { NodeRecord } from '../../protocol/messages.ts';
import type { DataplaneConfig, RelayAssignment } from './model.ts';
import { isPublic, type TopologyIndex } from './roles.ts';
import { byName, compareText } from '../../lib/compare.ts';

export type RelayChoice =
  | { readonly ok: true; readonly relay: NodeRecord; readonly port: number; readonly endpoint: string }
  | { readonly ok: false; readonly reason: string };

export interface RelayPlan {
  /** The relay for a NAT-to-NAT pair (order of a and b does not matter). */
  forPair(a: NodeRecord, b: NodeRecord): RelayChoice;
  /** Pairs `node` forwards for, sorted by port. */
  assignmentsOf(node: string): readonly RelayAssignment[];
  /**
   * The pair keys whose rendezvous winner is `node`, including pairs it has no free port for (what
   * moves elsewhere if `node` leaves); sorted. The incremental planner proves with these that a
   * change of another node moves no pair onto or off us.
   */
  pairKeysOn(node: string): readonly string[];
  /** The candidates that win at least one pair (what pairKeysOn is not empty for). */
  relaysInUse(): readonly string[];
}

/** The pair's identity: both WireGuard public keys, sorted, joined by ",". */
export function pairKey(publicKeyA: string, publicKeyB: string): string {
  return publicKeyA < publicKeyB ? `${publicKeyA},${publicKeyB}` : `${publicKeyB},${publicKeyA}`;
}

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

/**
 * Eligible relays: public overlay members (nodes of mesh clusters, active gateways of gateway
 * clusters) that have an endpoint with an IP host. A non-gateway node of a gateway cluster is never
 * eligible: it is not on the overlay and its advertised endpoint is not where any agent listens.
 */
export function relayCandidates(index: TopologyIndex): readonly NodeRecord[] {
  return index.overlayMembers.filter(mayRelay);
}

/**
 * Whether an overlay member may relay: public, gatewayEligible (the operator's "may carry other
 * nodes' traffic" switch: gateways and relays alike) and an endpoint with an IP host.
 */
export function mayRelay(node: NodeRecord): boolean {
  return isPublic(node) && node.gatewayEligible && relayHost(node) !== undefined;
}

function relayHost(node: NodeRecord): string | undefined {
  const first = node.endpoints[0];
  return first === undefined ? undefined : parseEndpoint(first)?.host;
}

/**
 * Rendezvous (highest random weight) hashing: the candidate with the highest sha256(pairKey + name)
 * wins. Adding or removing an unrelated candidate never moves a pair unless that candidate is (or
 * was) the winner, so relays stay put while the mesh changes around them.
 */
export function rendezvousRelay(key: string, candidates: readonly NodeRecord[]): NodeRecord | undefined {
  let best: NodeRecord | undefined;
  let bestScore = '';
  for (const c of candidates) {
    const score = relayScore(key, c.name);
    if (best === undefined || beats(score, c.name, bestScore, best.name)) {
      best = c;
      bestScore = score;
    }
  }
  return best;
}

const relayScore = (key: string, name: string): string => sha256(key + name).toString('hex');
/** The higher score wins; equal scores (never seen: sha256), the lower name. */
const beats = (score: string, name: string, otherScore: string, otherName: string): boolean => score > otherScore || (score === otherScore && name < otherName);

/** Would `challenger` win pair `key` from `holder` (rendezvousRelay's order, whatever the other candidates)? */
export function relayWins(key: string, challenger: string, holder: string): boolean {
  return beats(relayScore(key, challenger), challenger, relayScore(key, holder), holder);
}

/** The port a pair would like on its relay: base + (hash(pairKey) mod span). */
export function preferredPort(key: string, base: number, span: number): number {
  return base + (sha256(key).readUIntBE(0, 6) % span);
}

interface PairNeed {
  readonly key: string;
  readonly a: NodeRecord;
  readonly b: NodeRecord;
}

/**
 * Plans every NAT-to-NAT pair of the mesh (not only ours: a relay's port for our pair depends on the
 * other pairs sharing that relay). Cost: O(pairs × candidates) hashes.
 */
export function planRelays(index: TopologyIndex, config: Pick<DataplaneConfig, 'relayPortBase' | 'relayPortSpan'>): RelayPlan {
  const natMembers = index.overlayMembers.filter((n) => !isPublic(n));
  const candidates = relayCandidates(index);
  const { relayPortBase: base, relayPortSpan: span } = config;

  const byRelay = new Map<string, PairNeed[]>();
  const failures = new Map<string, string>();
  for (let i = 0; i < natMembers.length; i++) {
    for (let j = i + 1; j < natMembers.length; j++) {
      const a = natMembers[i];
      const b = natMembers[j];
      if (!a || !b || a.cluster === b.cluster) continue; // same cluster: never peers
      const key = pairKey(a.publicKey, b.publicKey);
      const relay = rendezvousRelay(key, candidates);
      if (!relay) {
        failures.set(key, `${a.name} and ${b.name} are both behind NAT and no public node can relay for them`);
        continue;
      }
      const list = byRelay.get(relay.name) ?? [];
      list.push({ key, a, b });
      byRelay.set(relay.name, list);
    }
  }

  const choices = new Map<string, RelayChoice>();
  const assignments = new Map<string, RelayAssignment[]>();
  for (const [relayName, pairs] of byRelay) {
    const relay = index.nodes.get(relayName);
    const host = relay ? relayHost(relay) : undefined;
    if (!relay || host === undefined) continue; // candidates always have both; keeps the types honest
    // Deterministic collision handling: pairs in pairKey order, each linear-probes from its preferred
    // port. The relay's own WireGuard port is never handed out.
    pairs.sort((x, y) => compareText(x.key, y.key));
    const used = new Set<number>([relay.listenPort]);
    const served: RelayAssignment[] = [];
    for (const p of pairs) {
      const port = span > 0 ? probe(preferredPort(p.key, base, span), base, span, used) : undefined;
      if (port === undefined) {
        choices.set(p.key, { ok: false, reason: `relay ${relay.name} has no free port in ${base}-${base + Math.max(span, 1) - 1}` });
        continue;
      }
      used.add(port);
      choices.set(p.key, { ok: true, relay, port, endpoint: formatEndpoint(host, port) });
      const [first, second] = [p.a, p.b].sort(byName);
      if (first && second) {
        served.push({
          port,
          a: { node: first.name, publicKey: first.publicKey },
          b: { node: second.name, publicKey: second.publicKey },
        });
      }
    }
    served.sort((x, y) => x.port - y.port);
    assignments.set(relay.name, served);
  }

  return {
    forPair(a, b) {
      const key = pairKey(a.publicKey, b.publicKey);
      return (
        choices.get(key) ?? {
          ok: false,
          reason: failures.get(key) ?? `${a.name} and ${b.name} are both behind NAT and have no relay`,
        }
      );
    },
    assignmentsOf(node) {
      return assignments.get(node) ?? [];
    },
    pairKeysOn(node) {
      return (byRelay.get(node) ?? []).map((p) => p.key);
    },
    relaysInUse() {
      return [...byRelay.keys()];
    },
  };
}

function probe(preferred: number, base: number, span: number, used: ReadonlySet<number>): number | undefined {
  for (let i = 0; i < span; i++) {
    const port = base + ((preferred - base + i) % span);
    if (!used.has(port) && port <= 65535) return port;
  }
  return undefined;
}
