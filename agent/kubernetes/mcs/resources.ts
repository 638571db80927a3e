// The Kubernetes objects multi-cluster services read and write (KEP-1645, mcs-api v1alpha1), as
// far as Crosslink uses them: parsed with zod at the edge (unknown fields pass through untouched,
// a malformed object is skipped and reported, never half-used).
import * as z from 'zod';

export const MCS_GROUP = 'multicluster.x-k8s.io';
export const MCS_VERSION = 'v1alpha1';
export const MCS_API_VERSION = `${MCS_GROUP}/${MCS_VERSION}`;
export const SERVICE_EXPORTS = 'serviceexports';
export const SERVICE_IMPORTS = 'serviceimports';

/** Label on every ServiceImport Crosslink writes; it never touches ServiceImports without it. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by';
export const MANAGED_BY = 'crosslink';
/** EndpointSlices name their Service with this label (set by the EndpointSlice controller). */
export const SERVICE_NAME_LABEL = 'kubernetes.io/service-name';

const Metadata = z.looseObject({
    name: z.string(),
    namespace: z.string(),
    resourceVersion: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
  });

export const KubeCondition = z.looseObject({
    type: z.string(),
    status: z.enum(['True', 'False', 'Unknown']),
    reason: z.string().optional(),
    message: z.string().optional(),
    lastTransitionTime: z.string().optional(),
  });
export type KubeCondition = z.infer<typeof KubeCondition>;

export const ServiceExportObject = z.looseObject({
    metadata: Metadata,
    status: z.looseObject({ conditions: z.array(KubeCondition).optional() }).optional(),
  });
export type ServiceExportObject = z.infer<typeof ServiceExportObject>;

export const ServiceObject = z.looseObject({
    metadata: Metadata,
    spec: z.looseObject({
        type: z.string().optional(),
        clusterIP: z.string().optional(),
        ports: z
          .array(
            z.looseObject({
                name: z.string().optional(),
                port: z.number().int(),
                protocol: z.string().optional(),
                targetPort: z.union([z.number().int(), z.string()]).optional(),
              }),
          )
          .optional(),
      }),
  });
export type ServiceObject = z.infer<typeof ServiceObject>;

export const EndpointSliceObject = z.looseObject({
    metadata: Metadata,
    addressType: z.string(),
    endpoints: z
      .array(
        z.looseObject({
            addresses: z.array(z.string()),
            conditions: z.looseObject({ ready: z.boolean().nullable().optional() }).optional(),
          }),
      )
      .nullable()
      .optional(),
    ports: z
      .array(z.looseObject({ name: z.string().nullable().optional(), port: z.number().int().nullable().optional(), protocol: z.string().nullable().optional() }))
      .nullable()
      .optional(),
  });
export type EndpointSliceObject = z.infer<typeof EndpointSliceObject>;

export const ServiceImportObject = z.looseObject({
    metadata: Metadata,
    spec: z.unknown().optional(),
    status: z.unknown().optional(),
  });
export type ServiceImportObject = z.infer<typeof ServiceImportObject>;

/** Parses every item; the ones that do not parse are returned as `skipped` (namespace/name and why). */
export function parseItems<T>(schema: z.ZodType<T>, items: readonly unknown[]): { items: T[]; skipped: string[] } {
  const ok: T[] = [];
  const skipped: string[] = [];
  for (const item of items) {
    const r = schema.safeParse(item);
    if (r.success) ok.push(r.data);
    else {
      const md = (item as { metadata?: { namespace?: unknown; name?: unknown } } | null)?.metadata;
      const issue = r.error.issues[0];
      skipped.push(`${String(md?.namespace)}/${String(md?.name)}: ${issue ? `${issue.path.join('.')}: ${issue.message}` : 'invalid'}`);
    }
  }
  return { items: ok, skipped };
}
