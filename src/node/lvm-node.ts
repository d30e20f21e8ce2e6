// An LVM command run as node N of a cluster (`--cluster C --node N`, and `sanbox ctl C N lvm …`),
// in lvmlockd's split (reference/lvm2.md §7.1): the command reads the metadata and computes the
// change in its own process, and its locks and its writes belong to node N:
//   - node N runs here: the locks are taken by node N, through its control channel, tied to this
//     connection (the node releases them if this process goes away), as lvm commands ask lvmlockd;
//     and every device is opened, read and written by node N through its provider, over the same
//     connection (src/node/remote-device.ts), so node N's fence gate covers the command's writes
//     and N releases the locks of a command that died only after the writes it had sent;
//   - node N is not running: this process joins as node N for the command (src/node/lock-run.ts's
//     withJoinedNode, as `sanbox lock` does), heartbeating and fenceable, and leaves after it.
// Activation is different: an active LV's lock is held persistently by a running node, so
// activation is always asked of the running node (src/node/activation.ts).

import { modeName, parseMode, type Mode } from '../dlm/compat-matrix.js';
import { DlmError, type LockOptions, type ReleaseOptions } from '../dlm/lock-manager.js';
import { SanboxError } from '../errors.js';
import { pauseAt } from '../disk/pause-point.js';
import { readClusterImage, type ClusterImageInfo } from '../heartbeat/cluster-image.js';
import type { HeldLock, LockService, LvmMode } from '../volume/lvm-locks.js';
import type { LvmCluster } from '../volume/lvm-cluster.js';
import { connectNode, CTL_ANSWER_TIMEOUT_MS, ctlRequest, type NodeConnection } from './ctl.js';
import { registerAsClient } from './clients.js';
import { NodeDevices } from './remote-device.js';
import { withJoinedNode } from './lock-run.js';
import type { ActivationStatus } from './node.js';
import { slotLockHeld } from './slot-lock.js';
import { slotState } from './slot-state.js';

/** Locks of a running node, asked for through its control channel (`lock`/`unlock`, scope connection). */
class ControlLocks implements LockService {
  constructor(
    private readonly c: NodeConnection,
    readonly nodeId: number,
    private readonly defaultTimeoutMs: number,
  ) {}

  async lock(resource: string, mode: Mode, opts: LockOptions = {}): Promise<HeldLock> {
    // Whole milliseconds on the wire (a caller's remaining budget is fractional).
    const timeoutMs = Math.max(0, Math.floor(opts.timeoutMs ?? this.defaultTimeoutMs));
    let ans: Record<string, unknown>;
    try {
      ans = await this.c.request({ cmd: 'lock', resource, mode: modeName(mode), timeoutMs, noqueue: opts.noqueue === true, scope: 'connection' }, timeoutMs + CTL_ANSWER_TIMEOUT_MS);
    } catch (err) {
      // The node's answer is text: its lock manager's refusals keep their DLM codes here, so a
      // caller tells "would block" and "timed out" from other failures as with a local lockspace.
      const msg = (err as Error).message;
      if (/would block \(NOQUEUE\)/.test(msg)) throw new DlmError('EAGAIN', msg);
      if (/ timed out/.test(msg)) throw new DlmError('ETIMEDOUT', msg);
      throw err;
    }
    const lvb = typeof ans.lvb === 'string' ? Buffer.from(ans.lvb, 'hex') : Buffer.alloc(0);
    const c = this.c;
    let held: Mode | null = mode;
    return {
      get mode() {
        return held;
      },
      lvb,
      lvbValid: ans.lvbValid !== false,
      async unlock(o: ReleaseOptions = {}) {
        await c.request({ cmd: 'unlock', resource, ...(o.lvb !== undefined ? { lvb: o.lvb.toString('hex') } : {}) });
        held = null;
      },
    };
  }

  /**
   * Who else holds `resource`, as node N's lockspace sees it (Lockspace.holders: fenced incarnations
   * left out, which a raw snapshot cannot tell): a lock-out refuses or names holders by it.
   */
  async holders(resource: string): Promise<{ nodeId: number; mode: Mode }[]> {
    const ans = await this.c.request({ cmd: 'holders', resource });
    const list = Array.isArray(ans.holders) ? (ans.holders as unknown[]) : [];
    return list.map((h) => {
      const e = h as { nodeId?: unknown; mode?: unknown };
      const mode = typeof e.mode === 'string' ? parseMode(e.mode) : undefined;
      if (typeof e.nodeId !== 'number' || mode === undefined) throw new SanboxError('EINVAL', `node ${this.nodeId}: a bad holders answer for ${resource}: ${JSON.stringify(h)}`);
      return { nodeId: e.nodeId, mode };
    });
  }
}

export interface LvmNodeOptions {
  clusterImage: string;
  nodeId: number;
  /** `sanbox ctl C N lvm …`: node N must be running (a stopped one is the usual one-line ctl error). */
  requireRunning?: boolean;
  log?: (msg: string) => void;
}

/** Runs `fn` as node N: through the running node's control channel, or joined for the command. */
export async function withLvmNode<T>(o: LvmNodeOptions, fn: (cluster: LvmCluster) => Promise<T>): Promise<T> {
  const info = await readClusterImage(o.clusterImage);
  if (!Number.isInteger(o.nodeId) || o.nodeId < 0 || o.nodeId >= info.config.nodeCount) {
    throw new SanboxError('EINVAL', `${o.clusterImage}: cluster '${info.config.clusterName}' has nodes 0..${info.config.nodeCount - 1}, not ${o.nodeId}`);
  }
  const base = { nodeId: o.nodeId, clusterName: info.config.clusterName, lockTimeoutMs: info.timing.lockTimeoutMs, timing: info.timing };
  if (o.requireRunning || slotLockHeld(info, o.nodeId)) {
    // Every device the command opens — the PVs and the cluster image (its device list) — is
    // opened and written by node N (src/node/remote-device.ts): N's fence gate covers them. Its
    // locks go over the same connection, in the same order: should this process die, N releases
    // them only after the writes it sent before (remote-device.ts NodeDevices.connection).
    const devices = new NodeDevices(await connectNode(o.clusterImage, o.nodeId));
    const c = devices.connection;
    try {
      pauseAt('node-connected', `connected to node ${o.nodeId}, before it registers as its client`);
      // First of all, before the command takes a lock or the host's VG flock: a fence of node N
      // kills this process from now on (src/node/clients.ts).
      await registerAsClient(c);
      return await fn({
        ...base,
        locks: new ControlLocks(c, o.nodeId, info.timing.lockTimeoutMs),
        image: await devices.open(info.path),
        open: (spec) => devices.open(spec),
        preempt: (spec, victimNode, victimKey) => devices.preempt(spec, victimNode, victimKey),
        // pvcreate, pvremove: node N checks that nobody else has the device open (remote-device.ts).
        openExclusive: (spec) => devices.open(spec, { exclusive: true }),
      });
    } catch (err) {
      throw await fencedMeanwhile(info, o.nodeId, err);
    } finally {
      devices.close();
    }
  }
  let fenced: string | undefined;
  let out: T;
  try {
    out = await withJoinedNode({ clusterImage: o.clusterImage, nodeId: o.nodeId, log: o.log ?? (() => {}), onSelfFence: (r) => (fenced = r) }, async (node) =>
      // Every device the command writes goes through the node's provider: its fence gate (and the
      // node's heartbeat lease, provider.ts addLease) covers them.
      fn({ ...base, locks: await node.lockspace(), image: node.device, open: (spec) => node.provider.open(spec) }),
    );
  } catch (err) {
    if (fenced === undefined) throw err;
    throw fencedError(o.nodeId, `${fenced}; ${(err as Error).message}`, err);
  }
  if (fenced !== undefined) throw fencedError(o.nodeId, fenced);
  return out;
}

/** One line: node N was fenced while the command ran, so what it had not written by then was refused. */
function fencedError(nodeId: number, why: string, cause?: unknown): SanboxError {
  return new SanboxError('EFENCED', `node ${nodeId} was fenced while the command ran; its fence gate refused what the command had not written by then: check the VG with vgs (${why})`, { cause });
}

/**
 * A command through running node N failed: if N was fenced meanwhile (its gate refused the write,
 * or N is gone and its slot says fenced), one line saying so; else the error as it was.
 */
async function fencedMeanwhile(info: ClusterImageInfo, nodeId: number, err: unknown): Promise<unknown> {
  const refused = err instanceof SanboxError && err.code === 'EFENCED';
  if (!refused && (await slotState(info, nodeId)) !== 'fenced') return err;
  return fencedError(nodeId, (err as Error).message, err);
}

/**
 * `lvchange -a…` as node N: asked of the running node, which holds the LV lock until -an. A node
 * that is not running cannot hold it: one line saying so.
 */
export async function changeActivation(o: LvmNodeOptions & { lv: string; mode: LvmMode | 'un'; devices?: string[] }): Promise<ActivationStatus> {
  const info = await readClusterImage(o.clusterImage);
  if (!slotLockHeld(info, o.nodeId)) {
    throw new SanboxError('EINVAL', `${o.lv}: activation needs node ${o.nodeId} of cluster '${info.config.clusterName}' running (it holds the LV lock until deactivation): start it with sanbox node, then lvchange through it`);
  }
  // An LV lock conflict fails at once; the VG lock read before it may wait up to the lock timeout.
  const boundMs = info.timing.lockTimeoutMs + CTL_ANSWER_TIMEOUT_MS;
  const ans =
    o.mode === 'un'
      ? await ctlRequest(o.clusterImage, o.nodeId, { cmd: 'lv-deactivate', lv: o.lv }, boundMs)
      : await ctlRequest(o.clusterImage, o.nodeId, { cmd: 'lv-activate', lv: o.lv, mode: o.mode, devices: o.devices ?? [] }, boundMs);
  return (ans.activated ?? ans.deactivated) as ActivationStatus;
}
