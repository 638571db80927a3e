// Per-request options for @kubernetes/client-node 1.x: the generated client has no per-call timeout
// and picks "application/json-patch+json" for every PATCH, so both are set through a middleware.
import { ApiException, Observable, type ConfigurationOptions, type ObservableMiddleware } from '@kubernetes/client-node';

export const PatchContentType = {
  merge: 'application/merge-patch+json',
  strategic: 'application/strategic-merge-patch+json',
} as const;

export function requestOptions(opts: { timeoutMs: number; signal?: AbortSignal; contentType?: string }): ConfigurationOptions {
  const middleware: ObservableMiddleware = {
    pre: (ctx) => {
      if (opts.contentType !== undefined) ctx.setHeaderParam('Content-Type', opts.contentType);
      const timeout = AbortSignal.timeout(opts.timeoutMs);
      ctx.setSignal(opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout);
      return new Observable(Promise.resolve(ctx));
    },
    post: (rsp) => new Observable(Promise.resolve(rsp)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: 'append' };
}

/** HTTP status of a failed API call, if it got that far. */
export function apiStatus(err: unknown): number | undefined {
  return err instanceof ApiException ? (err as ApiException<unknown>).code : undefined;
}

/** One line for logs: the API server's Status message when there is one, not the client's multi-line dump. */
export function apiErrorMessage(err: unknown): string {
  if (err instanceof ApiException) {
    const e = err as ApiException<unknown>;
    const body: unknown = typeof e.body === 'string' ? safeJson(e.body) : e.body;
    const message = body !== null && typeof body === 'object' && 'message' in body && typeof body.message === 'string' ? body.message : '';
    return `HTTP ${e.code}${message ? `: ${message}` : ''}`;
  }
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
