// Default overlay MTU: the underlay's MTU minus WireGuard's worst-case overhead (80 bytes: IPv6 40 +
// UDP 8 + WireGuard 32), so encrypted packets never fragment on the underlay. Reads the route table
// and link only (`ip -j route show default`, `ip -j link show`); no traffic is sent.
// Never below MTU_MIN (protocol/mtu.ts, the bound --mtu has too): the overlay carries IPv6, which
// needs 1280. An underlay too small for 1280 + 80 is clamped to 1280 with a warning — the tunnel
// then works with fragmented outer packets instead of not at all; set --mtu to say so explicitly.
import type { Logger } from '../../lib/logger.ts';
import type { Runner } from '../../lib/runner.ts';
import { errorMessage } from '../../lib/errors.ts';
import { MTU_FALLBACK, MTU_MIN, WIREGUARD_OVERHEAD } from '../../protocol/mtu.ts';

interface JsonRoute {
  dev?: unknown;
  nexthops?: { dev?: unknown }[];
}

function firstDev(stdout: string): string | undefined {
  if (stdout.trim() === '') return undefined;
  const routes = JSON.parse(stdout) as JsonRoute[];
  for (const r of routes) {
    if (typeof r.dev === 'string') return r.dev;
    const hop = r.nexthops?.find((h) => typeof h.dev === 'string');
    if (hop && typeof hop.dev === 'string') return hop.dev;
  }
  return undefined;
}

/** The underlay MTU minus WIREGUARD_OVERHEAD (at least MTU_MIN), or MTU_FALLBACK (1420) when there is no default route or it cannot be read. */
export async function defaultMtu(runner: Runner, logger?: Logger): Promise<number> {
  try {
    let dev: string | undefined;
    for (const family of [[], ['-6']]) {
      const r = await runner.run(['ip', '-j', ...family, 'route', 'show', 'default'], { allowFailure: true });
      dev = r.exitCode === 0 ? firstDev(r.stdout) : undefined;
      if (dev !== undefined) break;
    }
    if (dev === undefined) return MTU_FALLBACK;
    const link = await runner.run(['ip', '-j', 'link', 'show', 'dev', dev]);
    const mtu = (JSON.parse(link.stdout) as { mtu?: unknown }[])[0]?.mtu;
    if (typeof mtu !== 'number' || !Number.isInteger(mtu)) return MTU_FALLBACK;
    const fitted = mtu - WIREGUARD_OVERHEAD;
    if (fitted < MTU_MIN) {
      logger?.warn(
        { device: dev, underlayMtu: mtu, mtu: MTU_MIN },
        `the underlay MTU ${mtu} leaves ${fitted} for the tunnel, below the IPv6 minimum ${MTU_MIN}; using ${MTU_MIN} (outer packets may be fragmented; --mtu ${MTU_MIN} silences this)`,
      );
      return MTU_MIN;
    }
    return fitted;
  } catch (err) {
    logger?.warn({ err: errorMessage(err) }, `cannot read the underlay MTU; using ${MTU_FALLBACK}`);
    return MTU_FALLBACK;
  }
}
