// The text of a heartbeat's `ok` reply, made once per coordinator epoch instead of once per heartbeat
// (a leader answers hundreds a second with the same few bytes: docs/benchmarks.md, issue 7 round 20).
import type { HeartbeatReply } from '../protocol/messages.ts';

const OK: HeartbeatReply = { ok: true };

export class OkReplyText {
  private epoch: string | undefined;
  private withEpoch = '';
  private readonly plain = JSON.stringify(OK);

  /** `{"ok":true}`, or with the epoch for an agent that signs one: exactly JSON.stringify of the reply. */
  text(epoch: string | undefined): string {
    if (epoch === undefined) return this.plain;
    if (epoch !== this.epoch) {
      this.withEpoch = JSON.stringify({ ...OK, epoch } satisfies HeartbeatReply);
      this.epoch = epoch;
    }
    return this.withEpoch;
  }
}
