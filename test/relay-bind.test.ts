import test from 'ava';
import { RecordingRunner } from './helpers/recording-runner.ts';
import { relayBindAddress } from '../agent/dataplane/relay-bind.ts';

const addrs = JSON.stringify([
  { ifname: 'lo', addr_info: [{ local: '127.0.0.1' }] },
  { ifname: 'eth0', addr_info: [{ local: '172.16.0.5' }, { local: '198.51.100.7' }] },
]);

const cases: [string, readonly string[], string | undefined][] = [
  ['advertised address is local: bind it', ['198.51.100.7:51820'], '198.51.100.7'],
  ['behind 1:1 NAT (elastic IP not local): any address', ['203.0.113.9:51820'], undefined],
  ['no endpoint: any address', [], undefined],
  ['second endpoint is local', ['203.0.113.9:51820', '172.16.0.5:51820'], '172.16.0.5'],
];
for (const [name, endpoints, want] of cases) {
  test(`relayBindAddress: ${name}`, async (t) => {
    const runner = new RecordingRunner().on(['ip', '-j', '-4', 'addr', 'show'], addrs);
    t.is(await relayBindAddress(runner, endpoints), want);
    t.deepEqual(runner.transcript(), endpoints.length === 0 ? [] : ['ip -j -4 addr show']);
  });
}

for (const [name, stdout] of [
  ['truncated JSON', '[{"ifname":"eth0","addr_info":[{"local":"198.51'],
  ['not JSON at all', 'Error: no such thing'],
  ['JSON but not a list', '{"ifname":"eth0"}'],
  ['odd shapes inside', '[null, 3, {"addr_info": "x"}, {"addr_info": [null, {"local": 7}]}]'],
] as const) {
  test(`relayBindAddress: ${name} from ip -j is "bind any", never a crash`, async (t) => {
    const runner = new RecordingRunner().on(['ip', '-j', '-4', 'addr', 'show'], stdout);
    t.is(await relayBindAddress(runner, ['198.51.100.7:51820']), undefined);
  });
}
