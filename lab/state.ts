// The lab's on-disk state under <lab root>/<id>/ (outside the checkout, see labRoot): what `up` started, so `down` and `status` can find it
// from another process. Written after every change; teardown does not trust it alone (it also
// discovers processes through their namespaces), so a crash mid-`up` still cleans up.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as z from 'zod';
import { describeZodError } from '../protocol/messages.ts';
import { CrosslinkError } from '../lib/errors.ts';

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');

/**
 * Where labs keep their state: $CROSSLINK_LAB_DIR, else $XDG_RUNTIME_DIR/crosslink-lab, else
 * /run/crosslink-lab (the lab runs as root). Never inside the checkout, so a lab runs from a
 * read-only one. Lab ids are machine-wide (they name namespaces), and so is this directory.
 */
export function labRoot(env: Readonly<Record<string, string | undefined>> = process.env): string {
  if (env.CROSSLINK_LAB_DIR !== undefined && env.CROSSLINK_LAB_DIR !== '') return env.CROSSLINK_LAB_DIR;
  if (env.XDG_RUNTIME_DIR !== undefined && env.XDG_RUNTIME_DIR !== '') return join(env.XDG_RUNTIME_DIR, 'crosslink-lab');
  return '/run/crosslink-lab';
}

export function labDir(id: string, root = labRoot()): string {
  return join(root, id);
}

export const ProcessEntry = z.object({
  role: z.enum(['agent', 'coordinator', 'nats-server']),
  /** Node name for agents, else the role. */
  name: z.string(),
  ns: z.string(),
  pid: z.number().int().positive(),
  startTime: z.number().int().nonnegative(),
  log: z.string(),
});
export type ProcessEntry = z.infer<typeof ProcessEntry>;

export const LabState = z.object({
  id: z.string(),
  createdAt: z.number(),
  /** The topology as given (re-parsed by `status`, so the plan is always derived the same way). */
  topologyText: z.string(),
  topologySource: z.string(),
  coordinatorPublicKey: z.string().nullable(),
  /** `lab up --nats-servers`: 1 (absent in older state files) or a cluster of 3 or 5. */
  natsServers: z.number().int().positive().optional(),
  processes: z.array(ProcessEntry),
});
export type LabState = z.infer<typeof LabState>;

export function statePath(dir: string): string {
  return join(dir, 'state.json');
}

export async function writeState(dir: string, state: LabState): Promise<void> {
  const file = statePath(dir);
  await mkdir(dirname(file), { recursive: true });
  // Write-then-rename: a crash never leaves a half-written state file.
  await writeFile(`${file}.tmp`, `${JSON.stringify(state, null, 2)}\n`);
  await rename(`${file}.tmp`, file);
}

export async function readState(dir: string): Promise<LabState | undefined> {
  let text: string;
  try {
    text = await readFile(statePath(dir), 'utf8');
  } catch {
    return undefined;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new CrosslinkError(`${statePath(dir)} is not JSON`, { cause: err });
  }
  const parsed = LabState.safeParse(json);
  if (!parsed.success) throw new CrosslinkError(`${statePath(dir)}: ${describeZodError(parsed.error, json).message}`);
  return parsed.data;
}
