// Two `cluster add` runs at the same time (two operators, or a script enrolling in parallel) both
// check disjointness before either has written. The later write must be withdrawn: the bucket never
// ends up with overlapping cluster definitions, and exactly one of the two commands succeeds.
import { Kvm, type KV } from '@nats-io/kv';
import { connect } from '@nats-io/transport-node';
import test, { type ExecutionContext } from 'ava';
import { addCluster, ClusterAdminError } from '../coordinator/cluster-admin.ts';
import { StateStore } from '../coordinator/store.ts';
import { systemClock } from '../lib/clock.ts';
import { silentLogger } from '../lib/logger.ts';
import { cidrsOverlap, parseCidr } from '../protocol/cidr.ts';
import { generateSigningKeyPair, type SigningKeyPair } from '../protocol/signing.ts';
import { scratchNames, useNatsServer } from './helpers/nats-fixture.ts';

const server = useNatsServer('xl-enrollrace');

/** Holds each store's first definitions read until both have read: the race, every time. */
function racingStores(make: () => StateStore): [StateStore, StateStore] {
  let arrived = 0;
  let release!: () => void;
  const both = new Promise<void>((r) => (release = r));
  const stores = [make(), make()] as const;
  for (const s of stores) {
    const load = s.loadDefinitions.bind(s);
    let first = true;
    s.loadDefinitions = async () => {
      const defs = await load();
      if (first) {
        first = false;
        if (++arrived === 2) release();
        await both;
      }
      return defs;
    };
  }
  return [stores[0], stores[1]];
}

/** A fresh bucket, its signing key and two stores racing on it (two `cluster add` processes). */
async function racingBucket(t: ExecutionContext): Promise<{ kv: KV; key: SigningKeyPair; s1: StateStore; s2: StateStore }> {
  const { bucket } = scratchNames('xlrace');
  const nc = await connect({ servers: server().url });
  t.teardown(() => nc.close());
  const kv = await new Kvm(nc).create(bucket, { history: 1 });
  const key = await generateSigningKeyPair();
  const [s1, s2] = racingStores(() => new StateStore(kv, key, silentLogger()));
  return { kv, key, s1, s2 };
}

test('overlapping clusters enrolled at the same time: one wins, the other is withdrawn with the reason', async (t) => {
  const { kv, key, s1, s2 } = await racingBucket(t);
  const results = await Promise.allSettled([
    addCluster({ store: s1, clock: systemClock }, { name: 'blue', podCidrs: ['10.60.0.0/16'], topology: 'mesh', allowPublic: false }),
    addCluster({ store: s2, clock: systemClock }, { name: 'green', podCidrs: ['10.60.4.0/24'], topology: 'mesh', allowPublic: false }),
  ]);
  const won = results.filter((r) => r.status === 'fulfilled');
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  t.is(won.length, 1, 'exactly one enrollment succeeds');
  t.is(lost.length, 1);
  t.true(lost[0]?.reason instanceof ClusterAdminError);
  t.regex((lost[0]?.reason as Error).message, /overlaps .* cluster pod ranges must be disjoint .*withdrawn/);

  const stored = [...(await new StateStore(kv, key, silentLogger()).loadDefinitions()).values()].map((d) => d.value);
  t.is(stored.length, 1, 'only the winner is stored');
  const ranges = stored.flatMap((d) => d.podCidrs.map((c) => parseCidr(c)!));
  for (let i = 0; i < ranges.length; i++) for (let j = i + 1; j < ranges.length; j++) t.false(cidrsOverlap(ranges[i]!, ranges[j]!));
});

test('disjoint clusters enrolled at the same time both succeed', async (t) => {
  const { kv, key, s1, s2 } = await racingBucket(t);
  await Promise.all([
    addCluster({ store: s1, clock: systemClock }, { name: 'blue', podCidrs: ['10.61.0.0/16'], topology: 'mesh', allowPublic: false }),
    addCluster({ store: s2, clock: systemClock }, { name: 'green', podCidrs: ['10.62.0.0/16'], topology: 'gateway', allowPublic: false }),
  ]);
  const stored = await new StateStore(kv, key, silentLogger()).loadDefinitions();
  t.deepEqual([...stored.keys()].sort(), ['blue', 'green']);
});
