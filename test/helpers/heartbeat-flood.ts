// The adversary holding only an agent's NATS user, against real coordinators: heartbeats under fresh
// key pairs (valid MACs or signatures for their own keys) and made-up names; and a follower replica
// beside the fixture's leader that counts what it handles.
import type { ExecutionContext } from 'ava';
import { connect } from '@nats-io/transport-node';
import { parseCoordinatorConfig } from '../../coordinator/config.ts';
import { Coordinator, type CoordinatorDeps } from '../../coordinator/coordinator.ts';
import { systemClock } from '../../lib/clock.ts';
import { silentLogger } from '../../lib/logger.ts';
import { heartbeatBody, nodeHeartbeatMacKey } from '../../protocol/heartbeat-mac.ts';
import { HeartbeatReply, type Heartbeat } from '../../protocol/messages.ts';
import { generateSigningKeyPair } from '../../protocol/signing.ts';
import { subjects } from '../../protocol/subjects.ts';
import type { CoordinatorEnv } from './coordinator-fixture.ts';
import { rpc } from './fake-agent.ts';

export interface FloodOptions {
  /** MAC'd (K agreed with the coordinator's key), else signed. Default true. */
  readonly mac?: boolean;
  /** The name of heartbeat i; default `evil-i` for even i, `node-a` for odd i. */
  readonly nameOf?: (i: number) => string;
}

/**
 * Heartbeats of someone holding an agent's NATS user and nothing else: `n` fresh key pairs, each
 * heartbeat authentic for its own key, under made-up names and under node-a's name. The answers: the
 * MAC or signature held, the registry refused.
 */
export async function flood(env: CoordinatorEnv, n: number, sentAt: number, epoch: string | undefined, o: FloodOptions = {}): Promise<HeartbeatReply[]> {
  const s = subjects(env.prefix);
  const nameOf = o.nameOf ?? ((i: number) => (i % 2 === 0 ? `evil-${i}` : 'node-a'));
  const replies: HeartbeatReply[] = [];
  for (let i = 0; i < n; i++) {
    const k = await generateSigningKeyPair();
    const hb: Heartbeat = { v: 1, name: nameOf(i), identityKey: k.publicKey, generation: 0, sentAt, ...(epoch === undefined ? {} : { epoch }) };
    const mac = o.mac === false ? undefined : { coordinatorKey: env.key.publicKey, key: nodeHeartbeatMacKey(k, env.key.publicKey) };
    replies.push(await rpc(env.nc, s.heartbeat, heartbeatBody(hb, k, mac), HeartbeatReply));
  }
  return replies;
}

/** What a follower counted: heartbeats handled, MAC keys agreed by kind. */
export interface FollowerCounts {
  heartbeats: number;
  agreed: { node: number; unknown: number };
}

/** A second replica (a follower: the fixture's coordinator leads) on the system clock, counting what it handles. */
export async function startFollower(
  t: ExecutionContext,
  env: CoordinatorEnv,
  natsUrl: string,
  deps: Pick<CoordinatorDeps, 'macKeyBounds' | 'unknownMarksMax'> = {},
): Promise<{ coordinator: Coordinator; heard: FollowerCounts }> {
  const nc = await connect({ servers: natsUrl, name: 'xl-follower' });
  const heard: FollowerCounts = { heartbeats: 0, agreed: { node: 0, unknown: 0 } };
  const coordinator = await Coordinator.start({
    nc,
    clock: systemClock,
    logger: silentLogger(),
    config: parseCoordinatorConfig({ bucket: env.bucket, subjectPrefix: env.prefix, leaseTtl: '30s', nodeTtl: '60s' }),
    signingKey: env.key,
    holderId: 'xl-follower',
    metrics: {
      registration: () => undefined,
      nodeRemoved: () => undefined,
      heartbeatForm: () => undefined,
      heartbeatMacAgreement: (kind) => heard.agreed[kind]++,
      heartbeat: () => heard.heartbeats++,
    },
    ...deps,
  });
  t.teardown(async () => {
    await coordinator.stop();
    await nc.close();
  });
  t.false(coordinator.isLeader());
  return { coordinator, heard };
}
