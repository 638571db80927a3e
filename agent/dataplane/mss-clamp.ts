// TCP MSS clamp on packets leaving through the tunnel: the overlay MTU is smaller than the pods'
// (1500 or 9001) and ICMP "fragmentation needed" is often filtered across clouds, so without the
// clamp TCP connections stall on the first full-size segment (path-MTU black hole). Only SYNs going
// out of the tunnel are rewritten; the other side clamps its own SYN-ACKs. Best effort: a node
// without iptables still forwards, it just relies on PMTU discovery.
import type { Logger } from '../../lib/logger.ts';
import type { Runner } from '../../lib/runner.ts';
import { errorMessage } from '../../lib/errors.ts';

export const MSS_COMMENT = 'crosslink';

export function mssRule(iface: string): string[] {
  return ['FORWARD', '-o', iface, '-p', 'tcp', '--tcp-flags', 'SYN,RST', 'SYN', '-m', 'comment', '--comment', MSS_COMMENT, '-j', 'TCPMSS', '--clamp-mss-to-pmtu'];
}

const binary = (family: 4 | 6): string => (family === 4 ? 'iptables' : 'ip6tables');

type Check = 'present' | 'absent' | 'unavailable';

export class MssClamp {
  /** Log "iptables unavailable" once per binary, not on every reconcile. */
  private readonly warned = new Set<string>();

  constructor(
    private readonly runner: Runner,
    private readonly logger: Logger,
    private readonly iface: string,
  ) {}

  private async check(family: 4 | 6): Promise<Check> {
    const argv = [binary(family), '-t', 'mangle', '-C', ...mssRule(this.iface)];
    try {
      const r = await this.runner.run(argv, { allowFailure: true });
      if (r.exitCode === 0) return 'present';
      // iptables -C: 1 = no such rule; anything else = iptables itself is unhappy.
      if (r.exitCode === 1) return 'absent';
      this.warnOnce(family, r.stderr.trim() || `exit ${r.exitCode}`);
    } catch (err) {
      this.warnOnce(family, errorMessage(err));
    }
    return 'unavailable';
  }

  private warnOnce(family: 4 | 6, why: string): void {
    const bin = binary(family);
    if (this.warned.has(bin)) return;
    this.warned.add(bin);
    this.logger.warn({ binary: bin, error: why }, 'MSS clamp unavailable; TCP through the tunnel relies on path-MTU discovery');
  }

  /** Adds the rule where missing. Returns the mutating commands it ran (empty when already in place). */
  async ensure(families: Iterable<4 | 6>): Promise<{ argv: string[]; ok: boolean }[]> {
    // Each family on its own (iptables and ip6tables are separate tables): side by side.
    const ran = await Promise.all(
      [...families].map(async (family): Promise<{ argv: string[]; ok: boolean } | undefined> => {
        if ((await this.check(family)) !== 'absent') return undefined;
        const argv = [binary(family), '-t', 'mangle', '-A', ...mssRule(this.iface)];
        try {
          await this.runner.run(argv);
          this.logger.info({ binary: binary(family), iface: this.iface }, 'MSS clamp rule added');
          return { argv, ok: true };
        } catch (err) {
          this.warnOnce(family, errorMessage(err));
          return { argv, ok: false };
        }
      }),
    );
    return ran.filter((r) => r !== undefined);
  }

  /** Deletes every copy of our rule (both families). Never throws. */
  async remove(): Promise<string[][]> {
    const ran: string[][] = [];
    for (const family of [4, 6] as const) {
      // Bounded: a rule inserted twice by hand is removed too, a broken iptables cannot loop us.
      for (let i = 0; i < 8 && (await this.check(family)) === 'present'; i++) {
        const argv = [binary(family), '-t', 'mangle', '-D', ...mssRule(this.iface)];
        ran.push(argv);
        try {
          await this.runner.run(argv);
        } catch (err) {
          this.logger.warn({ err: errorMessage(err) }, 'could not remove MSS clamp rule');
          break;
        }
      }
    }
    return ran;
  }
}
