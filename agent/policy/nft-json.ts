// Parses `nft -j list table inet crosslink_policy`: the named counters (per rule) and the policy
// version the table carries (from the default rule's comment). Pure.
import * as z from 'zod';
import { versionFromTableComment } from '../../protocol/policy/render.ts';
import type { PolicyCounter } from '../../protocol/policy/status.ts';

export interface LiveTable {
  /** null when the table carries no version comment (not written by us). */
  readonly version: number | null;
  readonly counters: readonly PolicyCounter[];
}

const NftJson = z.object({
  nftables: z.array(
    z.looseObject({
      counter: z.looseObject({ name: z.string(), packets: z.number(), bytes: z.number() }).optional(),
      rule: z.looseObject({ comment: z.string().optional() }).optional(),
    }),
  ),
});

/** Throws when the text is not nft's JSON. */
export function parseNftTable(text: string): LiveTable {
  const doc = NftJson.parse(JSON.parse(text));
  const counters: PolicyCounter[] = [];
  let version: number | null = null;
  for (const item of doc.nftables) {
    if (item.counter) counters.push({ name: item.counter.name, packets: item.counter.packets, bytes: item.counter.bytes });
    const v = versionFromTableComment(item.rule?.comment);
    if (v !== null) version = v;
  }
  return { version, counters };
}
