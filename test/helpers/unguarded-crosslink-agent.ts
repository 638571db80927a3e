// TEST ONLY: crosslink-agent with the route guard OFF — the negative control of
// test/adversary-dataplane.test.ts (it must show the hijack the guard prevents). Started as
// `node --import tsx test/helpers/unguarded-crosslink-agent.ts <crosslink-agent flags>`; no flag
// or environment variable of the product can turn the guard off. The file name contains
// "crosslink-agent" so the lab's teardown stops it as an agent (before wireguard-go).
import { runAgentProcess } from '../../agent/main.ts';

runAgentProcess(process.argv.slice(2), { unsafeUnguardedRoutes: true });
