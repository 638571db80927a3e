// `crosslink export`, `unexport` and `services`: multi-cluster services through the local agent's
// status socket. The agent signs the request with its node identity and the coordinator admits it
// (only addresses inside this cluster's pod ranges).
import type { Command, Option } from 'commander';
import { ExportResult, ServicesDocument, type ExportSpec } from '../agent/services/api.ts';
import { ValidationError } from '../lib/errors.ts';
import { parseIp } from '../protocol/cidr.ts';
import { ServiceLabel, type ServicePort } from '../protocol/service.ts';
import { AgentResponseError, getFromAgent, postToAgent } from './client.ts';

interface Io {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

/** `<name>.<namespace>` → its parts (both DNS labels). */
export function parseServiceRef(text: string): { name: string; namespace: string } {
  const parts = text.split('.');
  const allowed = 'must be <name>.<namespace>, both DNS labels (lowercase letters, digits, "-"), e.g. web.shop';
  if (parts.length !== 2) throw new ValidationError('service', text, allowed);
  const [name, namespace] = parts as [string, string];
  if (!ServiceLabel.safeParse(name).success || !ServiceLabel.safeParse(namespace).success) throw new ValidationError('service', text, allowed);
  return { name, namespace };
}

/** `--port [name:]<port>/<tcp|udp>`, e.g. 8080/tcp or http:8080/tcp (a name gives the port an SRV record). */
export function parsePortSpec(text: string): ServicePort {
  const m = /^(?:([a-z0-9]([-a-z0-9]*[a-z0-9])?):)?([0-9]{1,5})\/(tcp|udp)$/i.exec(text);
  const port = m?.[3] === undefined ? NaN : Number(m[3]);
  if (!m || !(port >= 1 && port <= 65535)) {
    throw new ValidationError('--port', text, 'must be [name:]<port>/<tcp|udp> with a port 1-65535 and an optional DNS-label name, e.g. 8080/tcp or http:8080/tcp');
  }
  return { name: (m[1] ?? '').toLowerCase(), port, protocol: (m[4] ?? 'tcp').toUpperCase() as 'TCP' | 'UDP' };
}

export function buildExportSpec(ref: string, ports: readonly string[], addresses: readonly string[]): ExportSpec {
  const { name, namespace } = parseServiceRef(ref);
  if (ports.length === 0) throw new ValidationError('--port', undefined, 'required: at least one [name:]<port>/<tcp|udp>');
  const parsedPorts = ports.map(parsePortSpec);
  for (const a of addresses) if (!parseIp(a)) throw new ValidationError('--address', a, 'must be an IPv4 or IPv6 address (a ready endpoint, e.g. a pod IP)');
  if (addresses.length === 0) throw new ValidationError('--address', undefined, 'required: at least one endpoint address (e.g. a pod IP)');
  return { name, namespace, ports: parsedPorts, addresses: [...addresses] };
}

export function formatServices(doc: ServicesDocument): string {
  if (doc.services.length === 0) return `no exported services (this node: cluster ${doc.cluster}${doc.synced ? '' : ', service exports not loaded yet'})\n`;
  const lines: string[] = [];
  for (const s of doc.services) {
    const ports = s.ports.map((p) => `${p.name ? `${p.name}:` : ''}${p.port}/${p.protocol.toLowerCase()}`).join(', ');
    lines.push(`${s.name}.${s.namespace}  ports ${ports}  →  ${s.name}.${s.namespace}.svc.clusterset.local`);
    for (const c of s.clusters) {
      const down = c.addresses.filter((a) => !c.liveAddresses.includes(a));
      const extra = down.length > 0 ? `  (not live: ${down.join(', ')})` : '';
      lines.push(`  ${c.cluster.padEnd(12)} ${c.liveAddresses.join(', ') || '-'}${extra}  [by ${c.exportedBy}]`);
    }
    lines.push(`  answer (${doc.dnsPolicy}): ${s.answer.join(', ') || '(none: no live endpoint)'}`);
    for (const cond of s.conditions) lines.push(`  ${cond.type}/${cond.reason}: ${cond.message}`);
  }
  return `${lines.join('\n')}\n`;
}

const collect = (v: string, prev: string[]): string[] => [...prev, ...v.split(',').map((s) => s.trim()).filter((s) => s !== '')];

export function registerServicesCommands(program: Command, io: Io, setExit: (code: number) => void, socketOption: () => Option): void {
  const refused = (err: unknown): boolean => {
    if (!(err instanceof AgentResponseError)) return false;
    io.stderr(`crosslink: ${err.message}\n`);
    setExit(1);
    return true;
  };
  program
    .command('export <service>')
    .description('export <name>.<namespace> from this node\'s cluster (its complete set of ready endpoints); exit 0 exported, 1 refused, 2 usage or agent unreachable')
    .addOption(socketOption())
    .option('--port <[name:]port/proto>', 'a service port, e.g. 8080/tcp or http:8080/tcp; repeatable', collect, [])
    .option('--address <ip>', 'a ready endpoint address (pod IP inside this cluster\'s pod ranges); repeatable', collect, [])
    .option('--json', 'print the agent\'s answer')
    .action(async (service: string, o: { socket: string; port: string[]; address: string[]; json?: boolean }) => {
      const spec = buildExportSpec(service, o.port, o.address);
      try {
        const r = await postToAgent(o.socket, '/services/export', ExportResult, 30_000, spec);
        io.stdout(o.json ? `${JSON.stringify(r, null, 2)}\n` : `${r.service}: exported from cluster ${r.cluster} (${r.addresses.length} endpoint(s), generation ${r.generation ?? '-'})\n`);
        setExit(0);
      } catch (err) {
        if (!refused(err)) throw err;
      }
    });
  program
    .command('unexport <service>')
    .description('withdraw this cluster\'s export of <name>.<namespace>; exit 0 done, 1 refused, 2 usage or agent unreachable')
    .addOption(socketOption())
    .action(async (service: string, o: { socket: string }) => {
      const ref = parseServiceRef(service);
      try {
        const r = await postToAgent(o.socket, '/services/unexport', ExportResult, 30_000, ref);
        io.stdout(`${r.service}: no longer exported from cluster ${r.cluster}\n`);
        setExit(0);
      } catch (err) {
        if (!refused(err)) throw err;
      }
    });
  program
    .command('services')
    .description('list what the mesh exports: merged services, endpoints per cluster (live or not), the DNS answer order, conflicts')
    .addOption(socketOption())
    .option('--json', 'print the agent\'s document')
    .action(async (o: { socket: string; json?: boolean }) => {
      const doc = await getFromAgent(o.socket, '/services', ServicesDocument);
      io.stdout(o.json ? `${JSON.stringify(doc, null, 2)}\n` : formatServices(doc));
      setExit(0);
    });
}
