// Pure: topology + lab id → every namespace, link, address, route, NAT rule and sysctl of the lab.
// The builder (network.ts) only executes this data, so the layout is testable without root.
import { formatIp, parseCidr } from '../protocol/cidr.ts';
import { CrosslinkError, ValidationError } from '../lib/errors.ts';
import { checkLabId, namespaceName, namespacePrefix, wireguardInterfaceName } from './names.ts';
import { planNats, type NatsPlan } from './nats-plan.ts';
import type { Edge, Topology } from './topology.ts';

export const WIREGUARD_PORT = 51820;
/** UDP ports relay nodes forward relayed pairs on (reachable through the 1:1 public NAT). */
export const RELAY_PORT_FIRST = 52000;
export const RELAY_PORT_LAST = 52099;
const INET_BRIDGE = 'br0';
const VPC_BRIDGE = 'vpc';
const POD_BRIDGE = 'cni0';

export interface PodPlan {
  /** e.g. "aws-n1-p1" */
  readonly name: string;
  readonly node: string;
  readonly cloud: string;
  readonly ns: string;
  readonly ip: string;
}

export interface NodePlan {
  readonly name: string;
  readonly cloud: string;
  readonly location: string;
  readonly edge: Edge;
  readonly topology: 'mesh' | 'gateway';
  readonly gatewayEligible: boolean | undefined;
  /** 1-based across the lab; names the WireGuard interface. */
  readonly index: number;
  readonly ns: string;
  readonly vpcIp: string;
  /** Elastic IP (public clouds) or null (behind NAT). */
  readonly publicIp: string | null;
  readonly podCidr: string;
  /** The node's address on its pod bridge: the pods' default gateway. */
  readonly podGatewayIp: string;
  readonly wgInterface: string;
  /** The node's VPC port, as named inside the edge namespace (cut it to isolate the node). */
  readonly edgePort: string;
  readonly edgeNs: string;
  readonly pods: readonly PodPlan[];
}

export interface CloudPlan {
  readonly name: string;
  readonly edge: Edge;
  readonly topology: 'mesh' | 'gateway';
  readonly vpc: string;
  readonly edgeNs: string;
  readonly edgeWanIp: string;
  readonly edgeVpcIp: string;
  readonly nodes: readonly NodePlan[];
}

/** One `ip -n <ns> -batch -` invocation. */
export interface IpBatch {
  readonly ns: string;
  readonly lines: readonly string[];
}

export interface LabPlan {
  readonly id: string;
  readonly namespacePrefix: string;
  readonly topology: Topology;
  readonly inetNs: string;
  readonly inetBridge: string;
  readonly ctlNs: string;
  readonly ctlIp: string;
  /** The NATS server(s) in the control namespace (lab/nats-plan.ts). */
  readonly nats: NatsPlan;
  /** Every NATS server's URL, comma-separated (= nats.urls). */
  readonly natsUrl: string;
  readonly clouds: readonly CloudPlan[];
  readonly nodes: readonly NodePlan[];
  readonly pods: readonly PodPlan[];
  /** Creation order; deletion needs no order once no process is left inside. */
  readonly namespaces: readonly string[];
  /** Phase 1: create links (veth peers land in other namespaces, so every namespace must exist). */
  readonly createLinks: readonly IpBatch[];
  /** Phase 2: addresses, bridge ports, links up, routes. */
  readonly configure: readonly IpBatch[];
  readonly sysctls: readonly { readonly ns: string; readonly settings: readonly string[] }[];
  /** iptables-restore --noflush input per edge namespace. */
  readonly natRules: readonly { readonly ns: string; readonly rules: string }[];
}

function host(cidrText: string, n: number): string {
  const c = parseCidr(cidrText);
  if (!c) throw new CrosslinkError(`not a CIDR: ${cidrText}`);
  const v = c.network + BigInt(n);
  if (v >= c.network + (1n << BigInt(32 - c.prefix)) - 1n) throw new CrosslinkError(`host ${n} does not fit in ${cidrText}`);
  return formatIp(4, v);
}

function prefixOf(cidrText: string): number {
  const c = parseCidr(cidrText);
  if (!c) throw new CrosslinkError(`not a CIDR: ${cidrText}`);
  return c.prefix;
}

const BASE_SYSCTLS = ['net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'];
// Routers forward; gateway topology makes paths asymmetric (in via WireGuard, out via the VPC), so no rp_filter.
const ROUTER_SYSCTLS = [
  ...BASE_SYSCTLS,
  'net.ipv4.ip_forward=1',
  'net.ipv4.conf.all.rp_filter=0',
  'net.ipv4.conf.default.rp_filter=0',
];

export interface LabPlanOptions {
  /** NATS servers in the control namespace: 1 (default) or a cluster of 3 or 5 (`lab up --nats-servers`). */
  readonly natsServers?: number;
}

export function planLab(topology: Topology, id: string, options: LabPlanOptions = {}): LabPlan {
  checkLabId(id);
  const inetNs = namespaceName(id, 'inet');
  const ctlNs = namespaceName(id, 'ctl');
  const inetCidr = topology.internet.cidr;
  const inetPrefix = prefixOf(inetCidr);
  const pool = topology.internet.publicPool;
  const ctlIp = host(inetCidr, 2);

  const createLinks: IpBatch[] = [];
  const configure: IpBatch[] = [];
  const sysctls: { ns: string; settings: string[] }[] = [];
  const natRules: { ns: string; rules: string }[] = [];
  const namespaces: string[] = [inetNs, ctlNs];
  const inetConfig: string[] = ['link set dev lo up', `link set dev ${INET_BRIDGE} up`];
  createLinks.push({ ns: inetNs, lines: [`link add ${INET_BRIDGE} type bridge`] });
  sysctls.push({ ns: inetNs, settings: BASE_SYSCTLS });

  createLinks.push({ ns: ctlNs, lines: [`link add wan type veth peer name ctl netns ${inetNs}`] });
  inetConfig.push(`link set dev ctl master ${INET_BRIDGE}`, 'link set dev ctl up');
  configure.push({
    ns: ctlNs,
    lines: ['link set dev lo up', `addr add ${ctlIp}/${inetPrefix} dev wan`, 'link set dev wan up', ...onLinkRoute(pool, inetCidr)],
  });
  sysctls.push({ ns: ctlNs, settings: BASE_SYSCTLS });

  let nodeIndex = 0;
  const clouds: CloudPlan[] = topology.clouds.map((cloud, ci) => {
    const k = ci + 1;
    const edgeNs = namespaceName(id, cloud.name, 'edge');
    const edgeWanIp = host(inetCidr, 10 + k);
    const edgeVpcIp = host(cloud.vpc, 1);
    const vpcPrefix = prefixOf(cloud.vpc);
    const inetPort = `e-${cloud.name}`;
    namespaces.push(edgeNs);
    createLinks.push({ ns: edgeNs, lines: [`link add wan type veth peer name ${inetPort} netns ${inetNs}`, `link add ${VPC_BRIDGE} type bridge`] });
    inetConfig.push(`link set dev ${inetPort} master ${INET_BRIDGE}`, `link set dev ${inetPort} up`);

    const nodes: NodePlan[] = cloud.nodes.map((n, ni) => {
      nodeIndex++;
      const ns = namespaceName(id, n.name);
      const podGatewayIp = host(n.podCidr, 1);
      const pods: PodPlan[] = Array.from({ length: n.pods }, (_, pj) => {
        const name = `${n.name}-p${pj + 1}`;
        return { name, node: n.name, cloud: cloud.name, ns: namespaceName(id, name), ip: host(n.podCidr, 2 + pj) };
      });
      return {
        name: n.name,
        cloud: cloud.name,
        location: cloud.location,
        edge: cloud.edge,
        topology: cloud.topology,
        gatewayEligible: n.gatewayEligible,
        index: nodeIndex,
        ns,
        vpcIp: host(cloud.vpc, 10 + ni + 1),
        publicIp: cloud.edge === 'public' ? host(pool, 10 * k + ni + 1) : null,
        podCidr: n.podCidr,
        podGatewayIp,
        wgInterface: wireguardInterfaceName(id, nodeIndex),
        edgePort: `vn${ni + 1}`,
        edgeNs,
        pods,
      };
    });

    // Edge router: WAN on the internet bridge, VPC bridge towards the nodes, routes to pod CIDRs
    // (like a VPC route table), 1:1 NAT or a NAT gateway.
    const edgeConfig = [
      'link set dev lo up',
      `addr add ${edgeWanIp}/${inetPrefix} dev wan`,
      ...nodes.flatMap((n) => (n.publicIp ? [`addr add ${n.publicIp}/32 dev wan`] : [])),
      'link set dev wan up',
      ...onLinkRoute(pool, inetCidr),
      `addr add ${edgeVpcIp}/${vpcPrefix} dev ${VPC_BRIDGE}`,
      `link set dev ${VPC_BRIDGE} up`,
      ...nodes.flatMap((n) => [`link set dev ${n.edgePort} master ${VPC_BRIDGE}`, `link set dev ${n.edgePort} up`]),
      ...nodes.map((n) => `route add ${n.podCidr} via ${n.vpcIp}`),
    ];
    sysctls.push({ ns: edgeNs, settings: ROUTER_SYSCTLS });
    natRules.push({ ns: edgeNs, rules: natRulesFor(cloud.edge, cloud.vpc, nodes) });

    for (const n of nodes) {
      namespaces.push(n.ns);
      createLinks.push({
        ns: n.ns,
        lines: [`link add vpc0 type veth peer name ${n.edgePort} netns ${edgeNs}`, `link add ${POD_BRIDGE} type bridge`],
      });
      configure.push({
        ns: n.ns,
        lines: [
          'link set dev lo up',
          `addr add ${n.vpcIp}/${vpcPrefix} dev vpc0`,
          'link set dev vpc0 up',
          `route add default via ${edgeVpcIp}`,
          `addr add ${n.podGatewayIp}/${prefixOf(n.podCidr)} dev ${POD_BRIDGE}`,
          `link set dev ${POD_BRIDGE} up`,
          ...n.pods.flatMap((_, pj) => [`link set dev p${pj + 1} master ${POD_BRIDGE}`, `link set dev p${pj + 1} up`]),
          // What the cluster's CNI would do: same-cloud pod CIDRs straight over the VPC.
          ...nodes.filter((o) => o !== n).map((o) => `route add ${o.podCidr} via ${o.vpcIp}`),
        ],
      });
      sysctls.push({ ns: n.ns, settings: ROUTER_SYSCTLS });
      n.pods.forEach((p, pj) => {
        namespaces.push(p.ns);
        createLinks.push({ ns: p.ns, lines: [`link add eth0 type veth peer name p${pj + 1} netns ${n.ns}`] });
        configure.push({
          ns: p.ns,
          lines: [
            'link set dev lo up',
            `addr add ${p.ip}/${prefixOf(n.podCidr)} dev eth0`,
            'link set dev eth0 up',
            `route add default via ${n.podGatewayIp}`,
          ],
        });
        sysctls.push({ ns: p.ns, settings: BASE_SYSCTLS });
      });
    }
    configure.push({ ns: edgeNs, lines: edgeConfig });
    return { name: cloud.name, edge: cloud.edge, topology: cloud.topology, vpc: cloud.vpc, edgeNs, edgeWanIp, edgeVpcIp, nodes };
  });
  configure.unshift({ ns: inetNs, lines: inetConfig });

  const nodes = clouds.flatMap((c) => c.nodes);
  const seen = new Set<string>();
  for (const ns of namespaces) {
    if (seen.has(ns)) throw new ValidationError('node name', ns.slice(namespacePrefix(id).length), 'collides with another namespace of the lab (avoid names ending in -edge or -p<N>, and "inet"/"ctl")');
    seen.add(ns);
  }
  const nats = planNats(id, ctlIp, options.natsServers ?? 1);
  return {
    id,
    namespacePrefix: namespacePrefix(id),
    topology,
    inetNs,
    inetBridge: INET_BRIDGE,
    ctlNs,
    ctlIp,
    nats,
    natsUrl: nats.urls,
    clouds,
    nodes,
    pods: nodes.flatMap((n) => n.pods),
    namespaces,
    createLinks,
    configure,
    sysctls,
    natRules,
  };
}

/** The elastic-IP pool is a second range on the same internet segment: reach it on-link. */
function onLinkRoute(pool: string, inetCidr: string): string[] {
  return pool === inetCidr ? [] : [`route add ${pool} dev wan scope link`];
}

function natRulesFor(edge: Edge, vpc: string, nodes: readonly NodePlan[]): string {
  const lines = ['*nat'];
  if (edge === 'public') {
    for (const n of nodes) {
      if (!n.publicIp) continue;
      lines.push(`-A PREROUTING -d ${n.publicIp}/32 -j DNAT --to-destination ${n.vpcIp}`);
      lines.push(`-A POSTROUTING -s ${n.vpcIp}/32 -o wan -j SNAT --to-source ${n.publicIp}`);
    }
    // Hairpin: a node reaching a same-cloud node's public address.
    lines.push(`-A POSTROUTING -s ${vpc} -d ${vpc} -o ${VPC_BRIDGE} -j MASQUERADE`);
  } else {
    lines.push(`-A POSTROUTING -s ${vpc} -o wan -j MASQUERADE`);
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

export function findNode(plan: LabPlan, name: string): NodePlan {
  const n = plan.nodes.find((x) => x.name === name);
  if (!n) throw new CrosslinkError(`no node "${name}" in lab ${plan.id} (nodes: ${plan.nodes.map((x) => x.name).join(', ')})`);
  return n;
}

export function findPod(plan: LabPlan, name: string): PodPlan {
  const p = plan.pods.find((x) => x.name === name);
  if (!p) throw new CrosslinkError(`no pod "${name}" in lab ${plan.id}`);
  return p;
}
