// `sanbox ctl CLUSTER NODE COMMAND [ARGS]` (or `ctl --cluster CLUSTER NODE …`): drive a running node through its control socket
// (src/node/ctl.ts). Commands: status, leave, fault set|clear|ls, lock, unlock; any other command
// name is sent as is with its arguments ({"cmd": NAME, "args": [...]}), for commands that later
// layers register in the node.

import path from 'node:path';
import type { Command } from 'commander';
import { FS_SUBCOMMANDS } from '../../src/node/fs-commands.js';
import type { DeviceStatus, FaultRuleStatus } from '../../src/node/provider.js';
import { volumeKey, type MountStatus, type NodeStatus } from '../../src/node/node.js';
import { answerBoundMs, CTL_ANSWER_TIMEOUT_MS, ctlRequest } from '../../src/node/ctl.js';
import { readClusterImage } from '../../src/heartbeat/cluster-image.js';
import { UsageError } from '../../src/errors.js';
import { parseDurationMs } from '../../src/units.js';
import { CLUSTER_OPTION, CLUSTER_OPTION_HELP, clusterImage } from '../image-arg.js';
import { printFields, printJson, printTable } from '../output.js';
import { addRuleOptions, printRules, ruleFromOptions } from './fault.js';

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

function nodeNumber(text: string): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`NODE must be a node number (0, 1, …), not '${text}'`);
  return Number(text);
}

/** The quorum hold of a node's cluster volumes in one line ("I/O held: no quorum since …"). */
function ioHoldLine(h: NodeStatus['ioHold']): string {
  if (h === null) return 'open (this node follows no quorum)';
  const counts = `${h.released} released, ${h.failed} failed with EIO so far`;
  if (h.state === 'open') return `open (quorum; ${counts})`;
  if (h.state === 'fenced') return `refused: the node fenced itself (${counts})`;
  if (h.state === 'held') return `I/O held: no quorum since ${h.since}: ${h.waiting} waiting, EIO after ${h.holdMs} ms (${counts})`;
  return `I/O failing (EIO): no quorum since ${h.since}, held the limit of ${h.holdMs} ms (${counts})`;
}

function printNodeStatus(s: NodeStatus): void {
  printFields([
    ['Node', `${s.nodeId} (${s.name}), pid ${s.pid}`],
    ['Cluster', s.cluster],
    ['State', s.fenced === null ? s.state : `${s.state}: ${s.fenced}`],
    ['Quorum', s.quorum ? 'yes' : 'NO'],
    ['Cluster I/O', ioHoldLine(s.ioHold)],
    ['Generation', s.generation],
  ]);
  process.stdout.write('\nMembership as this node sees it:\n');
  printTable(s.members, [
    { header: 'Node', value: (m) => m.nodeId, align: 'right' },
    { header: 'State', value: (m) => m.state },
    { header: 'Generation', value: (m) => m.generation },
  ]);
  process.stdout.write('\nDevices:\n');
  printTable<DeviceStatus>(s.devices, [
    { header: 'Device', value: (d) => d.name },
    { header: 'Gate', value: (d) => d.gate },
    { header: 'Reservations', value: (d) => d.reservations },
    { header: 'Reads', value: (d) => d.io.reads, align: 'right' },
    { header: 'Writes', value: (d) => d.io.writes, align: 'right' },
    { header: 'Flushes', value: (d) => d.io.flushes, align: 'right' },
    { header: 'Errors', value: (d) => d.io.errors, align: 'right' },
    { header: 'Refused', value: (d) => d.io.refused, align: 'right' },
  ]);
  process.stdout.write('\nMounts:\n');
  if (s.mounts.length === 0) process.stdout.write(' none\n');
  else {
    printTable(s.mounts, [
      { header: 'Volume', value: (m) => m.volume },
      { header: 'UUID', value: (m) => m.uuid },
      { header: 'Slot', value: (m) => m.slot, align: 'right' },
      { header: 'Since', value: (m) => m.mountedAt },
    ]);
  }
  process.stdout.write('\nActive LVs:\n');
  if ((s.activations ?? []).length === 0) process.stdout.write(' none\n');
  else {
    printTable(s.activations, [
      { header: 'LV', value: (a) => a.lv },
      { header: 'Mode', value: (a) => a.mode },
      { header: 'LV lock', value: (a) => a.lock ?? '-' },
      { header: 'Since', value: (a) => a.activatedAt },
    ]);
  }
  process.stdout.write('\nLocks:\n');
  if (s.locks.length === 0) process.stdout.write(' none\n');
  else {
    printTable(s.locks, [
      { header: 'Resource', value: (l) => l.resource },
      { header: 'LkId', value: (l) => l.lockId, align: 'right' },
      { header: 'State', value: (l) => l.state },
      { header: 'Mode', value: (l) => l.mode ?? '-' },
      { header: 'Lost', value: (l) => l.lost ?? '' },
    ]);
  }
}

interface CtlOptions extends Record<string, unknown> {
  json: boolean;
  mode: string;
  timeout?: string;
  noqueue: boolean;
  cluster?: string;
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
  ).action(async (operands: string[], o: CtlOptions) => {
    // With --cluster the image may be left out: then the first operand is the node number.
    const imageGiven = o.cluster === undefined || !/^\d+$/.test(operands[0] ?? '');
    const cluster = clusterImage(imageGiven ? operands[0] : undefined, o.cluster);
    const [nodeText, command, ...args] = imageGiven ? operands.slice(1) : operands;
    if (nodeText === undefined || command === undefined) throw new UsageError('ctl: missing NODE or COMMAND (usage: ctl [IMAGE] NODE COMMAND [ARGS...])');
    const nodeId = nodeNumber(nodeText);
    const send = (req: Record<string, unknown>, timeoutMs?: number) => ctlRequest(cluster, nodeId, req, timeoutMs);
    const arg = (i: number, what: string): string => {
      const v = args[i];
      if (v === undefined) throw new UsageError(`ctl ${command}: missing ${what}`);
      return v;
    };
    switch (command) {
      case 'status': {
        const s = (await send({ cmd: 'status' })).status as NodeStatus;
        if (o.json) printJson(s);
        else printNodeStatus(s);
        return;
      }
      case 'leave': {
        await send({ cmd: 'leave' });
        if (o.json) printJson({ node: nodeId, leaving: true });
        else process.stdout.write(`Node ${nodeId} is leaving the cluster.\n`);
        return;
      }
      case 'fault': {
        const sub = arg(0, 'set | clear | ls');
        if (sub === 'set') {
          const ans = await send({ cmd: 'fault-set', ...ruleFromOptions(o) });
          if (o.json) printJson({ node: nodeId, id: ans.id });
          else process.stdout.write(`Fault rule '${String(ans.id)}' set on node ${nodeId}.\n`);
        } else if (sub === 'clear') {
          const ans = await send({ cmd: 'fault-clear', ...(args[1] !== undefined ? { id: args[1] } : {}) });
          if (o.json) printJson({ node: nodeId, cleared: ans.cleared });
          else process.stdout.write(`${String(ans.cleared)} fault rule(s) cleared on node ${nodeId}.\n`);
        } else if (sub === 'ls') {
          const rules = (await send({ cmd: 'fault-ls' })).rules as FaultRuleStatus[];
          if (o.json) printJson(rules);
          else printRules(rules);
        } else throw new UsageError(`ctl fault: expected set, clear or ls, not '${sub}'`);
        return;
      }
      case 'lock': {
        const resource = arg(0, 'RESOURCE');
        const timeoutMs = o.timeout !== undefined ? parseDurationMs(o.timeout) : (await readClusterImage(cluster)).timing.lockTimeoutMs;
        const ans = await send({ cmd: 'lock', resource, mode: o.mode, timeoutMs, noqueue: o.noqueue }, timeoutMs + CTL_ANSWER_TIMEOUT_MS);
        if (o.json) printJson({ node: nodeId, resource, mode: ans.mode, lockId: ans.lockId });
        else process.stdout.write(`Node ${nodeId} holds ${String(ans.mode)} on ${resource}.\n`);
        return;
      }
      case 'unlock': {
        const resource = arg(0, 'RESOURCE');
        await send({ cmd: 'unlock', resource });
        if (o.json) printJson({ node: nodeId, resource, released: true });
        else process.stdout.write(`Node ${nodeId} released ${resource}.\n`);
        return;
      }
      case 'mount':
      case 'umount': {
        // A relative image path is the caller's, not the node's.
        const volume = volumeKey(arg(0, 'VOLUME (an image, nbd://… or VG/LV)'));
        const boundMs = answerBoundMs(command, (await readClusterImage(cluster)).timing.lockTimeoutMs);
        const ans = await send({ cmd: command, args: [volume] }, boundMs);
        const m = (command === 'mount' ? ans.mounted : ans.unmounted) as MountStatus;
        if (o.json) printJson({ node: nodeId, ...m, mounted: command === 'mount' });
        else process.stdout.write(command === 'mount' ? `Node ${nodeId} mounted ${m.volume} in slot ${m.slot}${m.replayed ? ' (its dirty journal was replayed)' : ''}.\n` : `Node ${nodeId} unmounted ${m.volume} (slot ${m.slot} freed).\n`);
        return;
      }
      case 'fs': {
        const sub = arg(0, `one of ${FS_SUBCOMMANDS.join(', ')}`);
        if (!(FS_SUBCOMMANDS as readonly string[]).includes(sub)) throw new UsageError(`ctl fs: expected ${FS_SUBCOMMANDS.join(', ')}, not '${sub}'`);
        const volume = volumeKey(arg(1, 'VOLUME'));
        const target = arg(2, 'PATH on the volume');
        const local = args[3];
        if (sub === 'put' && local === undefined) throw new UsageError('ctl fs put: missing LOCALFILE');
        // The node reads and writes LOCALFILE itself (same host); a relative path is the caller's.
        const extra = local !== undefined && (sub === 'put' || sub === 'get') ? { localFile: path.resolve(local) } : {};
        const boundMs = answerBoundMs('fs', (await readClusterImage(cluster)).timing.lockTimeoutMs);
        const ans = await send({ cmd: 'fs', args: [sub, volume, target], ...extra }, boundMs);
        if (sub === 'get') {
          if (local === undefined) process.stdout.write(Buffer.from(String(ans.dataBase64), 'base64'));
        } else if (sub === 'ls') {
          const entries = ans.entries as { name: string; inode: number; mode: number; links: number; sizeBytes: string }[];
          if (o.json) printJson(entries);
          else {
            printTable(entries, [
              { header: 'Inode', value: (e) => e.inode, align: 'right' },
              { header: 'Mode', value: (e) => `0${e.mode.toString(8)}` },
              { header: 'Links', value: (e) => e.links, align: 'right' },
              { header: 'Size', value: (e) => e.sizeBytes, align: 'right' },
              { header: 'Name', value: (e) => e.name },
            ]);
          }
        } else {
          const done = ans.done as { path: string; inode: number; sequence: number };
          if (o.json) printJson({ node: nodeId, op: sub, ...done });
          else process.stdout.write(`Node ${nodeId}: ${sub} ${done.path} (inode ${done.inode}, journal transaction ${done.sequence}).\n`);
        }
        return;
      }
      default: {
        const ans = await send({ cmd: command, args });
        printJson(ans);
      }
    }
  });
}
