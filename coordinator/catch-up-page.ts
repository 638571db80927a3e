// The coordinator's answer to an agent's `catchup` request (protocol/watch-broker.ts): the entries a
// direct-get read found (lib/kv-catch-up.ts), indexed in a page the coordinator signs — key, revision,
// operation, time and the SHA-256 of each value, with the request's filter, revision and nonce — and
// the values beside it. Signed because agents share `_INBOX.`: an unsigned page forged into another
// agent's inbox could delete records there (delete markers carry no signature) or move its revision
// past changes it never saw. The index is cut so its envelope stays under SignedEnvelope's 64 KiB.
import { createHash } from 'node:crypto';
import type { KvCatchUpPage } from '../lib/kv-catch-up.ts';
import { signEnvelope } from '../protocol/signing.ts';
import type { CatchUpEntry, CatchUpReply, WatchRequest } from '../protocol/watch-broker.ts';

/** Bytes of index JSON per page: base64 makes it 4/3 larger, still under the envelope's 65,536. */
const INDEX_MAX_BYTES = 45_000;

export async function signedCatchUpPage(req: Extract<WatchRequest, { kind: 'catchup' }>, page: KvCatchUpPage, secretKey: string): Promise<CatchUpReply> {
  const entries: CatchUpEntry[] = [];
  const values: string[] = [];
  let size = 0;
  let more = page.more;
  for (const e of page.entries) {
    const entry: CatchUpEntry = { key: e.key, revision: e.revision, operation: e.operation, created: e.createdMs, sha256: createHash('sha256').update(e.value).digest('base64') };
    size += JSON.stringify(entry).length + 1;
    if (entries.length > 0 && size > INDEX_MAX_BYTES) {
      more = true;
      break;
    }
    entries.push(entry);
    values.push(Buffer.from(e.value).toString('base64'));
  }
  const signed = await signEnvelope({ filter: req.filter, afterRevision: req.afterRevision, nonce: req.nonce, entries, more }, secretKey);
  return { ok: true, page: signed, values };
}
