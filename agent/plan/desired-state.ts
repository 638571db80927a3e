// computeDesiredState: what this node's WireGuard interface, peers, routes and relay ports should
// be, given the verified mesh view. Pure and deterministic (same view → same output, byte for byte),
// so the diff against live state is empty when nothing changed. Rules: docs/dataplane.md.
import { canonicalCidr, hostCidr, parseCidr } from '../../protocol/cidr.ts';
import type { NodeRecord } from '../../protocol/messages.ts';
import type { RemotePath } from '../../protocol/status.ts';
import type { DataplaneConfig, DesiredInterface, DesiredPeer, DesiredRoute, DesiredState, MeshView } from './model.ts';
import { planRelays, type RelayPlan } from './relay-plan.ts';
import { indexTopology, isOverlayMember, isPublic, type ClusterView, type TopologyIndex } from './roles.ts';
import { compareText } from '../../lib/compare.ts';
import { NO_HOST_FACTS, UNGUARDED, createRouteGuard, type HostFacts, type RefusedCidr } from './route-guard.ts';

export interface DesiredStateOptions {
  /** Tests only: compute without the route guard (the negative control of the adversary test). */
  readonly unguarded?: boolean;
}

/** Overlay /32 (/128) plus pod CIDRs, canonical: what a node's pods and overlay IP occupy. */
export function nodeCidrs(node: NodeRecord): string[] {
  const out = [hostCidr(node.overlayIp)];
  for (const c of node.podCidrs) {
    const canon = canonicalCidr(c);
    if (canon !== undefined) out.push(canon);
  }
  return out;
}

/** A node's CIDRs (nodeCidrs), parsed once per computation: every node is asked about two or three times. */
type CidrsOf = (node: NodeRecord) => readonly string[];

function memoCidrs(): CidrsOf {
  const memo = new Map<NodeRecord, readonly string[]>();
  return (node) => {
    let out = memo.get(node);
    if (out === undefined) {
      out = nodeCidrs(node);
      memo.set(node, out);
    }
    return out;
  };
}

/** How an overlay member (`from`) reaches another overlay member, and with which WireGuard settings. */
type Link =
  | { readonly ok: true; readonly endpoint: string | null; readonly path: 'direct' | 'relay'; readonly via: string | null }
  | { readonly ok: false; readonly reason: string };

function linkBetween(from: NodeRecord, to: NodeRecord, plan: RelayPlan): Link {
  const first = to.endpoints[0];
  if (first !== undefined) return { ok: true, endpoint: first, path: 'direct', via: null };
  // The peer is behind NAT: if we are public it finds us and WireGuard learns its endpoint.
  if (isPublic(from)) return { ok: true, endpoint: null, path: 'direct', via: null };
  const relay = plan.forPair(from, to);
  return relay.ok ? { ok: true, endpoint: relay.endpoint, path: 'relay', via: relay.relay.name } : { ok: false, reason: relay.reason };
}

interface OverlayPaths {
  /** Unfiltered peers (allowedIps are the target's full set), sorted by the target node name. */
  readonly peers: DesiredPeer[];
  readonly remotes: RemotePath[];
}

/** Every other cluster as seen by overlay member `from`: one peer per mesh node or per active gateway. */
function overlayPaths(from: NodeRecord, index: TopologyIndex, plan: RelayPlan, config: DataplaneConfig, cidrsOf: CidrsOf): OverlayPaths {
  const keepalive = from.persistentKeepalive ?? (isPublic(from) ? 0 : config.natKeepaliveSec);
  const peers: DesiredPeer[] = [];
  const remotes: RemotePath[] = [];
  const none = (node: NodeRecord, reason: string): RemotePath => ({ node: node.name, cluster: node.cluster, path: 'none', via: null, reason });

  const addPeer = (target: NodeRecord, cluster: ClusterView, carried: readonly NodeRecord[], link: Link & { ok: true }, gateway: boolean): void => {
    peers.push({
      publicKey: target.publicKey,
      endpoint: link.endpoint,
      allowedIps: carried.flatMap(cidrsOf),
      persistentKeepalive: keepalive,
      node: target.name,
      cluster: cluster.name,
      path: gateway ? 'gateway' : link.path,
      via: link.via,
      carries: carried.map((n) => n.name).sort(compareText),
    });
  };

  for (const cluster of index.clusters.values()) {
    if (cluster.name === from.cluster) continue;
    if (cluster.topology === 'gateway') {
      const gw = cluster.gateway;
      if (!gw) {
        for (const n of cluster.nodes) remotes.push(none(n, `cluster ${cluster.name} has no active gateway`));
        continue;
      }
      const link = linkBetween(from, gw, plan);
      if (!link.ok) {
        for (const n of cluster.nodes) remotes.push(none(n, `gateway ${gw.name}: ${link.reason}`));
        continue;
      }
      addPeer(gw, cluster, [gw, ...cluster.nodes.filter((n) => n.name !== gw.name)], link, true);
      for (const n of cluster.nodes) remotes.push({ node: n.name, cluster: n.cluster, path: 'gateway', via: gw.name, reason: null });
      continue;
    }
    for (const n of cluster.nodes) {
      const link = linkBetween(from, n, plan);
      if (!link.ok) {
        remotes.push(none(n, link.reason));
        continue;
      }
      addPeer(n, cluster, [n], link, false);
      remotes.push({ node: n.name, cluster: n.cluster, path: link.path, via: link.via, reason: null });
    }
  }
  return { peers, remotes };
}

/** First address of `addresses` in the same family as `cidr`. */
function sameFamilyAddress(addresses: readonly string[], cidr: string): string | undefined {
  const family = parseCidr(cidr)?.family;
  return addresses.find((a) => (a.includes(':') ? 6 : 4) === family);
}

/**
 * `host` is the snapshot of what this host needs outside the overlay (its addresses, routes, NATS
 * servers): every peer CIDR overlapping it is refused (`DesiredState.refused`, with the reason)
 * and becomes neither an allowed IP nor a route.
 */
export function computeDesiredState(view: MeshView, config: DataplaneConfig, host: HostFacts = NO_HOST_FACTS, options: DesiredStateOptions = {}): DesiredState {
  return planDesiredState(view, config, host, options).desired;
}

/** computeDesiredState, with the relay plan of the whole mesh it used (the incremental planner keeps it). */
export function planDesiredState(view: MeshView, config: DataplaneConfig, host: HostFacts = NO_HOST_FACTS, options: DesiredStateOptions = {}): { readonly desired: DesiredState; readonly relayPlan: RelayPlan } {
  const self = view.self;
  const index = indexTopology(view);
  const plan = planRelays(index, config);
  const ownCluster = index.clusters.get(self.cluster);
  const cidrsOf = memoCidrs();
  const own = new Set(cidrsOf(self));
  const guard = options.unguarded === true ? UNGUARDED : createRouteGuard(host, self, view.nodes.values());
  // Who owns a CIDR (first node by name): only needed to name a refusal, so built on the first one.
  let ownerOf: Map<string, NodeRecord> | undefined;
  const ownerOfCidr = (cidr: string): NodeRecord | undefined => {
    if (ownerOf === undefined) {
      ownerOf = new Map();
      for (const n of [...view.nodes.values()].sort((a, b) => compareText(a.name, b.name))) {
        for (const c of cidrsOf(n)) if (!ownerOf.has(c)) ownerOf.set(c, n);
      }
    }
    return ownerOf.get(cidr);
  };
  const refused = new Map<string, RefusedCidr>();
  /** True if the guard lets `cidr` (claimed through `fallback`) into the overlay; records the refusal otherwise. */
  const allowed = (cidr: string, fallback: { name: string; cluster: string }): boolean => {
    const reason = guard.reason(cidr);
    if (reason === null) return true;
    const owner = ownerOfCidr(cidr) ?? fallback;
    refused.set(cidr, { node: owner.name, cluster: owner.cluster, cidr, reason });
    return false;
  };

  const iface: DesiredInterface = {
    name: config.interfaceName,
    listenPort: config.listenPort,
    mtu: config.mtu,
    addresses: [hostCidr(self.overlayIp)],
  };

  const peers: DesiredPeer[] = [];
  const routes = new Map<string, DesiredRoute>();
  /**
   * Adds the route unless it is ours, taken or refused by the guard; true if a route to dst exists now.
   * `guarded`: the guard already let dst in (a peer's allowed IP): not asked twice.
   */
  const addRoute = (route: DesiredRoute, claimedBy: { name: string; cluster: string }, guarded = false): boolean => {
    if (own.has(route.dst)) return false;
    if (routes.has(route.dst)) return true;
    if (!guarded && !allowed(route.dst, claimedBy)) return false;
    routes.set(route.dst, route);
    return true;
  };
  let remotes: RemotePath[];
  let isGateway = false;
  let relays: DesiredState['relays'] = [];

  if (isOverlayMember(index, self)) {
    isGateway = ownCluster?.gateway?.name === self.name;
    const paths = overlayPaths(self, index, plan, config, cidrsOf);
    remotes = paths.remotes;
    // Each CIDR goes to exactly one peer (first by node name): WireGuard would otherwise move it
    // between peers on every reconcile. Validation upstream should make this a no-op.
    const claimed = new Set(own);
    for (const p of paths.peers.sort((a, b) => compareText(a.node, b.node))) {
      const allowedIps = p.allowedIps.filter((c) => !claimed.has(c) && allowed(c, { name: p.node, cluster: p.cluster }));
      for (const c of allowedIps) claimed.add(c);
      if (allowedIps.length === 0) continue;
      peers.push({ ...p, allowedIps: [...allowedIps].sort(compareText) });
      for (const dst of allowedIps) addRoute({ dst, dev: config.interfaceName }, { name: p.node, cluster: p.cluster }, true);
    }
    if (isGateway && ownCluster) {
      // Remote clusters send our non-gateway nodes' overlay IPs to us; hand them on over the VPC.
      // (Their pods are reached through the CNI's routes, not ours.)
      for (const n of ownCluster.nodes) {
        if (n.name === self.name) continue;
        const dst = hostCidr(n.overlayIp);
        const via = sameFamilyAddress(n.privateAddresses, dst);
        if (via !== undefined) addRoute({ dst, via }, n);
      }
    }
    relays = plan.assignmentsOf(self.name);
  } else {
    remotes = localGatewayPaths(self, ownCluster, index, plan, config, addRoute, cidrsOf);
  }

  const desired: DesiredState = {
    interface: iface,
    peers: peers.sort((a, b) => compareText(a.publicKey, b.publicKey)),
    routes: [...routes.values()].sort((a, b) => compareText(a.dst, b.dst)),
    relays,
    remotes: remotes.sort((a, b) => compareText(a.cluster, b.cluster) || compareText(a.node, b.node)),
    refused: [...refused.values()].sort((a, b) => compareText(a.cidr, b.cidr)),
    isGateway,
  };
  return { desired, relayPlan: plan };
}

/**
 * A non-gateway node of a gateway cluster: no peers; every destination our gateway can reach gets a
 * route via the gateway's private (VPC) address.
 */
function localGatewayPaths(
  self: NodeRecord,
  ownCluster: ClusterView | undefined,
  index: TopologyIndex,
  plan: RelayPlan,
  config: DataplaneConfig,
  addRoute: (r: DesiredRoute, claimedBy: NodeRecord) => boolean,
  cidrsOf: CidrsOf,
): RemotePath[] {
  const others = [...index.clusters.values()].filter((c) => c.name !== self.cluster).flatMap((c) => c.nodes);
  const none = (reason: string): RemotePath[] =>
    others.map((n) => ({ node: n.name, cluster: n.cluster, path: 'none' as const, via: null, reason }));
  const gw = ownCluster?.gateway;
  if (!gw) return none(`cluster ${self.cluster} has no active gateway`);
  if (gw.privateAddresses.length === 0) return none(`gateway ${gw.name} has no private address`);

  const fromGateway = overlayPaths(gw, index, plan, config, cidrsOf);
  const byNode = new Map(others.map((n) => [n.name, n]));
  const remotes: RemotePath[] = [];
  for (const r of fromGateway.remotes) {
    const node = byNode.get(r.node);
    if (!node) continue;
    if (r.path === 'none') {
      remotes.push({ ...r, reason: `via gateway ${gw.name}: ${r.reason ?? 'no path'}` });
      continue;
    }
    let routed = false;
    for (const dst of cidrsOf(node)) {
      const via = sameFamilyAddress(gw.privateAddresses, dst);
      if (via === undefined) continue;
      if (addRoute({ dst, via }, node)) routed = true;
    }
    remotes.push(
      routed
        ? { node: node.name, cluster: node.cluster, path: 'local-gateway', via: gw.name, reason: null }
        : { node: node.name, cluster: node.cluster, path: 'none', via: null, reason: `gateway ${gw.name} has no private address of the right IP family` },
    );
  }
  return remotes;
}
