// Asks the coordinator to export or unexport a service: a request signed with the node's identity
// key (like registration) over NATS request/reply; the stored record in the reply is verified with
// the coordinator key before it is believed. A request lost with the NATS connection ends at the
// disconnect ('unavailable', lib/nats-request.ts), not at its timeout.
import type { VerifyKeys } from '../../protocol/signing.ts';
import { CrosslinkError, errorMessage } from '../../lib/errors.ts';
import { requestUntilDisconnect, type RequestConnection } from '../../lib/nats-request.ts';
import {
  ServiceExportRecord,
  ServiceReply,
  serviceSubjects,
  type ServiceExportRequest,
  type ServiceUnexportRequest,
} from '../../protocol/service.ts';
import { signEnvelope, verifyEnvelope, type SigningKeyPair } from '../../protocol/signing.ts';
import type { ServiceRequestFailure } from './api.ts';

export class ServiceRequestError extends CrosslinkError {
  override name = 'ServiceRequestError';
  constructor(
    readonly failure: ServiceRequestFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface ExportClientOptions {
  readonly nc: RequestConnection;
  /** The coordinator's public key, or its key set during a signing-key rotation. */
  readonly coordinatorKey: VerifyKeys;
  readonly identityKey: SigningKeyPair;
  readonly subjectPrefix?: string;
  readonly timeoutMs?: number;
}

async function call(o: ExportClientOptions, subject: string, body: unknown): Promise<ServiceReply> {
  const env = await signEnvelope(body, o.identityKey.secretKey);
  let data: Uint8Array;
  try {
    // Lost with the connection (its server went away), it ends then, not at its timeout: the caller retries.
    data = (await requestUntilDisconnect(o.nc, subject, JSON.stringify(env), { timeout: o.timeoutMs ?? 5000 })).data;
  } catch (err) {
    throw new ServiceRequestError('unavailable', `coordinator unavailable: ${errorMessage(err)}`, { cause: err });
  }
  let reply: ServiceReply;
  try {
    reply = ServiceReply.parse(JSON.parse(Buffer.from(data).toString('utf8')));
  } catch (err) {
    throw new ServiceRequestError('unavailable', `unexpected reply from the coordinator: ${errorMessage(err)}`, { cause: err });
  }
  if (!reply.ok) {
    const failure: ServiceRequestFailure = reply.error.code === 'unavailable' || reply.error.code === 'internal' ? 'unavailable' : 'refused';
    throw new ServiceRequestError(failure, `the coordinator refused: ${reply.error.message}`);
  }
  return reply;
}

export async function requestExport(o: ExportClientOptions, req: ServiceExportRequest): Promise<ServiceExportRecord> {
  const reply = await call(o, serviceSubjects(o.subjectPrefix).export, req);
  if (!reply.ok || reply.record === null) throw new ServiceRequestError('unavailable', 'the coordinator answered without the stored record');
  try {
    return await verifyEnvelope(reply.record, o.coordinatorKey, ServiceExportRecord);
  } catch (err) {
    throw new ServiceRequestError('unavailable', `the stored record does not verify with the coordinator key: ${errorMessage(err)}`, { cause: err });
  }
}

export async function requestUnexport(o: ExportClientOptions, req: ServiceUnexportRequest): Promise<void> {
  await call(o, serviceSubjects(o.subjectPrefix).unexport, req);
}
