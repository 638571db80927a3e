// The state an interface-only apply (fail-static: not registered or no complete KV snapshot yet)
// left: WireGuard as its `wg show dump` listed it, with the key and listen port it ensured, and
// the link with the MTU, the addresses and the UP flag it ensured. The next apply, if it is
// change-driven (target.readLive false) — in practice the first full apply of a start, the one
// that installs the whole mesh — starts from this instead of reading `wg show dump` and
// `ip -j addr show dev` again a second or two later: one round of spawns fewer on the start's
// critical path. Any other apply (a resync, a restart, after a failure) reads the kernel. Pure.
import type { DesiredInterface } from '../plan/model.ts';
import type { LiveWireguard } from './wg-dump.ts';

/** `ip -j addr show dev <if>` as the data plane reads it (the fields it uses). */
export interface LinkJson {
  readonly mtu?: unknown;
  readonly flags?: unknown;
  readonly addr_info?: readonly { readonly family?: unknown; readonly local?: unknown; readonly prefixlen?: unknown; readonly scope?: unknown }[];
}

export interface InterfaceState {
  readonly kind: 'interface';
  readonly wireguard: LiveWireguard;
  readonly link: LinkJson;
  /** The backend generation it was built for: a recreated interface (wireguard-go restart) voids it. */
  readonly generation: number;
}

/**
 * The interface after an apply ensured `iface` with `publicKey` on the WireGuard state `live` it
 * started from (its peers untouched) and the link `link` as read: MTU and addresses as wanted (other
 * global addresses were deleted; link-local ones, the kernel's, kept as read), UP.
 */
export function interfaceAfterEnsure(live: LiveWireguard, link: LinkJson, iface: DesiredInterface, publicKey: string, generation: number): InterfaceState {
  const flags = Array.isArray(link.flags) ? (link.flags as unknown[]) : [];
  const linkLocal = (link.addr_info ?? []).filter((a) => a.scope === 'link');
  const wanted = iface.addresses.map((a) => {
    const [local = a, len] = a.split('/');
    const v6 = local.includes(':');
    return { family: v6 ? 'inet6' : 'inet', local, prefixlen: len === undefined ? (v6 ? 128 : 32) : Number(len), scope: 'global' };
  });
  return Object.freeze({
    kind: 'interface' as const,
    wireguard: { interface: { ...live.interface, publicKey, listenPort: iface.listenPort }, peers: live.peers },
    link: { mtu: iface.mtu, flags: flags.includes('UP') ? flags : [...flags, 'UP'], addr_info: [...linkLocal, ...wanted] },
    generation,
  });
}
