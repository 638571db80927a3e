// Where the time of one gateway failover goes, read from the pino logs of the lab's processes (one
// clock: they all run on this host). From the fault (t0) to:
//   detect   the reporter's that completed the quorum: its `peer probe state down` about the old gateway (the verdict is
//            published at that moment, agent/health/gateway-reporter.ts)
//   quorum   the coordinator's `gateway reported down by a quorum of its peers` (report → NATS →
//            signature check → GatewayHealth)
//   elected  the coordinator's `gateway changed` (election, signed cluster record written to KV)
//   applied  the observer's first `reconciled` after that (KV watch → snapshot → plan → apply done);
//            `applyStart` is that line's time minus its durationMs
//   gatewayApplied  the same at the new gateway (it adds the remote peers it now serves)
// Pure: the caller reads the files; a phase whose line is missing is NaN.

export interface LogLine {
  readonly time: number;
  readonly msg: string;
  readonly fields: Readonly<Record<string, unknown>>;
}

/** The JSON lines of a pino log (anything else, e.g. a crash trace, is skipped). */
export function parsePinoLog(text: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const o = JSON.parse(line) as Record<string, unknown>;
      if (typeof o['time'] === 'number' && typeof o['msg'] === 'string') out.push({ time: o['time'], msg: o['msg'], fields: o });
    } catch {
      // not a log line
    }
  }
  return out;
}

export interface FailoverLogs {
  /** Per reporting node: its log lines. */
  readonly agents: ReadonlyMap<string, readonly LogLine[]>;
  readonly coordinator: readonly LogLine[];
}

export interface FailoverBreakdown {
  /** Reporter → ms from t0 to its `down` verdict, earliest first. */
  readonly reporters: readonly (readonly [string, number])[];
  readonly detect: number;
  readonly quorum: number;
  readonly elected: number;
  readonly applyStart: number;
  readonly applied: number;
  readonly gatewayApplied: number;
}

export function failoverBreakdown(logs: FailoverLogs, o: { t0: number; oldGateway: string; newGateway: string; cluster: string; observer: string; quorum: number }): FailoverBreakdown {
  const after = (l: LogLine): boolean => l.time >= o.t0;
  const reporters: [string, number][] = [];
  for (const [node, lines] of logs.agents) {
    const hit = lines.find((l) => after(l) && l.msg === 'peer probe state down' && l.fields['peer'] === o.oldGateway);
    if (hit) reporters.push([node, hit.time - o.t0]);
  }
  reporters.sort((a, b) => a[1] - b[1]);
  const quorumLine = logs.coordinator.find((l) => after(l) && l.msg === 'gateway reported down by a quorum of its peers' && l.fields['gateway'] === o.oldGateway);
  const electedLine = logs.coordinator.find((l) => after(l) && l.msg === 'gateway changed' && l.fields['cluster'] === o.cluster && l.fields['previous'] === o.oldGateway);
  const elected = electedLine ? electedLine.time - o.t0 : NaN;
  const appliedAt = (node: string): LogLine | undefined => (electedLine ? logs.agents.get(node)?.find((l) => l.time >= electedLine.time && l.msg === 'reconciled') : undefined);
  const appliedLine = appliedAt(o.observer);
  const gatewayLine = appliedAt(o.newGateway);
  const duration = typeof appliedLine?.fields['durationMs'] === 'number' ? appliedLine.fields['durationMs'] : NaN;
  return {
    reporters,
    // The reporter whose verdict completed the quorum (down must also outnumber fresh `up` verdicts).
    detect: reporters[(Array.isArray(quorumLine?.fields['down']) ? quorumLine.fields['down'].length : o.quorum) - 1]?.[1] ?? NaN,
    quorum: quorumLine ? quorumLine.time - o.t0 : NaN,
    elected,
    applyStart: appliedLine ? appliedLine.time - duration - o.t0 : NaN,
    applied: appliedLine ? appliedLine.time - o.t0 : NaN,
    gatewayApplied: gatewayLine ? gatewayLine.time - o.t0 : NaN,
  };
}

/** Whether the coordinator's latest word on `gateway` is that a quorum reports it down (not yet `no longer reported down`). */
export function reportedDown(coordinator: readonly LogLine[], gateway: string): boolean {
  let down = false;
  for (const l of coordinator) {
    if (l.fields['gateway'] !== gateway) continue;
    if (l.msg === 'gateway reported down by a quorum of its peers') down = true;
    else if (l.msg === 'gateway no longer reported down') down = false;
  }
  return down;
}
