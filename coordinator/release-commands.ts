// `crosslink-coordinator release <node>`: wires the shared flags (same as `revoke`) into release-admin.ts.
import type { Command } from 'commander';
import { systemClock } from '../lib/clock.ts';
import { parseNodeName } from './revocation-admin.ts';
import { addSharedOptions, sharedConfig, withAdmin, type SharedOptions } from './revocation-commands.ts';
import { releaseNode } from './release-admin.ts';

export function addReleaseCommand(program: Command): void {
  addSharedOptions(
    program
      .command('release')
      .argument('<node>', 'node name')
      .description('free a node name bound to an identity key, so another key may register it (the node must not be registered)'),
  ).action(async (node: string, opts: SharedOptions, cmd: Command) => {
    const name = parseNodeName(node);
    const was = await withAdmin(sharedConfig(opts, cmd), ({ store }) => releaseNode({ store, clock: systemClock }, name));
    process.stdout.write(
      `released node name "${name}" (bound to identity key ${was.identityKey} since ${new Date(was.boundAt).toISOString()}); any identity key may register it now\n`,
    );
  });
}
