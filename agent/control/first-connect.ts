// The agent's first NATS connection attempt, begun at the very start of Agent.start so that it
// overlaps loading the keys, the identity and the data plane (wireguard-go's start) instead of
// following them (issue 10: a new node fully programmed in ≤ 2 s). The connect loop takes it as
// its first attempt; every later attempt is its own. A start that fails before the loop took it
// abandons it: the connection, once made, is closed.
import type { NatsConnection } from '@nats-io/transport-node';

export class FirstConnect {
  private early: Promise<NatsConnection> | undefined;

  constructor(connect: () => Promise<NatsConnection>) {
    const early = connect();
    // Its failure is reported by the connect loop that takes it (or nobody, once abandoned).
    early.catch(() => undefined);
    this.early = early;
  }

  /** The early attempt, once; undefined afterwards. */
  take(): Promise<NatsConnection> | undefined {
    const early = this.early;
    this.early = undefined;
    return early;
  }

  /** Nobody will use it: closes the connection if the attempt succeeds. */
  abandon(): void {
    void this.take()?.then(
      (nc) => nc.close().catch(() => undefined),
      () => undefined,
    );
  }
}
