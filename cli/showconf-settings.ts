// `crosslink showconf --nats-url`: the DataplaneConfig the node's agent applies. Taken from the
// settings its signed record carries (interface, MTU, NAT keepalive, relay ports: what the agent
// publishes since this version); a flag given explicitly overrides and says so; a record without
// settings (an older agent) falls back to the flags or their defaults and lists what was assumed.
import * as z from 'zod';
import { ValidationError } from '../lib/errors.ts';
import { dataplaneConfigOf } from '../agent/plan/effective-settings.ts';
import type { DataplaneConfig } from '../agent/plan/model.ts';
import { AGENT_DEFAULTS, InterfaceName, KeepaliveSeconds, parseRelayPortRange, type EffectiveSettings } from '../protocol/agent-settings.ts';
import type { NodeRecord } from '../protocol/messages.ts';
import { Mtu, MTU_FALLBACK } from '../protocol/mtu.ts';

/** The showconf flags the user gave explicitly (undefined: not given). */
export interface GivenSettingsFlags {
  readonly interface?: string | undefined;
  readonly mtu?: string | undefined;
  readonly natKeepalive?: string | undefined;
  readonly relayPortRange?: string | undefined;
}

/** Defaults of a record without settings (the agent's own defaults; MTU: what its auto-detection falls back to). */
export const ASSUMED_WITHOUT_SETTINGS = {
  interface: AGENT_DEFAULTS.interfaceName,
  mtu: String(MTU_FALLBACK),
  natKeepalive: String(AGENT_DEFAULTS.natKeepaliveSec),
  relayPortRange: AGENT_DEFAULTS.relayPortRange,
} as const;

export interface ShowconfSettings {
  readonly config: DataplaneConfig;
  /** Lines for humans: where the settings came from, what was assumed or overridden. */
  readonly notes: readonly string[];
}

function parse<T>(flag: string, text: string, schema: z.ZodType<T>): T {
  const r = schema.safeParse(text);
  if (!r.success) throw new ValidationError(flag, text, r.error.issues[0]?.message ?? 'invalid');
  return r.data;
}

/** Throws ValidationError for a bad flag value (naming the flag, the value and what is allowed). */
export function showconfSettings(self: NodeRecord, given: GivenSettingsFlags): ShowconfSettings {
  const fromRecord = self.settings;
  const pick = (k: keyof GivenSettingsFlags): string => given[k] ?? ASSUMED_WITHOUT_SETTINGS[k];
  const relayText = fromRecord && given.relayPortRange === undefined ? `${fromRecord.relayPortBase}-${fromRecord.relayPortBase + fromRecord.relayPortSpan - 1}` : pick('relayPortRange');
  const relay = parseRelayPortRange('--relay-port-range', relayText, self.listenPort);
  const flags: EffectiveSettings = {
    interfaceName: parse('--interface', pick('interface'), InterfaceName),
    mtu: parse('--mtu', pick('mtu'), Mtu),
    natKeepaliveSec: parse('--nat-keepalive', pick('natKeepalive'), KeepaliveSeconds),
    relayPortBase: relay.first,
    relayPortSpan: relay.last - relay.first + 1,
  };
  if (fromRecord === undefined) {
    const assumed = (['interface', 'mtu', 'natKeepalive', 'relayPortRange'] as const).filter((k) => given[k] === undefined);
    const notes =
      assumed.length === 0
        ? []
        : [
            `the record of ${self.name} carries no settings (its agent predates them); assumed: ${assumed.map((k) => `${FLAG_OF[k]} ${ASSUMED_WITHOUT_SETTINGS[k]}`).join(', ')} — pass the agent's flags if it runs with others`,
          ];
    return { config: dataplaneConfigOf(flags, self.listenPort), notes };
  }
  const settings: EffectiveSettings = {
    interfaceName: given.interface === undefined ? fromRecord.interfaceName : flags.interfaceName,
    mtu: given.mtu === undefined ? fromRecord.mtu : flags.mtu,
    natKeepaliveSec: given.natKeepalive === undefined ? fromRecord.natKeepaliveSec : flags.natKeepaliveSec,
    relayPortBase: relay.first,
    relayPortSpan: relay.last - relay.first + 1,
  };
  const overridden = (['interface', 'mtu', 'natKeepalive', 'relayPortRange'] as const).filter((k) => given[k] !== undefined);
  const notes = overridden.length === 0 ? [] : [`overridden by flags (the agent applies the record's values): ${overridden.map((k) => `${FLAG_OF[k]} ${given[k] ?? ''}`).join(', ')}`];
  return { config: dataplaneConfigOf(settings, self.listenPort), notes };
}

const FLAG_OF = { interface: '--interface', mtu: '--mtu', natKeepalive: '--nat-keepalive', relayPortRange: '--relay-port-range' } as const;
