// The coordinator's side of protocol/request-size.ts: every request subject (registrations,
// deregistrations, service export/unexport, gateway reports, the watch broker's requests) refuses a
// request over its kind's byte limit before it is parsed, and logs the refusal once per
// REFUSAL_LOG_INTERVAL_MS per kind (anyone with an agent NATS user can send them at will).
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import { RateLimitedLog } from '../lib/rate-limited-log.ts';
import type { ErrorBody } from '../protocol/messages.ts';
import { oversizedRequest, REQUEST_MAX_BYTES, type RequestKind } from '../protocol/request-size.ts';
import { REFUSAL_LOG_INTERVAL_MS } from './config.ts';

export class RequestSizeGate {
  private readonly log: RateLimitedLog;

  /** `counted`: called per refusal (the coordinator's crosslink_coordinator_requests_too_large_total). */
  constructor(
    logger: Logger,
    clock: Clock,
    private readonly counted?: (kind: RequestKind) => void,
    intervalMs = REFUSAL_LOG_INTERVAL_MS,
  ) {
    this.log = new RateLimitedLog(logger, clock, intervalMs);
  }

  /** The `invalid` refusal of `raw` when it is over its kind's limit (logged, rate-limited), else undefined: read it. */
  refusal(raw: Uint8Array, kind: RequestKind): ErrorBody | undefined {
    const error = oversizedRequest(raw, kind);
    if (!error) return undefined;
    this.counted?.(kind);
    this.log.log('info', `too-large:${kind}`, { kind, bytes: raw.length, max: REQUEST_MAX_BYTES[kind] }, 'request refused: too large');
    return error;
  }
}
