// An LVM command run as a node of a cluster (`--cluster C --node N`, or `ctl C N lvm …`): which
// cluster locks it takes around its read-modify-commit, and how it keeps the cluster's device list
// (src/volume/cluster-devices.ts) in step. The lock names and modes are lvm-locks.ts's; the table
// of what each command takes is lvm2.md §7.3's:
//
//   vgcreate, vgremove, vgextend, vgreduce   GL ex, then VG ex
//   any other metadata change               VG ex
//   reports                                 GL sh, then VG sh on each shared or private VG read
//
// The host-local flock (vg-lock.ts) is taken too, first, as without a cluster: it keeps two
// commands of this host apart even when one runs without --cluster. With a cluster, the cluster
// locks are taken for every VG a change names: the container kind is known only from metadata,
// and metadata read before the VG lock is not to be trusted (a kind change may be in flight).
//
// After an ex change the VG lock's value block gets the new seqno (lvmlockd's val_blk). Devices
// are scanned under the lock, from the command's own list plus the cluster's device list read
// after the lock was granted, so a PV another node added is found; if the scan still shows an
// older seqno than the value block, a PV of the VG is reachable from nowhere here, and the command
// stops rather than commit over metadata it cannot see.

import fs from 'node:fs';
import path from 'node:path';
import { InUseGuard, lockHolders } from '../disk/in-use-guard.js';
import type { BlockDevice } from '../disk/device.js';
import { schemeOf } from '../disk/open.js';
import type { PreemptResult } from '../disk/reservations.js';
import { SanboxError, UsageError } from '../errors.js';
import type { VgModel } from '../format/lvm/vg-model.js';
import { listedName, readClusterDevices, updateClusterDevices, withVgPvs } from './cluster-devices.js';
import { dlmVgLockArgs, withGlobalLock, withVgLock, type LockService, type VgLockHold } from './lvm-locks.js';
import type { PvState } from './pv.js';
import { deviceList, type OpenAllOptions } from './devices.js';
import type { Timing } from '../timing.js';
import { ORPHAN_LOCK, vgLockName, withLocks } from './vg-lock.js';

/** The node an LVM command runs as, and where its cluster's shared state is. */
export interface LvmCluster {
  /** Node N's locks: taken in this process (joined for the command) or in node N (its control channel). */
  readonly locks: LockService;
  readonly nodeId: number;
  readonly clusterName: string;
  /** The cluster image (a path, or the joined node's fenced device of it): the device list lives there. */
  readonly image: string | BlockDevice;
  /** Bound on each wait for the global and VG locks (the cluster's lock timeout). */
  readonly lockTimeoutMs: number;
  /** The cluster's timing (the lock-out's bound derives from it). */
  readonly timing: Timing;
  /**
   * The VG whose lock the caller holds ex already (a layout change's lock-out, src/volume/lockout.ts,
   * which writes the value block itself): a change of that VG takes no cluster lock again.
   */
  readonly vgLockHeld?: string;
  /**
   * Opens a device for the change (the joined node's provider): the metadata writes then pass
   * node N's fence gate, so a fenced node's command writes nothing more. Default: openDevice.
   */
  readonly open?: (spec: string) => Promise<BlockDevice>;
  /**
   * Through running node N: a container takeover's preempt of the fenced owner's key on a PV,
   * issued by node N with its key under its fence (src/node/remote-device.ts dev-preempt), like
   * every other device write of the command. Unset when joined as N: this process is N's
   * incarnation and preempts on behalf of the cluster itself (src/node/failover.ts).
   */
  readonly preempt?: (spec: string, victimNode: number, victimKey: bigint) => Promise<PreemptResult | null>;
  /**
   * Opens a device for pvcreate or pvremove, which need it to themselves: a running node's
   * exclusive open, checked by the node. Default: openExclusively over `open`, in this process.
   */
  readonly openExclusive?: (spec: string) => Promise<BlockDevice>;
}

/** The devices the cluster lists, by their listed names ([] for an image without the list). */
export async function clusterDeviceSpecs(cluster: Pick<LvmCluster, 'image'>): Promise<string[]> {
  // A listed image file that is gone (deleted with its PV) is skipped, as lvm2 skips a devices-file
  // entry whose device is missing; the VG it belonged to then shows the PV missing.
  return ((await readClusterDevices(cluster.image)) ?? []).map((e) => e.device).filter((d) => schemeOf(d) !== undefined || fs.existsSync(d));
}

/**
 * The devices an LVM command looks at: those it names, --devices (else SANBOX_DEVICES) and, run as
 * a node of the cluster image `clusterImage`, the cluster's device list (the PVs other nodes
 * added). One policy for every command, local or --cluster (review finding 9). Throws a
 * UsageError saying where devices come from when there are none.
 */
export async function commandDevices(named: string[], devicesOption: string | undefined, clusterImage: string | BlockDevice | undefined): Promise<string[]> {
  const own = deviceList(named, devicesOption);
  const list = clusterImage === undefined ? own : mergeSpecs(own, await clusterDeviceSpecs({ image: clusterImage }));
  if (list.length === 0) throw new UsageError(`${NO_DEVICES}${clusterImage !== undefined ? "; the cluster's device list is empty too" : ''}`);
  return list;
}

/** Why an LVM command has nothing to look at, and where devices come from. */
export const NO_DEVICES = 'no devices to look at: name image files, pass --devices a.img,b.img, set SANBOX_DEVICES, or add them with sanbox lvmdevices --adddev';

/** `a` then every spec of `b` not already in `a` (by listed name). */
export function mergeSpecs(a: string[], b: string[]): string[] {
  const seen = new Set(a.map(listedName));
  return [...a, ...b.filter((s) => !seen.has(listedName(s)))];
}

/** What a change under the VG (and maybe global) lock sees and reports. */
export interface VgChangeHold {
  readonly cluster: LvmCluster | undefined;
  /** The devices to scan: the command's, then the cluster's device list as read under the lock. */
  readonly devices: string[];
  /** How to open them (through the node's provider when it is in this process). */
  readonly openOptions: OpenAllOptions;
  /** Throws if the scanned VG is older than the VG lock's value says (a PV is reachable from nowhere here). */
  checkScanned(vg: VgModel | undefined): void;
  /** After a commit: the seqno into the value block; the VG's PVs into the device list (GL ex holders). */
  committed(vg: VgModel, pvs: PvState[], leaving?: PvState[]): Promise<void>;
  /** After vgremove: VBF_REMOVED into the value block; its PVs listed as orphans. */
  removedVg(pvs: PvState[]): Promise<void>;
}

function pvRef(pv: PvState): { device: string; pvUuid: string } {
  return { device: listedName(pv.dev.name), pvUuid: pv.label.pvId };
}

/** A shared or private VG of another cluster (or of none that we know) is not ours to change. */
export function checkClusterOwnsVg(vg: VgModel, cluster: LvmCluster): void {
  const ours = vg.systemId !== undefined ? vg.systemId.startsWith(`${cluster.clusterName}-node`) : vg.lockArgs === dlmVgLockArgs(cluster.clusterName);
  if (!ours) {
    const what = vg.systemId !== undefined ? `owned by system ${vg.systemId}` : `shared with lock args ${vg.lockArgs ?? '(none)'}`;
    throw new SanboxError('EINVAL', `volume group ${vg.name} is ${what}, not a container of cluster '${cluster.clusterName}'; node ${cluster.nodeId} does not change it`);
  }
}

/**
 * Runs `fn` holding the host flock of `vg` (and of the orphan PVs with `global`), and, with a
 * cluster, the global lock ex (with `global`) and the VG lock ex.
 */
export async function withVgChangeLocks<T>(cluster: LvmCluster | undefined, specs: string[], plan: { vg: string; global: boolean }, fn: (hold: VgChangeHold) => Promise<T>): Promise<T> {
  const host = [vgLockName(plan.vg), ...(plan.global ? [ORPHAN_LOCK] : [])];
  if (cluster === undefined) {
    return withLocks(host, () =>
      fn({
        cluster: undefined,
        devices: specs,
        openOptions: {},
        checkScanned: () => undefined,
        committed: async () => undefined,
        removedVg: async () => undefined,
      }),
    );
  }
  const wait = { timeoutMs: cluster.lockTimeoutMs };
  if (cluster.vgLockHeld !== undefined) {
    if (cluster.vgLockHeld !== plan.vg || plan.global) throw new SanboxError('EINVAL', `a change of ${plan.vg}${plan.global ? ' under the global lock' : ''} inside the lock-out of ${cluster.vgLockHeld}`);
    // The holder's value block: no check against it here (the lock-out read the VG under it) and no write.
    const held: VgLockHold = { vg: plan.vg, mode: 'ex', value: undefined, valueInvalid: false, committed: () => undefined, removed: () => undefined };
    return withLocks(host, () => withHeldVg(cluster, specs, plan, held, fn));
  }
  const underVg = (vgHold: VgLockHold): Promise<T> => withHeldVg(cluster, specs, plan, vgHold, fn);
  return withLocks(host, () =>
    plan.global ? withGlobalLock(cluster.locks, 'ex', () => withVgLock(cluster.locks, plan.vg, 'ex', underVg, wait), wait) : withVgLock(cluster.locks, plan.vg, 'ex', underVg, wait),
  );
}

async function withHeldVg<T>(cluster: LvmCluster, specs: string[], plan: { vg: string; global: boolean }, vgHold: VgLockHold, fn: (hold: VgChangeHold) => Promise<T>): Promise<T> {
  const devices = mergeSpecs(specs, await clusterDeviceSpecs(cluster));
  const listChange = async (change: Parameters<typeof updateClusterDevices>[1]): Promise<void> => {
    // Only a global-lock holder changes which PVs a VG has, and so the list (lvm2.md §7.3).
    if (plan.global) await updateClusterDevices(cluster.image, change);
  };
  return fn({
    cluster,
    devices,
    openOptions: cluster.open !== undefined ? { open: cluster.open } : {},
    checkScanned: (vg) => checkAgainstValue(plan.vg, vg, vgHold, cluster),
    committed: async (vg, pvs, leaving = []) => {
      await listChange((entries) => withVgPvs(entries, vg.name, pvs.map(pvRef), leaving.map(pvRef)));
      vgHold.committed(vg.seqno);
    },
    removedVg: async (pvs) => {
      await listChange((entries) => withVgPvs(entries, plan.vg, [], pvs.map(pvRef)));
      vgHold.removed();
    },
  });
}

/** The VG read under the lock must be at least as new as the seqno the value block carries. */
export function checkAgainstValue(name: string, vg: VgModel | undefined, hold: Pick<VgLockHold, 'value'>, cluster: LvmCluster): void {
  const v = hold.value;
  if (v === undefined || v.removed) return;
  const seen = vg?.seqno;
  if (seen !== undefined && seen >= v.seqno) return;
  throw new SanboxError(
    'ENOENT',
    `volume group ${name}: its VG lock says seqno ${v.seqno} was committed, but the devices node ${cluster.nodeId} can reach show ${seen === undefined ? 'no such VG' : `seqno ${seen}`}: a PV of it is missing from the cluster's device list and from --devices; nothing was changed`,
  );
}

/** pvcreate, pvremove: the host's orphan-PV flock and, with a cluster, the global lock ex. */
export async function withOrphanLocks<T>(cluster: LvmCluster | undefined, fn: () => Promise<T>): Promise<T> {
  return withLocks([ORPHAN_LOCK], () => (cluster === undefined ? fn() : withGlobalLock(cluster.locks, 'ex', fn, { timeoutMs: cluster.lockTimeoutMs })));
}

/**
 * pvcreate and pvremove as a node of the cluster (holding the global lock ex, withOrphanLocks):
 * the devices they wrote leave the cluster's device list, whose entry for one named the PV they
 * replaced or wiped. A running node opens a listed device for a client only if it carries the
 * listed PV uuid (src/node/remote-device.ts), so a stale entry would lock every later command out.
 */
export async function unlistDevices(cluster: LvmCluster | undefined, devices: string[]): Promise<void> {
  if (cluster === undefined) return;
  const names = new Set(devices.map(listedName));
  const cur = await readClusterDevices(cluster.image);
  if (cur === undefined || !cur.some((e) => names.has(e.device))) return;
  await updateClusterDevices(cluster.image, (entries) => entries.filter((e) => !names.has(e.device)));
}

/**
 * How pvcreate and pvremove open their devices: they need them to themselves (a device another
 * process has open is neither formatted nor wiped). Without a node: the in-use guard, exclusively.
 * As node N every write must pass N's fence gate, so the devices are opened through N: by a
 * running node, which checks exclusivity itself (`openExclusive`: the dev-open's exclusive form,
 * src/node/remote-device.ts: a node does not take a client's word that a device is free), or by
 * this process joined as N (openExclusively below, with its provider's open).
 */
export function exclusiveOpenOptions(cluster: LvmCluster | undefined): OpenAllOptions {
  const open = cluster?.open;
  if (cluster === undefined || open === undefined) return { guard: 'exclusive' };
  return { open: cluster.openExclusive ?? ((spec) => openExclusively(spec, open, cluster.nodeId)) };
}

/**
 * Opens `spec` with `open` (a node's provider, which holds it shared) only if nobody has it open
 * before (the in-use guard probes exclusively and lets go), and once open, nobody but this process
 * holds it (the flock holders, /proc/locks). A device that fails either check is closed again,
 * nothing written (one line naming the holders). An nbd:// export has no local holders to ask.
 */
export async function openExclusively(spec: string, open: (spec: string) => Promise<BlockDevice>, nodeId: number): Promise<BlockDevice> {
  const file = schemeOf(spec) === undefined ? path.resolve(spec) : undefined;
  if (file !== undefined) InUseGuard.acquire(file, 'exclusive').release();
  const dev = await open(spec);
  const others = file === undefined ? [] : lockHolders(file).filter((pid) => pid !== process.pid);
  if (others.length > 0) {
    await dev.close();
    throw new SanboxError('EBUSY', `${spec}: device busy: opened by another process (pid ${others.join(', ')}) while node ${nodeId} opened it; nothing written`, { device: spec });
  }
  return dev;
}
