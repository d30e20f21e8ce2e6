// `sanbox ctl CLUSTER NODE COMMAND [ARGS]` (or `ctl --cluster CLUSTER NODE …`): drive a running node through its control socket
// (src/node/ctl.ts). Commands: status, leave, fault set|clear|ls, lock, unlock; any other command
// name is sent as is with its arguments ({"cmd": NAME, "args": [...]}), for commands that later
// layers register in the node. The action is in ctl-actions.ts, loaded when it runs.

import type { Command } from 'commander';
import { CTL_ANSWER_TIMEOUT_MS } from '../../src/timing.js';
import { UsageError } from '../../src/errors.js';
import { CLUSTER_OPTION, CLUSTER_OPTION_HELP, clusterImage, nodeNumber } from '../image-arg.js';
import { addRuleOptions } from './fault.js';
import { lazyAction } from './lazy.js';

const actions = () => import('./ctl-actions.js');

/**
 * `ctl [IMAGE] NODE lvm LVMCOMMAND ARGS…` is the LVM command run as that node, which must be
 * running (lvmlockd's split: the command here, its locks in the node, src/node/lvm-node.ts):
 * the command line `LVMCOMMAND ARGS… --cluster IMAGE --node NODE --ctl`. Rewritten before parsing,
 * so the LVM command's own options (-n, -L, …) are never taken for ctl's. Undefined for any other
 * command line.
 */
export function ctlLvmArgv(argv: string[]): string[] | undefined {
  if (argv[0] !== 'ctl') return undefined;
  const at = argv.indexOf('lvm');
  if (at < 0) return undefined;
  const operands: string[] = [];
  let cluster: string | undefined;
  for (let i = 1; i < at; i++) {
    const a = argv[i]!;
    if (a === '--cluster') cluster = argv[++i];
    else if (a.startsWith('--cluster=')) cluster = a.slice('--cluster='.length);
    else if (a.startsWith('-')) return undefined; // ctl's own options come after its COMMAND; let ctl report it
    else operands.push(a);
  }
  // ctl [IMAGE] NODE lvm: 'lvm' must be the COMMAND operand, not an image or node named lvm.
  if (operands.length !== (cluster === undefined ? 2 : /^\d+$/.test(operands[0] ?? '') ? 1 : 2)) return undefined;
  const image = clusterImage(operands.length === 2 ? operands[0] : undefined, cluster);
  const nodeText = operands[operands.length - 1]!;
  nodeNumber(nodeText);
  const rest = argv.slice(at + 1);
  if (rest.length === 0 || rest[0]!.startsWith('-')) throw new UsageError('ctl lvm: missing the LVM command (usage: ctl IMAGE NODE lvm vgs|lvs|lvcreate|lvextend|lvreduce|lvremove|lvchange|vgextend|… ARGS)');
  return [...rest, '--cluster', image, '--node', nodeText, '--ctl'];
}

export function register(program: Command): void {
  addRuleOptions(
    program
      .command('ctl')
      .description(
        'drive a running node through its control socket: status (membership as it sees it, devices with gate state, locks, I/O counters), leave, ' +
          'fault set|clear|ls (on the node\'s own devices: eio, latency, stall, torn), lock RESOURCE --mode M / unlock RESOURCE (held in the node), ' +
          'mount VOL / umount VOL (an ocfs2 volume of this cluster into a free slot, or out of it). ' +
          'fs mkdir|put|get|rm|ls VOL PATH [LOCALFILE] (files on a mounted volume, through the slot\'s journal). ' +
          `A node that is stopped, fenced or gone is reported in one line within ${CTL_ANSWER_TIMEOUT_MS / 1000} s (plus the lock timeout for lock).`,
      )
      .usage('[options] [IMAGE] NODE COMMAND [ARGS...]')
      .argument(
        '<operands...>',
        'IMAGE: the cluster image (or --cluster IMAGE); NODE: node number; COMMAND: status | leave | fault | lock | unlock | mount | umount | fs | lvm | a command a later layer registered; ' +
          'ARGS: fault: set | clear [ID] | ls; lock/unlock: RESOURCE; mount/umount: VOLUME; fs: mkdir|put|get|rm|ls VOLUME PATH [LOCALFILE]; lvm: an LVM command and its arguments (vgs, lvs, lvcreate, lvchange -aey VG/LV, …), run as the node',
      )
      .option(CLUSTER_OPTION, CLUSTER_OPTION_HELP)
      .option('--json', 'print the answer as JSON', false)
      .option('--mode <mode>', 'lock: NL | CR | CW | PR | PW | EX', 'EX')
      .option('--timeout <duration>', 'lock: give up waiting after this long (default: the cluster\'s lock timeout)')
      .option('-n, --noqueue', 'lock: fail at once if the lock is held in a conflicting mode', false),
  ).action(lazyAction(actions, (m) => m.ctl));
}
