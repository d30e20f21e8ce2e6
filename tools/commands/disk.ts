// `sanbox disk create|info`: thin shells over src/disk (the actions in disk-actions.ts, loaded when one runs).

import type { Command } from 'commander';
import { lazyAction } from './lazy.js';

const actions = () => import('./disk-actions.js');

export function register(program: Command): void {
  const disk = program.command('disk').description('create and inspect emulated shared disks (sparse image files)');

  disk
    .command('create')
    .description('create a sparse image file of the given size; no data blocks are allocated')
    .argument('<image>', 'path of the image file to create, or nbd://HOST:PORT/EXPORT (checked to be large enough, then zeroed)')
    .requiredOption('--size <size>', 'size, with a suffix: 512, 4k, 100M, 10G, 1T')
    .option('--sector-size <bytes>', 'logical sector size: 512 or 4096', '512')
    .option('--force', 'replace an existing image (refused while another process has it open)', false)
    .option('--json', 'print the created disk as JSON', false)
    .action(lazyAction(actions, (m) => m.create));

  disk
    .command('info')
    .description('show size, sector size, bytes allocated and whether the disk is in use')
    .argument('<image>', 'image file, block device, or nbd://HOST:PORT/EXPORT (size and sector size asked from the server)')
    .option('--json', 'print as JSON', false)
    .action(lazyAction(actions, (m) => m.info));
}
