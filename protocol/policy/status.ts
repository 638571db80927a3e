// The policy part of the agent's status (GET /status → `policy`) and its GET /policy document
// (`crosslink policy explain`, ping/diagnose answers). Never claims enforcement it does not have.
import * as z from 'zod';
import { PolicyRecord } from './document.ts';

export const PolicyEnforcementMode = z.enum(['required', 'best-effort']);
export type PolicyEnforcementMode = z.infer<typeof PolicyEnforcementMode>;

export const PolicyStatus = z.object({
  mode: PolicyEnforcementMode,
  /** Can this node enforce at all: nft found and working ('unknown' while the check runs). */
  nft: z.enum(['available', 'missing', 'unknown']),
  nftError: z.string().nullable(),
  /** Version of the verified policy in the KV (null: none set, or not read yet). */
  desiredVersion: z.number().nullable(),
  /** Version the live nftables table carries (null: no table). */
  enforcedVersion: z.number().nullable(),
  /** True only when the live table is the desired policy. */
  enforcing: z.boolean(),
  /** This node refuses to carry overlay traffic (mode required and it cannot enforce). */
  blocksTraffic: z.boolean(),
  lastAppliedAt: z.number().nullable(),
  lastError: z.string().nullable(),
  /** Why the policy record in the KV was ignored (unverifiable, malformed, replayed), if it was. */
  rejected: z.string().nullable(),
  /** Packets dropped per rule ('default' for the default verdict), from the table's counters. */
  drops: z.array(z.object({ rule: z.union([z.number(), z.literal('default')]), packets: z.number(), bytes: z.number() })),
});
export type PolicyStatus = z.infer<typeof PolicyStatus>;

export const PolicyCounter = z.object({ name: z.string(), packets: z.number(), bytes: z.number() });
export type PolicyCounter = z.infer<typeof PolicyCounter>;

/** GET /policy (socket only). */
export const PolicyDocumentResponse = z.object({
  status: PolicyStatus,
  record: PolicyRecord.nullable(),
  /** cluster → CIDRs the agent resolves cluster names to. */
  clusters: z.record(z.string(), z.array(z.string())),
  nodeOverlayIps: z.array(z.string()),
  /** `nft list table inet crosslink_policy` as the kernel holds it; null when there is none. */
  liveTable: z.string().nullable(),
  liveTableError: z.string().nullable(),
  counters: z.array(PolicyCounter),
});
export type PolicyDocumentResponse = z.infer<typeof PolicyDocumentResponse>;
