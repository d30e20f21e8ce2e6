// `sanbox lock` (run a command while holding a cluster lock, like flock(1)) and `sanbox dlm ls`
// (the lockspace as it is on disk): thin shells over src/dlm.

import type { Command } from 'commander';
import { MODE_NAMES } from '../../src/dlm/compat-matrix.js';
import { CLUSTER_OPTION, CLUSTER_OPTION_HELP } from '../image-arg.js';
import { lazyAction } from './lazy.js';

const actions = () => import('./dlm-actions.js');

export function register(program: Command): void {
  program
    .command('lock')
    .description(
      'join the cluster as node N, take RESOURCE in the given mode through the lockspace on the cluster image, run COMMAND while holding it, then release it and leave (like flock(1)). ' +
        'If node N is already running on this machine, the lock is taken through its control channel instead (and released if this process goes away). ' +
        'COMMAND runs in a process group of its own that lives and dies with the node: if the node loses the lock (fenced, gone) the group is killed (exit status 3), and a fencer kills it with the node. ' +
        'Exits with COMMAND\'s status; 1 if the lock could not be had within --timeout (or at once with --noqueue).',
    )
    .usage('[options] [IMAGE] RESOURCE -- COMMAND [ARGS...]')
    .option(CLUSTER_OPTION, CLUSTER_OPTION_HELP)
    .requiredOption('--node <n>', 'node number to join as')
    .option('--mode <mode>', `lock mode: ${MODE_NAMES.join(' | ')}`, 'EX')
    .option('--timeout <duration>', 'give up waiting after this long (500ms, 10s, 2m; default: the cluster\'s lock timeout, 5 dead times: 10s with the local preset)')
    .option('-n, --noqueue', 'fail at once instead of waiting if the lock is held in a conflicting mode (DLM NOQUEUE)', false)
    .option('--verbose', 'log the node\'s membership events and lock timing on stderr', false)
    .argument('<operands...>', 'IMAGE: the cluster image (or --cluster IMAGE); RESOURCE: resource name, 1..64 bytes; COMMAND: the command to run (put it after --)')
    .action(lazyAction(actions, (m) => m.lock));

  const dlm = program.command('dlm').description('inspect the lock manager\'s lockspace');
  dlm
    .command('ls')
    .description(
      'list the resources of the lockspace on a cluster image, with the granted, converting and waiting locks of each node, queue tickets, and the value block. ' +
        'Read-only and lock-free: it shows the records as they are on disk (a record of a node whose current incarnation differs is marked stale).',
    )
    .argument('[image]', 'cluster image (or --cluster IMAGE)')
    .option(CLUSTER_OPTION, CLUSTER_OPTION_HELP)
    .option('--json', 'print as JSON', false)
    .action(lazyAction(actions, (m) => m.ls));
}
