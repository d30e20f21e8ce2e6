// `sanbox mkfs | fsinfo | slotmap | hb | logdump`: ocfs2-format volumes. Thin shells over src/fs.
// The readers print the facts `debugfs.ocfs2 -R stats | slotmap | hb | "logdump N"` print, in the
// same words where it has them, and all take --json. The actions are in ocfs2-actions.ts, loaded
// when one runs.

import type { Command } from 'commander';
import { TARGET_DEVICES_HELP } from '../image-arg.js';
import { lazyAction } from './lazy.js';

const actions = () => import('./ocfs2-actions.js');

export function register(program: Command): void {
  program
    .command('mkfs')
    .description(
      'format an image or logical volume as an ocfs2 cluster volume that fsck.ocfs2, debugfs.ocfs2 and blkid accept. ' +
        'Takes mkfs.ocfs2\'s own flags (-b -C -N -J size=,block64 -L -T -M -F --fs-features --fs-feature-level ' +
        '--cluster-stack --cluster-name) with its defaults, so a script written for mkfs.ocfs2 gets the same geometry. ' +
        'Features written: backup-super, strict-journal-super, sparse, unwritten, inline-data, extended-slotmap, local, and ' +
        'with --cluster-stack o2cb clusterinfo; xattr, indexed-dirs, refcount, discontig-bg, metaecc, append-dio and the ' +
        'quotas are refused when asked for, and left out of mkfs.ocfs2\'s default level. ' +
        'Refuses a device in use, one too small for the slots and journals, and (without --force) one that already ' +
        'holds a filesystem or an LVM PV label.',
    )
    .argument('<target>', 'image file, nbd://… or VG/LV')
    .option('-N, --node-slots <n>', 'node slots (1..255): how many nodes can mount it at once (default by size: 2 below 2G, 4 below 10G, 8 below 1T, else 16; 1 with -M local)')
    .option('--slots <n>', 'the same as -N')
    .option('-b, --block-size <size>', 'filesystem block size: 512, 1K, 2K or 4K (default by size: 1K below 512M, 2K below 1G, else 4K)')
    .option('-C, --cluster-size <size>', 'allocation unit: 4K..1M, a power of two (default 4K; larger with -T datafiles|vmstore)')
    .option('-J, --journal-options <options>', 'journal options: size=SIZE, block32, block64')
    .option('--journal-size <size>', 'journal size per slot (≥ 4M; default grows with the volume up to 256M), the same as -J size=')
    .option('-L, --label <label>', 'volume label (up to 64 bytes)', '')
    .option('-T <type>', 'how the volume will be used: mail, datafiles or vmstore (picks the default cluster and journal sizes)')
    .option('-M, --mount <type>', 'local or cluster (default); local sets the local feature and takes no cluster stack')
    .option('--fs-features <list>', 'comma-separated features to turn on, or off with a "no" prefix (e.g. nosparse,noinline-data)')
    .option('--fs-feature-level <level>', 'max-compat or default (max-features is refused: it needs metaecc and more that sanbox cannot write)')
    .option('--cluster-stack <stack>', 'cluster stack recorded in the superblock: o2cb')
    .option('--cluster-name <name>', 'cluster name (up to 16 bytes; needs --cluster-stack o2cb)')
    .option('--devices <list>', TARGET_DEVICES_HELP)
    .option('-F, --force', 'overwrite a device that already holds a filesystem or PV label', false)
    .option('-q, --quiet', 'no progress and no summary', false)
    .option('--json', 'print the result as JSON', false)
    .action(lazyAction(actions, (m) => m.format));

  program
    .command('fsinfo')
    .description('show an ocfs2 volume\'s superblock: the facts of `debugfs.ocfs2 -R stats`')
    .argument('<target>', 'image file, nbd://… or VG/LV')
    .option('--files', 'also list the system files: inode, flags, size and extents (debugfs `ls -l //` and `stat`)', false)
    .option('--devices <list>', TARGET_DEVICES_HELP)
    .option('--json', 'print as JSON', false)
    .action(lazyAction(actions, (m) => m.fsinfo));

  program
    .command('slotmap')
    .description('show which node holds each slot (old or extended slot map): `debugfs.ocfs2 -R slotmap`')
    .argument('<target>', 'image file, nbd://… or VG/LV')
    .option('--all', 'list empty slots too', false)
    .option('--devices <list>', TARGET_DEVICES_HELP)
    .option('--json', 'print as JSON', false)
    .action(lazyAction(actions, (m) => m.slotmap));

  program
    .command('hb')
    .description('show the o2hb heartbeat blocks of the volume\'s heartbeat region (slots with a non-zero sequence), checksums verified: `debugfs.ocfs2 -R hb`')
    .argument('<target>', 'image file, nbd://… or VG/LV')
    .option('--devices <list>', TARGET_DEVICES_HELP)
    .option('--json', 'print as JSON', false)
    .action(lazyAction(actions, (m) => m.hb));

  program
    .command('logdump')
    .description('walk a slot\'s JBD2 journal: superblock, descriptor blocks and their tags, commit and revoke blocks: `debugfs.ocfs2 -R "logdump N"`')
    .argument('<target>', 'image file, nbd://… or VG/LV')
    .argument('<slot>', 'slot number')
    .option('--devices <list>', TARGET_DEVICES_HELP)
    .option('--json', 'print as JSON', false)
    .action(lazyAction(actions, (m) => m.logdump));
}
