// TEST ONLY: counts heartbeats per node as the NATS server delivers them. Run inside the lab's
// control namespace (`ip netns exec <ctl> node --import tsx test/helpers/count-heartbeats.ts <nats-url>`);
// prints "ready" once subscribed, then one JSON line {node: count, …} per heartbeat, so a reader
// always gets every node's count from the same moment.
import { connect } from '@nats-io/transport-node';
import { subjects } from '../../protocol/subjects.ts';

const url = process.argv[2];
if (url === undefined) throw new Error('usage: count-heartbeats.ts <nats-url>');
const nc = await connect({ servers: url, name: 'xl-test-heartbeat-counter' });
const sub = nc.subscribe(subjects().heartbeat);
const counts: Record<string, number> = {};
await nc.flush();
process.stdout.write('ready\n');
process.on('SIGTERM', () => void nc.close().then(() => process.exit(0)));
for await (const m of sub) {
  let name = '?';
  try {
    const envelope = JSON.parse(m.string()) as { payload?: unknown };
    const body = JSON.parse(Buffer.from(String(envelope.payload), 'base64').toString('utf8')) as { name?: unknown };
    if (typeof body.name === 'string') name = body.name;
  } catch {
    // not an envelope: counted under "?"
  }
  counts[name] = (counts[name] ?? 0) + 1;
  process.stdout.write(`${JSON.stringify(counts)}\n`);
}
