// `sanbox lock` and `sanbox dlm ls`'s actions, loaded when one runs (tools/commands/dlm.ts registers them);
// `lock` imports the node code itself, so `dlm ls` does not load it.

import type { Command } from 'commander';
import { MODE_NAMES, parseMode, type Mode } from '../../src/dlm/compat-matrix.js';
import { readLockspaceView } from '../../src/dlm/lockspace-view.js';
import { UsageError } from '../../src/errors.js';
import { parseDurationMs } from '../../src/units.js';
import { clusterImage, nodeNumberArg } from '../image-arg.js';
import { printJson, printTable } from '../output.js';

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

export async function lock(operands: string[], o: { cluster?: string; node: string; mode: string; timeout?: string; noqueue: boolean; verbose: boolean }, cmd: Command): Promise<void> {
  const nodeId = nodeNumberArg(o.node);
  const { image, resource, command } = lockOperands(operands, o.cluster, rawArgsOf(cmd));
  // The node code is loaded here, not for `dlm ls`.
  const { runLocked } = await import('../../src/node/lock-run.js');
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
}

export async function ls(positional: string | undefined, o: { json: boolean; cluster?: string }): Promise<void> {
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
}
