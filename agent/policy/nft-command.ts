// Which nft to run. A bare "nft" is looked up in the system's sbin directories first: PATH may put
// another program of that name first (npm puts node_modules/.bin on PATH, and @vercel/nft installs
// an `nft` there that exits 0 on anything), and a policy "applied" by the wrong program is a node
// that silently enforces nothing.
import { existsSync } from 'node:fs';

const SYSTEM_DIRS = ['/usr/sbin', '/sbin', '/usr/local/sbin', '/usr/bin', '/bin'];

export function resolveNftCommand(command: string, exists: (path: string) => boolean = existsSync): string {
  if (command.includes('/')) return command;
  for (const dir of SYSTEM_DIRS) {
    const path = `${dir}/${command}`;
    if (exists(path)) return path;
  }
  return command;
}
