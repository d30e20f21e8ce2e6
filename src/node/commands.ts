// The node's own control commands (`sanbox ctl CLUSTER NODE COMMAND`): status, leave, fault
// set|clear|ls on the node's devices, lock/unlock held in the node. Later layers register theirs
// on the same server (control.handle), e.g. mount or lv changes.
//
// Requests are validated here, at the edge: a field of the wrong type is an error answer, never a
// crash of the node.

import type { FaultAction, FaultOp, FaultRule } from '../disk/fault-device.js';
import { modeName, MODE_NAMES, parseMode } from '../dlm/compat-matrix.js';
import type { Lock } from '../dlm/lock-manager.js';
import { SanboxError } from '../errors.js';
import type { ControlServer } from './control.js';
import type { RunningNode } from './node.js';
import { registerClientCommands } from './clients.js';
import { registerDeviceCommands } from './remote-device.js';

const FAULT_ACTIONS: readonly FaultAction[] = ['eio', 'latency', 'stall', 'torn'];
const FAULT_OPS: readonly FaultOp[] = ['read', 'write', 'any'];
/** Bound on the locks the control channel holds in one node (each takes a slot of the node's lockspace record). */
const CONTROL_LOCKS_MAX = 32;

function str(req: Record<string, unknown>, k: string, required = true): string | undefined {
  const v = req[k];
  if (v === undefined && !required) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw new SanboxError('EINVAL', `"${k}" must be a non-empty string`);
  return v;
}

function uint(req: Record<string, unknown>, k: string): number | undefined {
  const v = req[k];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new SanboxError('EINVAL', `"${k}" must be a non-negative integer`);
  return v;
}

/** A fault rule from a request: the same fields as a SANBOX_FAULTS control file rule. */
export function faultRuleFrom(req: Record<string, unknown>): FaultRule {
  const action = str(req, 'action') as FaultAction;
  if (!FAULT_ACTIONS.includes(action)) throw new SanboxError('EINVAL', `"action" must be one of ${FAULT_ACTIONS.join(', ')}`);
  const op = (str(req, 'op', false) ?? 'any') as FaultOp;
  if (!FAULT_OPS.includes(op)) throw new SanboxError('EINVAL', `"op" must be one of ${FAULT_OPS.join(', ')}`);
  const rule: FaultRule = { action, op };
  const id = str(req, 'id', false);
  if (id !== undefined) rule.id = id;
  const device = str(req, 'device', false);
  if (device !== undefined) rule.device = device;
  for (const k of ['offsetBytes', 'lengthBytes', 'afterOps', 'count', 'latencyMs', 'tornSectors'] as const) {
    const v = uint(req, k);
    if (v !== undefined) rule[k] = v;
  }
  return rule;
}

export function registerNodeCommands(control: ControlServer, node: RunningNode): void {
  control.handle('status', () => ({ status: node.status() }));
  control.handle('leave', () => {
    setImmediate(() => void node.stop());
    return { leaving: true };
  });

  control.handle('fault-set', (req) => ({ id: node.provider.setFault(faultRuleFrom(req)) }));
  control.handle('fault-clear', (req) => ({ cleared: node.provider.clearFault(str(req, 'id', false)) }));
  control.handle('fault-ls', () => ({ rules: node.provider.faults() }));

  // A command run under this node's lock (sanbox lock --node N while N runs) is recorded as the
  // node's command group: a fencer kills it with the node.
  control.handle('adopt-group', async (req) => {
    const pgid = uint(req, 'pgid') ?? 0;
    const ticks = str(req, 'startTicks', false) ?? '0';
    if (!/^\d+$/.test(ticks)) throw new SanboxError('EINVAL', '"startTicks" must be a decimal string');
    await node.recordCommandGroup(pgid, BigInt(ticks));
    return { pgid };
  });

  // Locks held in the node for scripts and tests. scope 'connection' (sanbox lock --node N through
  // a running node) releases the lock when the client's connection closes.
  const held = new Map<string, Lock>();
  control.handle('lock', async (req, ctx) => {
    const resource = str(req, 'resource')!;
    const modeText = str(req, 'mode', false) ?? 'EX';
    const mode = parseMode(modeText);
    if (mode === undefined) throw new SanboxError('EINVAL', `"mode" must be one of ${MODE_NAMES.join(', ')}, not '${modeText}'`);
    if (held.has(resource)) throw new SanboxError('EBUSY', `node ${node.nodeId} holds ${resource} through its control channel already`);
    if (held.size >= CONTROL_LOCKS_MAX) throw new SanboxError('EINVAL', `node ${node.nodeId} holds ${CONTROL_LOCKS_MAX} locks for its control channel already`);
    const scope = str(req, 'scope', false) ?? 'node';
    if (scope !== 'node' && scope !== 'connection') throw new SanboxError('EINVAL', `"scope" must be node or connection`);
    const ls = await node.lockspace();
    const timeoutMs = uint(req, 'timeoutMs') ?? node.info.timing.lockTimeoutMs;
    const lock = await ls.lock(resource, mode, { noqueue: req.noqueue === true, timeoutMs });
    held.set(resource, lock);
    if (scope === 'connection') {
      ctx.onClose(() => {
        if (held.get(resource) !== lock) return;
        held.delete(resource);
        void lock.unlock().catch(() => undefined);
      });
    }
    // The value block as granted (an LVM command reads the VG lock's val_blk from it).
    return { resource, mode: modeName(mode), lockId: lock.lockId, lvb: lock.lvb.toString('hex'), lvbValid: lock.lvbValid };
  });
  control.handle('unlock', async (req) => {
    const resource = str(req, 'resource')!;
    const lock = held.get(resource);
    if (lock === undefined) throw new SanboxError('EINVAL', `node ${node.nodeId} holds no lock on ${resource} for its control channel`);
    const lvbHex = str(req, 'lvb', false);
    if (lvbHex !== undefined && !/^([0-9a-f]{2})+$/i.test(lvbHex)) throw new SanboxError('EINVAL', '"lvb" must be hex bytes');
    held.delete(resource);
    // A new value block is written when the lock is held PW or EX (DLM VALBLK): an LVM command's new VG seqno.
    await lock.unlock(lvbHex === undefined ? {} : { lvb: Buffer.from(lvbHex, 'hex') });
    return { resource, released: true };
  });

  // Who holds a resource, as this node's lockspace sees it (fenced incarnations left out), this
  // node included: an LVM command through this node names the holders of an LV lock with it (its
  // own node left out there), and refuses a layout change while any node, this one too, holds the
  // LV's open claim (src/volume/open-claim.ts: this node's --volume VG/LV, whatever lock directory
  // the command's process uses).
  control.handle('holders', async (req) => {
    const resource = str(req, 'resource')!;
    const ls = await node.lockspace();
    const own = ls.heldLocks().filter((l) => l.name === resource && l.mode !== null).map((l) => ({ nodeId: node.nodeId, mode: l.mode! }));
    const holders = [...own, ...(await ls.holders(resource))];
    return { resource, holders: holders.map((h) => ({ nodeId: h.nodeId, mode: modeName(h.mode) })) };
  });

  // An LVM command run as this node does its device I/O through this node's provider (its fence gate).
  registerDeviceCommands(control, node);
  // ... and is recorded as the node's client, so the power fence kills it with the node.
  registerClientCommands(control, node);
}
