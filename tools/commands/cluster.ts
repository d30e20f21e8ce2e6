// `sanbox cluster init|status` and `sanbox node`: thin shells over src/heartbeat and src/node (the
// actions in cluster-actions.ts, loaded when one runs).

import type { Command } from 'commander';
import { LOCKS_PER_NODE_DEFAULT } from '../../src/format/lockspace.js';
import { FENCE_POLICIES } from '../../src/heartbeat/fence-policy.js';
import { TIMING_PRESETS } from '../../src/timing.js';
import { DEVICES_ENV } from '../../src/volume/devices-env.js';
import { CLUSTER_OPTION, CLUSTER_OPTION_HELP } from '../image-arg.js';
import { lazyAction } from './lazy.js';

const actions = () => import('./cluster-actions.js');

export function register(program: Command): void {
  const cluster = program.command('cluster').description('create and inspect sanbox cluster images (config, o2hb heartbeat, node records, reservations, lockspace)');

  cluster
    .command('init')
    .description(
      'create a cluster image: a small shared disk holding the cluster name, its nodes and timing, an o2hb-compatible heartbeat region (one sector per node number), node records, SCSI-3 reservation state and a lockspace region',
    )
    .argument('<image>', 'path of the cluster image to create, or nbd://HOST:PORT/EXPORT (checked to be large enough and empty, then zeroed)')
    .requiredOption('--nodes <n>', 'number of nodes (node numbers 0..n-1, at most 255)')
    .requiredOption('--name <name>', 'cluster name (A-Z a-z 0-9 . _ -, up to 64 characters)')
    .option('--sector-size <bytes>', 'logical sector size, which is also the heartbeat slot size: 512 or 4096', '512')
    .option('--timing <preset>', `timing preset: ${Object.keys(TIMING_PRESETS).join(' | ')} (local: 100 ms interval, dead after 2 s; o2cb: the real o2hb 2 s / 31 / 62 s)`, 'local')
    .option('--interval <ms>', 'heartbeat interval in ms (overrides the preset)')
    .option('--dead-threshold <n>', 'intervals without a seq change before a node is dead (overrides the preset)')
    .option('--io-timeout <ms>', 'a heartbeat write slower than this has failed (overrides the preset)')
    .option('--locks-per-node <n>', `lock records and value blocks per node the lockspace region is sized for (sparse)`, String(LOCKS_PER_NODE_DEFAULT))
    .option('--lockspace-size <size>', 'size of the lock manager region (default: sized for --locks-per-node)')
    .option('--run-dir <dir>', 'directory of the nodes\' control sockets (default: $TMPDIR/sanbox-<uuid>)')
    .option('--node-names <names>', 'comma-separated node names, in node-number order')
    .option('--force', 'replace an existing image (refused while another process has it open)', false)
    .option('--json', 'print the created cluster as JSON', false)
    .action(lazyAction(actions, (m) => m.init));

  cluster
    .command('status')
    .description('show every node slot of a cluster image: node, name, pid, seq, generation, state (up, dead, fenced, free) and the age of its last heartbeat; with --volume, which node has each volume mounted in which slot; reads only')
    .argument('[image]', 'cluster image (or --cluster IMAGE)')
    .option(CLUSTER_OPTION, CLUSTER_OPTION_HELP)
    .option('--json', 'print as JSON (one object per refresh with --watch)', false)
    .option('--watch [ms]', 'refresh until interrupted (default: every heartbeat interval)')
    .option('--count <n>', 'with --watch: stop after n refreshes')
    .option('--volume <volume...>', 'also show which node has each of these ocfs2 volumes (image, nbd://… or VG/LV) mounted in which slot, from its slot map')
    .option('--devices <list>', `comma-separated devices where VG/LV volumes find their PVs (also ${DEVICES_ENV})`)
    .action(lazyAction(actions, (m) => m.status));

  program
    .command('node')
    .description(
      'run one cluster node in the foreground: joins the cluster image as node N, writes its heartbeat, logs membership events (up, down, fenced) and fences dead peers; stops cleanly on SIGINT/SIGTERM or a "leave" on its control socket; exits 3 if it fences itself',
    )
    .argument('[image]', 'cluster image (or --cluster IMAGE)')
    .option(CLUSTER_OPTION, CLUSTER_OPTION_HELP)
    .requiredOption('--node <n>', 'node number')
    .option('--name <name>', 'node name shown by cluster status')
    .option('--fence <policy>', `fence agents for dead peers: ${FENCE_POLICIES.join(' | ')} (both: SIGKILL the recorded pid, then preempt its reservation key; disk: preempt only, escalating to power when the victim is stuck inside a write)`, 'both')
    .option('--volume <image...>', 'also heartbeat o2hb-compatibly in the heartbeat system file of these ocfs2 volumes: image files, nbd:// exports or VG/LV (debugfs.ocfs2 -R hb shows the blocks; a kernel node there is a peer)')
    .option('--mount <volume...>', 'mount these ocfs2 volumes (image files, nbd:// exports or VG/LV) into a slot once joined: the volume must be of this cluster (--cluster-stack=o2cb --cluster-name=NAME) with features sanbox writes; unmounted at a clean stop (also: ctl NODE mount|umount VOL)')
    .option('--devices <list>', `comma-separated devices where VG/LV volumes find their PVs (also ${DEVICES_ENV}); every PV gets this node's fence gate`)
    .option('--json', 'log events as JSON lines', false)
    .action(lazyAction(actions, (m) => m.node));
}
