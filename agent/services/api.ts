// The agent's local services API (status socket only): what `crosslink export`, `unexport` and
// `services` send and receive. Shape checks here; the coordinator decides admission.
import * as z from 'zod';
import { ClusterName, IpText, NodeName } from '../../protocol/messages.ts';
import { MAX_SERVICE_ADDRESSES, ServiceLabel, ServicePort } from '../../protocol/service.ts';

/** POST /services/export */
export const ExportSpec = z
  .object({
    name: ServiceLabel,
    namespace: ServiceLabel,
    ports: z.array(ServicePort).min(1),
    addresses: z.array(IpText).max(MAX_SERVICE_ADDRESSES),
  })
  .strict();
export type ExportSpec = z.infer<typeof ExportSpec>;

/** POST /services/unexport */
export const UnexportSpec = z.object({ name: ServiceLabel, namespace: ServiceLabel }).strict();
export type UnexportSpec = z.infer<typeof UnexportSpec>;

export const ExportResult = z.object({
  service: z.string(),
  cluster: ClusterName,
  /** Present after an export: the stored record's generation and addresses. */
  generation: z.number().int().nullable(),
  addresses: z.array(z.string()),
});
export type ExportResult = z.infer<typeof ExportResult>;

/** GET /services: the merged services as this agent answers them. */
export const ServicesDocument = z.object({
  cluster: ClusterName,
  dnsAddr: z.string().nullable(),
  dnsPolicy: z.enum(['local-first', 'all']),
  synced: z.boolean(),
  services: z.array(
    z.object({
      namespace: z.string(),
      name: z.string(),
      ports: z.array(ServicePort),
      clusters: z.array(
        z.object({
          cluster: ClusterName,
          exportedBy: NodeName,
          createdAt: z.number(),
          updatedAt: z.number(),
          addresses: z.array(z.string()),
          /** The addresses a live node of the cluster hosts (the ones DNS answers with). */
          liveAddresses: z.array(z.string()),
        }),
      ),
      /** DNS answer order of the addresses (after --dns-policy). */
      answer: z.array(z.string()),
      conditions: z.array(z.object({ type: z.string(), reason: z.string(), cluster: z.string(), message: z.string() })),
    }),
  ),
});
export type ServicesDocument = z.infer<typeof ServicesDocument>;

/** Failure kinds of export/unexport, which decide the HTTP code: 503 retry later, 409 refused, 400 bad request. */
export type ServiceRequestFailure = 'unavailable' | 'refused' | 'invalid';
