// `sanbox demo`: prints the demo scenario of src/node/demo.ts as a narrative (or JSON).

import type { Command } from 'commander';
import { DEMO_NODES_MAX, DEMO_NODES_MIN } from '../../src/node/demo-limits.js';
import { lazyAction } from './lazy.js';

const actions = () => import('./demo-actions.js');

export function register(program: Command): void {
  program
    .command('demo')
    .description(
      'run a local demo cluster: create a cluster image and an ocfs2 volume, start N node processes that heartbeat through both and mount the volume, write files through their slot journals, kill one with SIGKILL while a put is in flight, watch the others declare it dead, fence it and replay its journal, check every acknowledged file by sha256, and print a verdict',
    )
    .option('--dir <dir>', 'where the demo images go (replaced if they exist)', 'sanbox-demo')
    .option('--nodes <n>', `number of node processes (${DEMO_NODES_MIN}-${DEMO_NODES_MAX})`, '3')
    .option('--json', 'print the result as JSON instead of a narrative', false)
    .action(lazyAction(actions, (m) => m.demo));
}
