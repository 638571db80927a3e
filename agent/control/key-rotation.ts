// WireGuard key rotation (POST /rotate-key, `crosslink rotate-key`). Rotations are serialised. Order:
//   1. the new key is written next to the old one (wireguard.key.next, 0600, synced);
//   2. we re-register with the new public key and wait for the coordinator's verified record;
//   3. the file replaces wireguard.key (rename), the agent switches to the key, and a reconcile
//      sets it on the interface; the node source is told.
// Registering before switching the interface keeps the outage short: our tunnels break only when
// a peer swaps in the new key, which happens after the KV update reaches it — by then our
// interface has switched or is about to (milliseconds of local work). Switching first would cut
// every tunnel for the whole registration and propagation, and a failed registration would need
// an interface rollback. If registration fails, nothing changed: the old key stays in the file,
// on the interface and in the registration (after an unclear answer we re-register the old key).
import { CrosslinkError, errorMessage } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { WireguardKeyPair } from '../../protocol/signing.ts';
import type { RotateKeyFailure, RotateKeyResponse } from '../../protocol/status-api.ts';
import type { ControlPlane } from './control-plane.ts';
import { stageWireguardKey, type StagedWireguardKey } from './keys.ts';

/** A key rotation that did not happen (or, for 'failed', say in the message what state it left). */
export class RotateKeyError extends CrosslinkError {
  override name = 'RotateKeyError';
  constructor(
    readonly failure: RotateKeyFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The part of the control plane a rotation uses. */
export type KeyRegistrar = Pick<ControlPlane, 'state' | 'registerWithKey' | 'requestRegister'>;

export interface KeyRotationOptions {
  readonly stateDir: string;
  readonly logger: Logger;
  /** The control plane once connected to NATS (undefined before). */
  readonly controlPlane: () => KeyRegistrar | undefined;
  /** The agent is shutting down: refuse. */
  readonly shuttingDown: () => boolean;
  /** The key in force. */
  readonly current: () => WireguardKeyPair;
  /** Puts `keys` in force and waits for a reconcile that sets it on the interface; says whether the interface took it. */
  readonly switchTo: (keys: WireguardKeyPair) => Promise<{ readonly interfaceUpdated: boolean; readonly error: string | null }>;
}

export class KeyRotation {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly o: KeyRotationOptions) {}

  /** Rotates the key (after any rotation in flight). Rejects with RotateKeyError. */
  rotate(): Promise<RotateKeyResponse> {
    const run = this.queue.then(() => this.rotateNow());
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async rotateNow(): Promise<RotateKeyResponse> {
    const log = this.o.logger;
    const cp = this.o.controlPlane();
    if (this.o.shuttingDown()) throw new RotateKeyError('unavailable', 'the agent is shutting down; the key was not changed');
    if (!cp?.state().connected) {
      throw new RotateKeyError('unavailable', 'not connected to NATS, so the new key cannot be registered; the old key is kept (retry when `crosslink status` shows the control plane connected)');
    }
    const old = this.o.current();
    let staged: StagedWireguardKey;
    try {
      staged = await stageWireguardKey(this.o.stateDir);
    } catch (err) {
      throw new RotateKeyError('failed', `cannot write the new key: ${errorMessage(err)}; the old key is kept`, { cause: err });
    }
    log.info({ oldPublicKey: old.publicKey, newPublicKey: staged.keys.publicKey }, 'rotating the WireGuard key: registering the new public key');
    const reg = await cp.registerWithKey(staged.keys.publicKey, 'key rotation');
    if (!reg.ok) {
      await staged.discard();
      // The coordinator may have taken the new key without us hearing back: put the old one back.
      if (reg.uncertain) cp.requestRegister('re-asserting the current key after an unanswered key rotation');
      log.warn({ err: reg.error, publicKey: old.publicKey }, 'key rotation failed; keeping the old key');
      throw new RotateKeyError(reg.kind === 'rejected' ? 'refused' : 'unavailable', `the coordinator did not accept the new key (${reg.error}); the old key is kept`);
    }
    let saveError: unknown;
    try {
      await staged.commit();
    } catch (err) {
      saveError = err;
    }
    // Registered: from here on the new key is the one peers expect, so the interface must get it
    // even if saving failed (the file then still holds the old key, which the next start re-registers).
    const { interfaceUpdated, error } = await this.o.switchTo(staged.keys);
    if (saveError !== undefined) {
      log.error({ err: errorMessage(saveError) }, 'the new WireGuard key is registered and in use but could not be saved; the next start goes back to the old key');
      throw new RotateKeyError(
        'failed',
        `the new key ${staged.keys.publicKey} is registered and in use, but saving it failed (${errorMessage(saveError)}); the next agent start re-registers the old key ${old.publicKey}`,
        { cause: saveError },
      );
    }
    if (interfaceUpdated) log.info({ oldPublicKey: old.publicKey, newPublicKey: staged.keys.publicKey, generation: reg.record.generation }, 'WireGuard key rotated');
    else log.warn({ err: error, newPublicKey: staged.keys.publicKey }, 'WireGuard key rotated and registered; setting it on the interface failed and is retried at the next resync');
    return {
      node: reg.record.name,
      oldPublicKey: old.publicKey,
      newPublicKey: staged.keys.publicKey,
      generation: reg.record.generation,
      interfaceUpdated,
    };
  }
}
