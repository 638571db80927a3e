// The desired state kept up to date one change at a time. computeDesiredState (desired-state.ts)
// stays the reference and the only place the rules live: this planner runs it for the first view
// and whenever a change is not one it can prove local, and otherwise edits the previous result.
// A join, a leave or a changed record of a node in another mesh cluster then costs an identity
// comparison of the snapshot's records, a few binary searches and copies of three sorted arrays —
// not a re-parse, re-index, re-guard and re-sort of the whole mesh (docs/dataplane.md, "Incremental
// planning"). test/incremental-plan.test.ts checks on random sequences of joins, leaves and changes
// that every result equals the reference's.
//
// A change is local (edited in place) when all of these hold, else the reference runs:
//   - same config, host facts (by value: a full reconcile reads them afresh), guard mode, own record
//     and cluster records as the previous view;
//   - every changed node (before and after) is another node of a mesh cluster, with an endpoint;
//     we have an endpoint too (a NATed self plans relays for its own peers: every NATed pair
//     couples). The mesh may have NATed nodes: a public self reaches them directly and only relays
//     for some of their pairs, so a change is local when it moves no pair onto or off us: a
//     joining relay candidate wins none of our pairs (rendezvous hashing: the pairs it takes are
//     not ours) and a leaving one carried none in the last reference run's relay plan. That plan
//     goes stale for the pairs joiners take, but never in a way that matters: a pair's winner in
//     that run (never us, or the join was refused) cannot leave by an edit, so a pair a joiner took
//     goes back, when the joiner leaves, to a candidate that outranks us — never to us;
//   - no CIDR of a changed node is ours, another node's, or refused by the route guard (host facts,
//     any node's underlay address), and no underlay address of a changed node lies in any node's
//     CIDR — so no other peer, route or refusal can change.
import { parseCidr, type Cidr } from '../../protocol/cidr.ts';
import type { NodeRecord } from '../../protocol/messages.ts';
import type { RemotePath } from '../../protocol/status.ts';
import { compareText } from '../../lib/compare.ts';
import { indexOfSorted, lowerBound } from '../../lib/sorted-array.ts';
import { nodeCidrs, planDesiredState, type DesiredStateOptions } from './desired-state.ts';
import { mayRelay, relayWins, type RelayPlan } from './relay-plan.ts';
import { MeshRanges, type Address } from './mesh-ranges.ts';
import type { DataplaneConfig, DesiredPeer, DesiredRoute, DesiredState, MeshView } from './model.ts';
import { createRouteGuard, underlayOf, type HostFacts, type RouteGuard } from './route-guard.ts';

/** More changed records than this in one view: the reference is cheaper than editing. */
const MAX_EDITS = 32;

export interface PlannerStats {
  /** Views planned by the reference computation / by editing the previous result. */
  readonly full: number;
  readonly incremental: number;
  /** Why the last view was planned in full ('' after an incremental one). */
  readonly lastFullReason: string;
}

/** What the previous result was computed from, and the indexes kept with it. */
interface Basis {
  readonly view: MeshView;
  readonly config: DataplaneConfig;
  readonly host: HostFacts;
  readonly unguarded: boolean;
  readonly desired: DesiredState;
  /** Why no change of this view can be edited in (null: changes may be). */
  readonly ineligible: string | null;
  readonly ranges: MeshRanges;
  /** Host facts and our own underlay: the part of the route guard no node change touches. */
  readonly hostGuard: RouteGuard;
  readonly ownCidrs: ReadonlySet<string>;
  readonly refusedCidrs: ReadonlySet<string>;
  readonly keepalive: number;
  /**
   * From the last reference run's relay plan, only what the relay checks read (the plan itself holds
   * every NATed pair of the mesh — ~40,000 at 3,000 nodes with 10 % NATed — and is not kept): the
   * pairs we relay, and the candidates that relay any pair.
   */
  readonly ourPairs: readonly string[];
  readonly relaysInUse: ReadonlySet<string>;
}

class NotLocal extends Error {
  override name = 'NotLocal';
}

const byPublicKey = (p: DesiredPeer, key: string): number => compareText(p.publicKey, key);
const byDst = (r: DesiredRoute, dst: string): number => compareText(r.dst, dst);
const byClusterNode = (r: RemotePath, k: { cluster: string; node: string }): number => compareText(r.cluster, k.cluster) || compareText(r.node, k.node);

function addressOf(range: Cidr): Address {
  return { family: range.family, value: range.network };
}

function parsedCidrs(node: NodeRecord): Cidr[] {
  const out: Cidr[] = [];
  for (const c of nodeCidrs(node)) {
    const parsed = parseCidr(c);
    if (!parsed) throw new NotLocal(`${node.name}: ${c} is not a CIDR`);
    out.push(parsed);
  }
  return out;
}

/** Names whose record differs (by identity: the watch keeps an unchanged record's object) between two node maps. */
function changedNames(before: ReadonlyMap<string, NodeRecord>, after: ReadonlyMap<string, NodeRecord>): Set<string> {
  const out = new Set<string>();
  if (before === after) return out;
  for (const [name, rec] of after) if (before.get(name) !== rec) out.add(name);
  for (const name of before.keys()) if (!after.has(name)) out.add(name);
  return out;
}

function sameClusters(a: MeshView['clusters'], b: MeshView['clusters']): boolean {
  if (a === b) return true;
  if (a.size !== b.size) return false;
  for (const [name, rec] of a) if (b.get(name) !== rec) return false;
  return true;
}

/** Host facts equal in value and order (the route guard's reasons depend on the order). Small: our own routes are not in them. */
function sameHostFacts(a: HostFacts, b: HostFacts): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function sameConfig(a: DataplaneConfig, b: DataplaneConfig): boolean {
  return (
    a === b ||
    (a.interfaceName === b.interfaceName &&
      a.listenPort === b.listenPort &&
      a.mtu === b.mtu &&
      a.natKeepaliveSec === b.natKeepaliveSec &&
      a.relayPortBase === b.relayPortBase &&
      a.relayPortSpan === b.relayPortSpan)
  );
}

/**
 * A ComputeDesiredState that remembers its previous view and result: same signature and same
 * results as computeDesiredState (the agent's reconciler uses it; `crosslink showconf` keeps the
 * reference). One instance per agent; not for concurrent use (the reconciler runs one plan at a time).
 */
export class IncrementalPlanner {
  private basis: Basis | undefined;
  private counts = { full: 0, incremental: 0, lastFullReason: '' };

  readonly compute = (view: MeshView, config: DataplaneConfig, host: HostFacts, options: DesiredStateOptions = {}): DesiredState => {
    const unguarded = options.unguarded === true;
    const reason = this.editable(view, config, host, unguarded);
    if (reason === null && this.basis !== undefined) {
      if (this.basis.host !== host) this.basis = { ...this.basis, host };
      try {
        const desired = this.edit(this.basis, view);
        this.counts.incremental++;
        this.counts.lastFullReason = '';
        return desired;
      } catch (err) {
        if (!(err instanceof NotLocal)) throw err;
        return this.full(view, config, host, unguarded, err.message);
      }
    }
    return this.full(view, config, host, unguarded, reason ?? 'first view');
  };

  stats(): PlannerStats {
    return { ...this.counts };
  }

  private editable(view: MeshView, config: DataplaneConfig, host: HostFacts, unguarded: boolean): string | null {
    const b = this.basis;
    if (b === undefined) return 'first view';
    if (b.ineligible !== null) return b.ineligible;
    if (unguarded !== b.unguarded) return 'route guard mode changed';
    if (!sameConfig(config, b.config)) return 'data plane settings changed';
    // A full reconcile reads the host afresh: the same facts (by value, in order) plan the same.
    if (host !== b.host && !sameHostFacts(host, b.host)) return 'host facts changed';
    if (view.self !== b.view.self) return 'own record changed';
    if (!sameClusters(view.clusters, b.view.clusters)) return 'cluster records changed';
    return null;
  }

  private full(view: MeshView, config: DataplaneConfig, host: HostFacts, unguarded: boolean, why: string): DesiredState {
    const { desired, relayPlan } = planDesiredState(view, config, host, { unguarded });
    this.counts.full++;
    this.counts.lastFullReason = why;
    this.basis = buildBasis(view, config, host, unguarded, desired, relayPlan);
    return desired;
  }

  /** The previous result with the changed records edited in; throws NotLocal when a change is not provably local. */
  private edit(b: Basis, view: MeshView): DesiredState {
    const changed = changedNames(b.view.nodes, view.nodes);
    if (changed.size === 0) {
      this.basis = { ...b, view };
      return b.desired;
    }
    if (changed.size > MAX_EDITS) throw new NotLocal(`${changed.size} records changed at once`);
    const self = view.self;
    const topologyOf = (cluster: string): string => view.clusters.get(cluster)?.topology ?? 'mesh';
    const edits: { name: string; before: NodeRecord | undefined; after: NodeRecord | undefined }[] = [];
    for (const name of changed) {
      const before = b.view.nodes.get(name);
      const after = view.nodes.get(name);
      for (const rec of [before, after]) {
        if (rec === undefined) continue;
        if (name === self.name || rec.name !== name) throw new NotLocal(`${name}: our own record or a record under another name`);
        if (rec.endpoints.length === 0) throw new NotLocal(`${name} has no endpoint (relay planning)`);
        if (topologyOf(rec.cluster) !== 'mesh') throw new NotLocal(`${name} is in gateway cluster ${rec.cluster}`);
      }
      edits.push({ name, before, after });
    }
    // Relays: no pair moves onto or off us (see the top of the file).
    for (const { name, before, after } of edits) {
      if (before !== undefined && mayRelay(before) && b.relaysInUse.has(name)) throw new NotLocal(`${name}: relays NATed pairs`);
      if (after !== undefined && mayRelay(after) && b.ourPairs.some((k) => relayWins(k, name, self.name))) throw new NotLocal(`${name}: would win a NATed pair we relay`);
    }

    // Indexes first (any failure below rebuilds them with the reference).
    const ranges = b.ranges;
    for (const { before } of edits) {
      if (before === undefined) continue;
      for (const c of parsedCidrs(before)) {
        if (b.refusedCidrs.has(c.text) || b.ownCidrs.has(c.text)) throw new NotLocal(`${before.name}: ${c.text} was refused or is ours`);
        if (ranges.cidrCount(c) !== 1) throw new NotLocal(`${before.name}: ${c.text} is claimed twice`);
        ranges.removeCidr(c);
      }
      for (const u of underlayOf(before)) ranges.removeAddress(addressOf(u.range));
    }
    const afterCidrs = new Map<string, Cidr[]>();
    for (const { after } of edits) {
      if (after === undefined) continue;
      const cidrs = parsedCidrs(after);
      for (const c of cidrs) {
        if (ranges.cidrCount(c) !== 0 || b.ownCidrs.has(c.text)) throw new NotLocal(`${after.name}: ${c.text} is claimed twice`);
        ranges.addCidr(c);
      }
      for (const u of underlayOf(after)) ranges.addAddress(addressOf(u.range));
      afterCidrs.set(after.name, cidrs);
    }
    // The route guard: a changed node's CIDRs overlap nothing protected, its underlay addresses no node's CIDR.
    for (const { name, before, after } of edits) {
      for (const c of afterCidrs.get(name) ?? []) {
        if (b.hostGuard.reason(c.text) !== null || ranges.hasAddressInside(c)) throw new NotLocal(`${name}: ${c.text} is refused by the route guard`);
      }
      for (const rec of [before, after]) {
        for (const u of rec === undefined ? [] : underlayOf(rec)) {
          if (ranges.hasCidrContaining(addressOf(u.range))) throw new NotLocal(`${name}: underlay address ${u.ip} lies in a mesh CIDR`);
        }
      }
    }

    // Peers, routes and remote paths of nodes in other clusters (our own cluster's nodes are reached without us).
    const peers = [...b.desired.peers];
    const routes = [...b.desired.routes];
    const remotes = [...b.desired.remotes];
    for (const { before } of edits) {
      if (before === undefined || before.cluster === self.cluster) continue;
      const p = indexOfSorted(peers, before.publicKey, byPublicKey);
      if (p < 0 || peers[p]?.node !== before.name) throw new NotLocal(`${before.name}: its peer is not where it should be`);
      peers.splice(p, 1);
      for (const c of nodeCidrs(before)) {
        const r = indexOfSorted(routes, c, byDst);
        if (r < 0) throw new NotLocal(`${before.name}: route ${c} missing`);
        routes.splice(r, 1);
      }
      const m = indexOfSorted(remotes, { cluster: before.cluster, node: before.name }, byClusterNode);
      if (m < 0) throw new NotLocal(`${before.name}: remote path missing`);
      remotes.splice(m, 1);
    }
    for (const { after } of edits) {
      if (after === undefined || after.cluster === self.cluster) continue;
      const cidrs = nodeCidrs(after);
      const p = lowerBound(peers, after.publicKey, byPublicKey);
      if (peers[p]?.publicKey === after.publicKey) throw new NotLocal(`${after.name}: public key already a peer`);
      const endpoint = after.endpoints[0] ?? null;
      peers.splice(p, 0, {
        publicKey: after.publicKey,
        endpoint,
        allowedIps: [...cidrs].sort(compareText),
        persistentKeepalive: b.keepalive,
        node: after.name,
        cluster: after.cluster,
        path: 'direct',
        via: null,
        carries: [after.name],
      });
      for (const dst of cidrs) routes.splice(lowerBound(routes, dst, byDst), 0, { dst, dev: b.config.interfaceName });
      const key = { cluster: after.cluster, node: after.name };
      remotes.splice(lowerBound(remotes, key, byClusterNode), 0, { node: after.name, cluster: after.cluster, path: 'direct', via: null, reason: null });
    }
    const desired: DesiredState = {
      interface: b.desired.interface,
      peers,
      routes,
      relays: b.desired.relays,
      remotes,
      refused: b.desired.refused,
      isGateway: b.desired.isGateway,
    };
    this.basis = { ...b, view, desired };
    return desired;
  }
}

/** The indexes for `view` and its reference result, or why its changes cannot be edited in. */
function buildBasis(view: MeshView, config: DataplaneConfig, host: HostFacts, unguarded: boolean, desired: DesiredState, relayPlan: RelayPlan): Basis {
  const self = view.self;
  const ranges = new MeshRanges();
  const basis = {
    view,
    config,
    host,
    unguarded,
    desired,
    ranges,
    hostGuard: createRouteGuard(host, self, []),
    ownCidrs: new Set(nodeCidrs(self)),
    refusedCidrs: new Set(desired.refused.map((r) => r.cidr)),
    keepalive: self.persistentKeepalive ?? (self.endpoints.length > 0 ? 0 : config.natKeepaliveSec),
    ourPairs: relayPlan.pairKeysOn(self.name),
    relaysInUse: new Set(relayPlan.relaysInUse()),
  };
  const ineligible = (why: string): Basis => ({ ...basis, ineligible: why });
  if (unguarded) return ineligible('route guard off');
  if ((view.clusters.get(self.cluster)?.topology ?? 'mesh') !== 'mesh') return ineligible('we are in a gateway cluster');
  if (self.endpoints.length === 0) return ineligible('we have no endpoint (relay planning)');
  const underlay: Address[] = [];
  for (const [name, node] of view.nodes) {
    if (node.name !== name) return ineligible(`a record under another name (${name})`);
    if (name === self.name) continue;
    for (const c of nodeCidrs(node)) {
      const parsed = parseCidr(c);
      if (!parsed) return ineligible(`${name}: ${c} is not a CIDR`);
      ranges.addCidr(parsed);
    }
    for (const u of underlayOf(node)) underlay.push(addressOf(u.range));
  }
  ranges.addAddresses(underlay);
  for (let i = 1; i < desired.peers.length; i++) {
    if (desired.peers[i - 1]?.publicKey === desired.peers[i]?.publicKey) return ineligible('two peers share a public key');
  }
  return { ...basis, ineligible: null };
}
