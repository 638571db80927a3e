// A listen address flag (--health-addr, --dns-addr): "host:port" with an IP literal, ":port" for
// every IPv4 address, or "off". One parser for the agent and the coordinator.
import { ValidationError } from '../lib/errors.ts';
import { formatIp, parseIp } from './cidr.ts';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** null for "off"/"none"; throws ValidationError naming `label`, the value and what is allowed. */
export function parseListenAddr(label: string, text: string): HostPort | null {
  if (text === 'off' || text === 'none') return null;
  const m = /^(\[[0-9a-fA-F:.]+\]|[0-9.]*|localhost):([0-9]{1,5})$/.exec(text);
  const allowed = 'must be host:port with an IP literal (e.g. 0.0.0.0:9471, 127.0.0.1:9471, [::]:9471, :9471) or "off"';
  if (!m || m[1] === undefined || m[2] === undefined) throw new ValidationError(label, text, allowed);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new ValidationError(label, text, allowed);
  let host = m[1].replace(/^\[|\]$/g, '');
  if (host === '') host = '0.0.0.0';
  if (host === 'localhost') host = '127.0.0.1';
  const ip = parseIp(host);
  if (!ip) throw new ValidationError(label, text, allowed);
  return { host: formatIp(ip.family, ip.value), port };
}
