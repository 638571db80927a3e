// `?fresh=1` on the agent's GET /status and GET /metrics: read the kernel now instead of serving
// the reading the agent shares among status requests for up to a second (lib/recent-read.ts).
// For an on-call engineer right after a fix (`crosslink status --fresh`) and for tests that look
// right after a change they made. Used by the CLI to ask and by the status server to parse.

export const FRESH_PARAM = 'fresh';

export interface StatusReadOptions {
  /** Read WireGuard, nftables and the link now (never a shared earlier reading). */
  readonly fresh?: boolean;
}

/** `path` with `?fresh=1` when asked for. */
export function withFresh(path: string, fresh: boolean | undefined): string {
  return fresh === true ? `${path}?${FRESH_PARAM}=1` : path;
}

/** Reads `fresh` from a request URL: absent, `0`/`false` → false; `1`/`true`/empty → true; anything else is an error naming the value. */
export function parseFreshQuery(url: string): StatusReadOptions | { readonly error: string } {
  const values = new URL(url, 'http://agent').searchParams.getAll(FRESH_PARAM);
  if (values.length === 0) return { fresh: false };
  const [value] = values;
  if (values.length > 1 || value === undefined) return { error: `${FRESH_PARAM}: given ${values.length} times; give it once` };
  if (value === '' || value === '1' || value === 'true') return { fresh: true };
  if (value === '0' || value === 'false') return { fresh: false };
  return { error: `${FRESH_PARAM}: ${JSON.stringify(value)} is not allowed; use 1 or true (read the kernel now), 0 or false` };
}
