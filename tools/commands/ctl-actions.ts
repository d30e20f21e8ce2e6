// `sanbox ctl`'s action, loaded when it runs (tools/commands/ctl.ts registers it). It loads no
// node runtime: what it computes here (a volume's key, the fs operation names) is in small modules.

import path from 'node:path';
import type { DeviceStatus, FaultRuleStatus } from '../../src/node/provider.js';
import type { MountStatus, NodeStatus } from '../../src/node/node.js';
import { FS_SUBCOMMANDS } from '../../src/node/fs-subcommands.js';
import { volumeKey } from '../../src/node/volume-key.js';
import { answerBoundMs, ctlRequest } from '../../src/node/ctl.js';
import { CTL_ANSWER_TIMEOUT_MS } from '../../src/timing.js';
import { readClusterImage } from '../../src/heartbeat/cluster-image.js';
import { UsageError } from '../../src/errors.js';
import { parseDurationMs } from '../../src/units.js';
import { clusterImage, nodeNumber } from '../image-arg.js';
import { printFields, printJson, printSection, printTable } from '../output.js';
import { printRules, ruleFromOptions } from './fault-rules.js';

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
  printSection('Mounts', s.mounts, [
    { header: 'Volume', value: (m) => m.volume },
    { header: 'UUID', value: (m) => m.uuid },
    { header: 'Slot', value: (m) => m.slot, align: 'right' },
    { header: 'Since', value: (m) => m.mountedAt },
  ]);
  printSection('Active LVs', s.activations, [
    { header: 'LV', value: (a) => a.lv },
    { header: 'Mode', value: (a) => a.mode },
    { header: 'LV lock', value: (a) => a.lock ?? '-' },
    { header: 'Since', value: (a) => a.activatedAt },
  ]);
  printSection('Locks', s.locks, [
    { header: 'Resource', value: (l) => l.resource },
    { header: 'LkId', value: (l) => l.lockId, align: 'right' },
    { header: 'State', value: (l) => l.state },
    { header: 'Mode', value: (l) => l.mode ?? '-' },
    { header: 'Lost', value: (l) => l.lost ?? '' },
  ]);
}

interface CtlOptions extends Record<string, unknown> {
  json: boolean;
  mode: string;
  timeout?: string;
  noqueue: boolean;
  cluster?: string;
}

export async function ctl(operands: string[], o: CtlOptions): Promise<void> {
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
}
