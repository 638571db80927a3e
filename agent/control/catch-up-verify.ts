// Opens a catch-up page the watch broker signed (coordinator/catch-up-page.ts): the signature by the
// coordinator's key, the page answering THIS request (filter, revision, nonce), every value matching
// its SHA-256 in the signed index, revisions ascending above the requested one, keys inside the
// filter. Anything else throws: a forged or mismatched page is never applied (agents share `_INBOX.`,
// docs/security.md). Records inside are verified again, one by one, as a watch's are (MeshWatch).
import { createHash } from 'node:crypto';
import { CrosslinkError } from '../../lib/errors.ts';
import type { KvCatchUpEntry, KvCatchUpPage } from '../../lib/kv-catch-up.ts';
import { verifyEnvelopeAsync, type VerifyKeys } from '../../protocol/signing.ts';
import { CatchUpPage, type CatchUpReply } from '../../protocol/watch-broker.ts';

export class CatchUpPageError extends CrosslinkError {
  override name = 'CatchUpPageError';
}

export interface CatchUpAsked {
  readonly filter: string;
  readonly afterRevision: number;
  readonly limit: number;
  readonly nonce: string;
}

/** True when `key` lies in `filter` (`nodes.>`: any key under `nodes.`; otherwise the key itself). */
export function keyInFilter(key: string, filter: string): boolean {
  return filter.endsWith('.>') ? key.startsWith(filter.slice(0, -1)) && key.length > filter.length - 1 : key === filter;
}

export async function openCatchUpPage(reply: Extract<CatchUpReply, { ok: true }>, asked: CatchUpAsked, coordinatorKey: VerifyKeys): Promise<KvCatchUpPage> {
  const page = await verifyEnvelopeAsync(reply.page, coordinatorKey, CatchUpPage);
  if (page.filter !== asked.filter || page.afterRevision !== asked.afterRevision || page.nonce !== asked.nonce) {
    throw new CatchUpPageError(`the page answers another request (filter ${page.filter}, after ${page.afterRevision}), not ${asked.filter} after ${asked.afterRevision}`);
  }
  if (page.entries.length > asked.limit) throw new CatchUpPageError(`the page holds ${page.entries.length} entries; asked for at most ${asked.limit}`);
  if (reply.values.length !== page.entries.length) throw new CatchUpPageError(`${reply.values.length} values for ${page.entries.length} entries`);
  const entries: KvCatchUpEntry[] = [];
  let last = asked.afterRevision;
  for (const [i, e] of page.entries.entries()) {
    if (e.revision <= last) throw new CatchUpPageError(`entry ${i}: revision ${e.revision} after ${last} (must ascend above ${asked.afterRevision})`);
    if (!keyInFilter(e.key, asked.filter)) throw new CatchUpPageError(`entry ${i}: key ${e.key} is outside ${asked.filter}`);
    const value = new Uint8Array(Buffer.from(reply.values[i] ?? '', 'base64'));
    if (createHash('sha256').update(value).digest('base64') !== e.sha256) throw new CatchUpPageError(`entry ${i} (${e.key}): the value does not match its signed hash`);
    entries.push({ key: e.key, revision: e.revision, operation: e.operation, value, createdMs: e.created });
    last = e.revision;
  }
  return { entries, more: page.more };
}
