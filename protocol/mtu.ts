// The one MTU bound of the overlay, used by the agent's --mtu, its auto-detection, the CLI's
// showconf --mtu and the /view document. The overlay carries IPv6 (pod and overlay addresses may be
// v6), and IPv6 requires every link to carry 1280-byte packets (RFC 8200 §5), so the tunnel
// interface never goes below 1280; 9000 is the largest jumbo frame clouds offer.
import { z } from 'zod';

export const MTU_MIN = 1280;
export const MTU_MAX = 9000;

/** A configured overlay MTU (text from a flag, or a number); `alternative` names another accepted value (e.g. "auto") for the message. */
export function mtuSchema(alternative?: string): z.ZodType<number> {
  const allowed = `must be ${alternative === undefined ? '' : `${alternative} or `}a whole number ${MTU_MIN}-${MTU_MAX} (IPv6 needs at least ${MTU_MIN})`;
  return z.coerce.number().int(allowed).min(MTU_MIN, allowed).max(MTU_MAX, allowed);
}

export const Mtu = mtuSchema();
