// The data-plane settings an agent applies, as published in its node record (protocol/agent-settings.ts
// EffectiveSettings), and back: `crosslink showconf --nats-url` rebuilds the agent's DataplaneConfig
// from its record and runs the same computeDesiredState. Pure.
import type { EffectiveSettings } from '../../protocol/agent-settings.ts';
import type { DataplaneConfig } from './model.ts';

export function effectiveSettings(c: DataplaneConfig): EffectiveSettings {
  return { interfaceName: c.interfaceName, mtu: c.mtu, natKeepaliveSec: c.natKeepaliveSec, relayPortBase: c.relayPortBase, relayPortSpan: c.relayPortSpan };
}

export function dataplaneConfigOf(s: EffectiveSettings, listenPort: number): DataplaneConfig {
  return { ...effectiveSettings({ ...s, listenPort }), listenPort };
}
