// GET /diagnostics (`crosslink diagnose`): what WireGuard and the kernel hold right now — live
// peers and the routes the agent owns (proto 149). Reads only; each half reports its own error.
import { errorMessage } from '../../lib/errors.ts';
import type { Runner } from '../../lib/runner.ts';
import type { DiagnosticsDocument } from '../../protocol/status-api.ts';
import type { Dataplane } from '../dataplane/api.ts';
import { isOwnedRoute, parseIpRoutes, readRoutesArgv } from '../dataplane/route-diff.ts';

export async function collectDiagnostics(iface: string, dataplane: Pick<Dataplane, 'livePeers'>, runner: Runner): Promise<DiagnosticsDocument> {
  const doc: DiagnosticsDocument = { interface: iface, livePeers: null, livePeersError: null, liveRoutes: null, liveRoutesError: null };
  try {
    doc.livePeers = (await dataplane.livePeers()).map((p) => ({
      publicKey: p.publicKey,
      endpoint: p.endpoint,
      allowedIps: [...p.allowedIps],
      latestHandshakeAt: p.latestHandshakeAt,
      rxBytes: p.rxBytes,
      txBytes: p.txBytes,
    }));
  } catch (err) {
    doc.livePeersError = errorMessage(err);
  }
  try {
    const routes: NonNullable<DiagnosticsDocument['liveRoutes']> = [];
    for (const family of [4, 6] as const) {
      const r = await runner.run(readRoutesArgv(family), { allowFailure: family === 6 });
      // Ours only (the read returns the whole main table).
      if (r.exitCode === 0) routes.push(...parseIpRoutes(r.stdout, family).filter(isOwnedRoute).map(({ dst, dev, via }) => ({ dst, dev, via })));
    }
    doc.liveRoutes = routes;
  } catch (err) {
    doc.liveRoutesError = errorMessage(err);
  }
  return doc;
}
