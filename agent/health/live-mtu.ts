// The MTU the interface has right now (not the configured one): `ip -j link show dev IFACE`.
import { errorMessage } from '../../lib/errors.ts';
import type { Runner } from '../../lib/runner.ts';
import { parseIpJson } from '../dataplane/ip-json.ts';

export async function readLiveMtu(runner: Runner, iface: string): Promise<{ mtu: number | null; error: string | null }> {
  const argv = ['ip', '-j', 'link', 'show', 'dev', iface];
  try {
    const r = await runner.run(argv, { allowFailure: true });
    if (r.exitCode !== 0) return { mtu: null, error: r.stderr.trim() || `ip link show exited ${r.exitCode}` };
    const row = parseIpJson(r.stdout, argv)[0];
    const mtu = typeof row === 'object' && row !== null && 'mtu' in row ? row.mtu : undefined;
    return typeof mtu === 'number' ? { mtu, error: null } : { mtu: null, error: 'ip link show gave no MTU' };
  } catch (err) {
    return { mtu: null, error: errorMessage(err) };
  }
}
