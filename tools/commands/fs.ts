// `sanbox ls | cat | recover`: files on an ocfs2 volume offline, and recovery of dirty journals.
// ls/cat print the facts of `debugfs.ocfs2 -R "ls -l PATH"` and `-R "cat PATH"`; recover replays
// each dirty slot's journal as the kernel does at mount (src/fs/recover.ts) and prints every
// transaction with the home blocks it wrote. Thin shells over src/fs
// (the actions in fs-actions.ts, loaded when one runs).

import type { Command } from 'commander';
import { LIVENESS_OBSERVE_MS_DEFAULT } from '../../src/timing.js';
import { TARGET_DEVICES_HELP } from '../image-arg.js';
import { lazyAction } from './lazy.js';

const actions = () => import('./fs-actions.js');

export function register(program: Command): void {
  program
    .command('ls')
    .description('list a directory of an ocfs2 volume (inode, mode, links, uid, gid, size, mtime, name): `debugfs.ocfs2 -R "ls -l PATH"`')
    .argument('<target>', 'image file, nbd://… or VG/LV')
    .argument('[path]', 'absolute path on the volume', '/')
    .option('--devices <list>', TARGET_DEVICES_HELP)
    .option('--json', 'print as JSON', false)
    .action(lazyAction(actions, (m) => m.ls));

  program
    .command('cat')
    .description('write a file of an ocfs2 volume to stdout (inline data or extents; holes and unwritten extents read as zeros): `debugfs.ocfs2 -R "cat PATH"`')
    .argument('<target>', 'image file, nbd://… or VG/LV')
    .argument('<path>', 'absolute path on the volume')
    .option('--devices <list>', TARGET_DEVICES_HELP)
    .action(lazyAction(actions, (m) => m.cat));

  program
    .command('recover')
    .description(
      'replay the dirty journals of an unmounted ocfs2 volume as the kernel does at mount (scan, revoke, replay; stop at the first bad commit), ' +
        'recover the slots\' local alloc and truncate log, mark the journals clean (s_start 0, s_sequence end+1, DIRTY cleared, recovery generation +1), ' +
        'free the slots and free the inodes in their orphan directories. Refused while a slot\'s node still heartbeats on the volume. A journal with a bad block stops it before anything is written.',
    )
    .argument('<target>', 'image file, nbd://… or VG/LV')
    .option('--slot <n>', 'recover only this slot')
    .option('--observe-ms <ms>', 'how long to watch a slot\'s node heartbeat before calling it dead', String(LIVENESS_OBSERVE_MS_DEFAULT))
    .option('--dry-run', 'read and report, write nothing', false)
    .option('--devices <list>', TARGET_DEVICES_HELP)
    .option('--json', 'print as JSON', false)
    .action(lazyAction(actions, (m) => m.recover));
}
