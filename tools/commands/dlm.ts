// `sanbox lock` (run a command while holding a cluster lock, like flock(1)) and `sanbox dlm ls`
// (the lockspace as it is on disk): thin shells over src/dlm.

import type { Command } from 'commander';
import { MODE_NAMES, parseMode, type Mode } from '../../src/dlm/compat-matrix.js';
import { readLockspaceView } from '../../src/dlm/lockspace-view.js';
import { UsageError } from '../../src/errors.js';
import { runLocked } from '../../src/node/lock-run.js';
import { parseDurationMs } from '../../src/units.js';
import { CLUSTER_OPTION, CLUSTER_OPTION_HELP, clusterImage } from '../image-arg.js';
import { printJson, printTable } from '../output.js';

function nodeNumber(text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--node must be a node number (0, 1, …), not '${text}'`);
  return n;
}

function lockMode(text: string): Mode {
  const m = parseMode(text);
  if (m === undefined) throw new UsageError(`--mode must be one of ${MODE_NAMES.join(', ')}, not '${text}'`);
  return m;
}

/** The arguments the program was started with (the root command's), to find where `--` was. */
function rawArgsOf(cmd: Command): readonly string[] {
  let root = cmd;
  while (root.parent !== null) root = root.parent;
  // Commander keeps them on the root as rawArgs (set by parse/parseAsync) but leaves them out of its types.
  const raw = (root as unknown as { rawArgs?: unknown }).rawArgs;
  return Array.isArray(raw) ? (raw as string[]) : [];
}

/**
 * `lock`'s operands: [IMAGE] RESOURCE COMMAND.... The image is there positionally when two operands
 * come before `--`, or, without `--`, when --cluster is not given.
 */
function lockOperands(operands: string[], option: string | undefined, rawArgs: readonly string[]): { image: string; resource: string; command: string[] } {
  const dash = rawArgs.indexOf('--');
  // Commander moves everything after `--` to the operands and drops the `--` itself.
  const before = dash >= 0 ? operands.length - (rawArgs.length - dash - 1) : option === undefined ? 2 : 1;
  if (before !== 1 && before !== 2) throw new UsageError(`lock: expected [IMAGE] RESOURCE before --, not ${before} operands`);
  const image = clusterImage(before === 2 ? operands[0] : undefined, option);
  const resource = operands[before - 1];
  const command = operands.slice(before);
  if (resource === undefined || command.length === 0) throw new UsageError('lock: missing RESOURCE or COMMAND (usage: lock [IMAGE] RESOURCE -- COMMAND [ARGS...])');
  return { image, resource, command };
}

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
    .action(async (operands: string[], o: { cluster?: string; node: string; mode: string; timeout?: string; noqueue: boolean; verbose: boolean }, cmd: Command) => {
      const nodeId = nodeNumber(o.node);
      const { image, resource, command } = lockOperands(operands, o.cluster, rawArgsOf(cmd));
      const status = await runLocked({
        clusterImage: image,
        nodeId,
        resource,
        mode: lockMode(o.mode),
        ...(o.timeout !== undefined ? { timeoutMs: parseDurationMs(o.timeout) } : {}),
        noqueue: o.noqueue,
        command,
        log: (msg) => {
          if (o.verbose) process.stderr.write(`sanbox lock: node${nodeId}: ${msg}\n`);
        },
        warn: (msg) => process.stderr.write(`sanbox lock: ${msg}\n`),
      });
      process.exit(status);
    });

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
    .action(async (positional: string | undefined, o: { json: boolean; cluster?: string }) => {
      const image = clusterImage(positional, o.cluster);
      const view = await readLockspaceView(image);
      const out = view.resources;
      if (o.json) {
        printJson(view);
        return;
      }
      if (out.length === 0) {
        process.stdout.write(`Lockspace "${view.lockspace.name}" on ${image}: no resources.\n`);
        return;
      }
      const rows = out.flatMap((r) =>
        (['granted', 'converting', 'waiting'] as const).flatMap((state) => r[state].map((l) => ({ res: r.resource, state, ...l }))),
      );
      printTable(rows, [
        { header: 'Resource', value: (x) => x.res },
        { header: 'Node', value: (x) => x.node, align: 'right' },
        { header: 'LkId', value: (x) => x.lockId, align: 'right' },
        { header: 'Queue', value: (x) => x.state },
        { header: 'Gr', value: (x) => x.granted },
        { header: 'Rq', value: (x) => x.requested },
        { header: 'Ticket', value: (x) => x.ticket, align: 'right' },
        { header: 'Claim', value: (x) => (x.claim ? 'yes' : '') },
        { header: 'Pid', value: (x) => x.pid, align: 'right' },
        { header: 'Gen', value: (x) => x.generation + (x.stale ? ' (stale)' : '') },
        { header: 'Cell', value: (x) => `${x.row}.${x.entry}` },
      ]);
      const lvbs = out.filter((r) => r.lvb !== null);
      if (lvbs.length > 0) {
        process.stdout.write('\n');
        printTable(lvbs, [
          { header: 'Resource', value: (x) => x.resource },
          { header: 'LVB seq', value: (x) => x.lvb!.seq, align: 'right' },
          { header: 'Valid', value: (x) => (x.lvb!.valid ? 'yes' : 'NO') },
          { header: 'Value', value: (x) => x.lvb!.text },
        ]);
      }
    });
}
