// LVM layout changes run as a cluster node (`lvextend|lvreduce|lvremove|pvmove --cluster C --node N`):
// the command runs as node N (through running node N, or joined as N for its lifetime:
// src/node/lvm-node.ts), takes the lock-out (src/volume/lockout.ts) through the node's locks, commits.

import { FormatError, SanboxError } from '../errors.js';
import { readVolumeMounts } from './status.js';
import { openTarget } from '../volume/resolve.js';
import { Ocfs2Volume } from '../fs/ocfs2-volume.js';
import { superLockResource } from '../fs/mount-rules.js';
import { layoutLockoutBoundMs, type Timing } from '../timing.js';
import type { VgModel } from '../format/lvm/vg-model.js';
import { withLayoutLockout, type LockoutOptions, type LockoutReport } from '../volume/lockout.js';
import { splitLvPath, withSession } from '../volume/manager.js';
import type { RunningNode } from './node.js';
import { withLvmNode } from './lvm-node.js';
import type { LockService } from '../volume/lvm-locks.js';
import { Mode } from '../dlm/compat-matrix.js';
import { DlmError } from '../dlm/lock-manager.js';
import { LockedLv } from '../volume/locked-lv.js';
import { localGuard, pvMove, pvMoveAbort, type ChunkDone, type ChunkGuard, type MoveRecord } from '../volume/pvmove.js';
import type { LvmContext } from '../volume/manager.js';
import type { LvmCluster } from '../volume/lvm-cluster.js';

export interface ClusterNodeOptions {
  clusterImage: string;
  nodeId: number;
  /** `sanbox ctl C N lvm …`: node N must be running. */
  requireRunning?: boolean;
  log?: (msg: string) => void;
}

/**
 * Runs `fn` as node N with its locks and timing: through running node N's control channel, or
 * joined as N for the command (src/node/lvm-node.ts).
 */
export async function asClusterNode<T>(o: ClusterNodeOptions, fn: (ls: LockService, timing: Timing, nodeId: number, clusterName: string, cluster: LvmCluster) => Promise<T>): Promise<T> {
  return withLvmNode({ clusterImage: o.clusterImage, nodeId: o.nodeId, requireRunning: o.requireRunning === true, ...(o.log !== undefined ? { log: o.log } : {}) }, (c) => fn(c.locks, c.timing, c.nodeId, c.clusterName, c));
}

/** The lock-out options of a change run as a node of a cluster with `timing`. */
export function lockoutOptions(timing: Timing, nowait: boolean, log?: (msg: string) => void): LockoutOptions {
  return { nowait, boundMs: layoutLockoutBoundMs(timing), vgTimeoutMs: timing.lockTimeoutMs, ...(log !== undefined ? { log } : {}) };
}

export interface LockedOutChangeOptions extends ClusterNodeOptions {
  nowait: boolean;
  /** The devices the VG is found on (the command's device list). */
  devices: string[];
  vg: string;
  /** The LVs whose layout the change touches. */
  lvs: string[];
  /**
   * The change destroys data at the end of the LVs or all of it (lvreduce, lvremove: the verb
   * for the message): refused while a node has an ocfs2 volume on one of them mounted, rather
   * than cutting the disk from under a file system. (lvextend and pvmove are not: a mounted
   * volume's node lets go, follows the change and resumes.)
   */
  refuseMounted?: string;
}

/**
 * Refuses to `verb` VG/LV while its ocfs2 volume's slot map names a node (mounted there, or that
 * node died mounted and its slot awaits recovery): one line naming the nodes, as lvm2 says an
 * open LV is "in use". An LV holding no ocfs2 has no mount to protect.
 *
 * The slot map is read under the volume's superblock lock (ocfs2's SUPER lock, the one a mount
 * holds EX while it reads the slot map and writes its entry, reference/ocfs2.md §6 "Mount order"),
 * taken PR, and on success that lock stays held — the caller releases it (the returned function)
 * once the change has committed. So the check and the change are one step for mounts: a mount that
 * wrote its entry before is seen and refuses the change, and one that comes later waits for the
 * lock and reads the volume as the change left it (a shorter device than its superblock says is
 * refused at mount; a removed LV fails its activation). Why this lock and not the LV's activation
 * lock: the mount already takes it, in the kernel's order, and the activation lock cannot say
 * "mounted" (a shared activation without a mount is only a reader or writer, which the lock-out
 * handles). Lock order: the VG lock, the superblock lock, the LV locks; a mount holds its LV's
 * activation and then waits for the superblock lock, and it needs neither the VG lock nor the LV
 * lock again until it lets go of the superblock lock, so the two never wait for each other.
 */
export async function refuseIfMounted(ls: LockService, lockTimeoutMs: number, devices: string[], vg: string, lv: string, verb: string): Promise<() => Promise<void>> {
  const spec = `${vg}/${lv}`;
  let resource: string;
  const dev = await openTarget(spec, { readOnly: true, guard: 'none', devices });
  try {
    // The lock's name needs the volume's uuid, which mkfs fixed: read without the lock.
    resource = superLockResource(await Ocfs2Volume.open(dev));
  } catch (err) {
    if (err instanceof FormatError) return async () => undefined;
    throw err;
  } finally {
    await dev.close();
  }
  const lock = await ls.lock(resource, Mode.PR, { timeoutMs: lockTimeoutMs }).catch((err: unknown) => {
    if (err instanceof DlmError && err.code === 'ETIMEDOUT') {
      throw new SanboxError('EBUSY', `${spec}: its ocfs2 volume is being mounted, unmounted or recovered (its superblock lock ${resource} was not had within ${lockTimeoutMs} ms); not changed`, { device: spec });
    }
    throw err;
  });
  try {
    const mounts = await readVolumeMounts([spec], devices);
    if (mounts.length > 0) {
      throw new SanboxError('EBUSY', `${spec} is in use: the ocfs2 volume on it is mounted by ${mounts.map((m) => `node ${m.node} (slot ${m.slot})`).join(', ')}; umount it there before you ${verb} it`, { device: spec });
    }
  } catch (err) {
    await lock.unlock().catch(() => undefined);
    if (err instanceof FormatError) return async () => undefined;
    throw err;
  }
  return async () => {
    await lock.unlock();
  };
}

/** Runs `change` as node N, locked out (VG EX, then each LV's lock EX); returns its result and what the lock-out cost. */
function vgReader(devices: string[], vg: string): () => Promise<VgModel> {
  return () => withSession(devices, { readOnly: true, guard: 'none' }, async (s) => s.vg(vg).vg);
}

export async function lockedOutChange<T>(o: LockedOutChangeOptions, change: (held: LvmCluster) => Promise<T>): Promise<{ result: T; report: LockoutReport }> {
  const readVg = vgReader(o.devices, o.vg);
  const affected = (vg: VgModel): { name: string; id: string }[] =>
    o.lvs.map((name) => {
      const lv = vg.lvs.find((l) => l.name === name);
      if (lv === undefined) throw new SanboxError('ENOENT', `logical volume ${o.vg}/${name} not found`);
      return { name, id: lv.id };
    });
  const verb = o.refuseMounted;
  return asClusterNode(o, (ls, timing, _nodeId, _clusterName, cluster) => {
    // Each LV's check holds its volume's superblock lock until the change has committed (refuseIfMounted).
    const refuse = verb === undefined ? undefined : async (lvs: { name: string }[]): Promise<() => Promise<void>> => {
      const held: (() => Promise<void>)[] = [];
      const releaseAll = async (): Promise<void> => {
        for (const r of held.reverse()) await r().catch(() => undefined);
      };
      try {
        for (const lv of lvs) held.push(await refuseIfMounted(ls, timing.lockTimeoutMs, o.devices, o.vg, lv.name, verb));
      } catch (err) {
        await releaseAll();
        throw err;
      }
      return releaseAll;
    };
    return (
    // The change commits as this node under the lock-out's VG lock (held already: vgLockHeld), so
    // it may change a shared or private VG and finds PVs in the cluster's device list.
    withLayoutLockout(ls, o.vg, affected, readVg, { ...lockoutOptions(timing, o.nowait, o.log), ...(refuse !== undefined ? { vet: refuse } : {}) }, () =>
      change({ ...cluster, vgLockHeld: o.vg }),
    ));
  });
}

/**
 * VG/LV for I/O in running node `node`: the LV's lock held in `mode` (PR beside other nodes, EX
 * alone) and given up to any layout change, which this device then follows (src/volume/locked-lv.ts).
 */
export async function openLockedLv(node: RunningNode, spec: string, mode: Mode.PR | Mode.EX, log?: (msg: string) => void): Promise<LockedLv> {
  const { vg, lv } = splitLvPath(spec);
  const ls = await node.lockspace();
  // I/O to an LV of a shared or private container waits for quorum (issue 18 item 6).
  const hold = await node.provider.quorumHoldFor(vg);
  return LockedLv.open(ls, vg, () => node.provider.openLv(vg, lv), { mode, lockTimeoutMs: node.info.timing.lockTimeoutMs, ...(log !== undefined ? { log } : {}), ...(hold !== undefined ? { hold } : {}) });
}

/**
 * Runs `run` as node N with a chunk guard that locks each step out (pvmove: every chunk its own
 * lock-out, so writers wait for one chunk at a time) and the node as the steps' LVM cluster
 * context (their commits run under the lock-out's VG lock: vgLockHeld); `onLockout` hears what
 * each lock-out cost.
 */
export async function asLockingOutNode<T>(
  o: ClusterNodeOptions & { nowait: boolean; devices: string[]; vg: string },
  run: (guard: ChunkGuard, held: LvmCluster) => Promise<T>,
  onLockout?: (r: LockoutReport) => void,
): Promise<T> {
  const readVg = vgReader(o.devices, o.vg);
  return asClusterNode(o, (ls, timing, _nodeId, _clusterName, cluster) =>
    run(
      async (affected, step) => {
        const { result, report } = await withLayoutLockout(ls, o.vg, affected, readVg, lockoutOptions(timing, o.nowait, o.log), step);
        onLockout?.(report);
        return result;
      },
      { ...cluster, vgLockHeld: o.vg },
    ),
  );
}

/** How one pvmove went: the extents it moved (0 for an abort) and, as a node, whom it locked out. */
export interface PvMoveDone {
  move: MoveRecord;
  aborted: boolean;
  chunks: number;
  /** As a node (--cluster): the nodes that let go for some chunk, and the longest lock-out. */
  lockedOut?: { holders: number[]; maxLockoutMs: number };
}

/**
 * pvmove's moves (or --abort of them), one after another. Without a cluster each chunk runs under
 * the host guard (src/volume/pvmove.ts localGuard); as node N every chunk is its own lock-out.
 */
export async function runPvMoves(
  o: { devices: string[]; moves: MoveRecord[]; abort: boolean; cluster?: ClusterNodeOptions & { nowait: boolean }; context: (held?: LvmCluster) => LvmContext },
  progress: (m: MoveRecord, c: ChunkDone, total: number) => void,
  done: (d: PvMoveDone) => void,
): Promise<void> {
  for (const m of o.moves) {
    const run = async (guard: ChunkGuard, held?: LvmCluster): Promise<number> => {
      if (!o.abort) return pvMove(o.devices, m, o.context(held), guard, (c, total) => progress(m, c, total));
      await pvMoveAbort(o.devices, m, o.context(held), guard);
      return 0;
    };
    if (o.cluster === undefined) {
      done({ move: m, aborted: o.abort, chunks: await run(localGuard(o.devices, m.vg)) });
      continue;
    }
    let maxLockoutMs = 0;
    const holders = new Set<number>();
    const chunks = await asLockingOutNode({ ...o.cluster, devices: o.devices, vg: m.vg }, run, (r) => {
      maxLockoutMs = Math.max(maxLockoutMs, r.lockoutMs);
      for (const h of r.holders) holders.add(h);
    });
    done({ move: m, aborted: o.abort, chunks, lockedOut: { holders: [...holders].sort((a, b) => a - b), maxLockoutMs } });
  }
}
