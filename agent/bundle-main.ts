// The compiled agent's entry point, dist/agent/main.cjs (scripts/build-agent.ts): loads the agent's
// bundle, dist/agent/agent.cjs, through lib/load-commonjs.ts (read in pieces, so glibc's mmap
// threshold stays low: ~3 MiB less malloc heap than require()) and runs it. Not used from TypeScript.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BundleLoadError, loadCommonJs } from '../lib/load-commonjs.ts';

interface AgentBundle {
  readonly runAgentProcess: (argv: readonly string[]) => void;
}

function isAgentBundle(exports: unknown): exports is AgentBundle {
  return typeof exports === 'object' && exports !== null && typeof (exports as Partial<AgentBundle>).runAgentProcess === 'function';
}

const bundle = join(dirname(fileURLToPath(import.meta.url)), 'agent.cjs');
// `require` is main.cjs's own (a CommonJS bundle beside agent.cjs); this file never runs as TypeScript.
const exports = loadCommonJs(bundle, require);
if (!isAgentBundle(exports)) throw new BundleLoadError(bundle, 'exports no runAgentProcess function (is it the agent bundle, agent/main.ts?)');
exports.runAgentProcess(process.argv.slice(2));
