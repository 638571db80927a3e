// Is this module the program node was started with? Lets an entry module (agent/main.ts) export
// its main for a test-only wrapper without running it on import. Both paths are resolved through
// symlinks, so `node dist/coordinator/main.js` via bin/ and `tsx agent/main.ts` both count (the compiled
// agent's entry, dist/agent/main.cjs, calls runAgentProcess itself: agent/bundle-main.ts).
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function isEntryPoint(moduleUrl: string, argv1: string | undefined = process.argv[1]): boolean {
  if (argv1 === undefined) return false;
  try {
    return realpathSync(argv1) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}
