// LVM operations over a device list: pvcreate/pvremove, vgcreate/vgextend/vgreduce/vgremove,
// lvcreate/lvextend/lvreduce/lvrename/lvremove, and the reports behind pvs/vgs/lvs. Every VG
// change is built as a new VgModel and handed to commitVg (vg.ts), the single writer.

import crypto from 'node:crypto';
import os from 'node:os';
import type { BlockDevice } from '../disk/index.js';
import { SanboxError } from '../errors.js';
import { LABEL_SECTOR_BYTES } from '../format/lvm/label.js';
import { idFromRandom } from '../format/lvm/uuid.js';
import { LVM_SECTOR_BYTES, lvExtentCount, newVgModel, vgTotalExtents, type LvModel, type VgModel } from '../format/lvm/vg-model.js';
import { reservedLvName } from '../format/lvm/vg-check.js';
import { isValidLvmName } from '../format/lvm/vg-text.js';
import { allocateSegments, checkNoOverlap, freeExtents, mergeSegments, reduceSegments, roundToStripes, STRIPE_SIZE_MIN_SECTORS, type AllocOptions } from './allocator.js';
import { openAll, type OpenAllOptions } from './devices.js';
import { makeLvDevice, mapLv, type LvDevice, type LvLayout } from './lv-device.js';
import { checkBlank, planPvLayout, wipePv, writeNewPv, type PvLayoutOptions, type PvState } from './pv.js';
import { acquireLvGuard, type LvGuardMode } from './vg-lock.js';
import { DLM_LV_LOCK_ARGS, withGlobalLock, withVgLock, type VgLockHold } from './lvm-locks.js';
import { checkAgainstValue, checkClusterOwnsVg, clusterDeviceSpecs, exclusiveOpenOptions, mergeSpecs, unlistDevices, withOrphanLocks, withVgChangeLocks, type LvmCluster, type VgChangeHold } from './lvm-cluster.js';
import { assertChangeable, commitVg, findVg, orphanPv, pvEntry, pvInUse, scanDevices, vgNames, type CommitContext, type ScannedDevice, type VgHandle } from './vg.js';

export function newId(): string {
  return idFromRandom(crypto.randomBytes(32));
}

/**
 * What a change runs with: the metadata trailer's facts and, for a command run as a node of a
 * cluster (--cluster C --node N), that node's cluster locks (src/volume/lvm-cluster.ts).
 */
export type LvmContext = CommitContext & { cluster?: LvmCluster };

/** The trailer context for a command line (the caller passes its argv). */
export function commitContext(commandLine: string): CommitContext {
  return {
    description: `Write from ${commandLine}.`,
    creationHost: os.hostname(),
    creationHostUname: `${os.type()} ${os.hostname()} ${os.release()} ${os.version()} ${os.machine()}`,
    nowMs: Date.now(),
  };
}

/** Open devices and their scan; close() releases them. */
export class LvmSession {
  private constructor(
    readonly devs: BlockDevice[],
    readonly scan: ScannedDevice[],
  ) {}

  static async open(specs: string[], opts: OpenAllOptions = {}): Promise<LvmSession> {
    const devs = await openAll(specs, opts);
    try {
      return new LvmSession(devs, await scanDevices(devs));
    } catch (err) {
      for (const d of devs) await d.close();
      throw err;
    }
  }

  async close(): Promise<void> {
    for (const d of this.devs) await d.close();
  }

  vg(name: string): VgHandle {
    return findVg(this.scan, name);
  }

  vgNames(): string[] {
    return vgNames(this.scan);
  }

  pvOn(spec: string): PvState {
    const s = this.scan.find((x) => x.dev.name === spec);
    if (!s) throw new SanboxError('ENOENT', `${spec}: not in the device list`, { device: spec });
    if (!s.pv) throw new SanboxError('EINVAL', `${spec}: not an LVM physical volume (no label in sectors 0-3); run pvcreate first`, { device: spec });
    return s.pv;
  }
}

export async function withSession<T>(specs: string[], opts: OpenAllOptions, fn: (s: LvmSession) => Promise<T>): Promise<T> {
  const s = await LvmSession.open(specs, opts);
  try {
    return await fn(s);
  } finally {
    await s.close();
  }
}

/**
 * A report's session. With a cluster (lvm2.md §7.3): the global lock sh (not for a report of named
 * VGs: lvm2's `vgs VG`/`lvs VG` take none), then the lock sh of each shared or private VG the scan
 * found (of the named ones), held while `fn` reads. A VG whose lock value says a newer seqno than
 * the scan (made before the locks) showed is read again, from the command's devices plus the
 * cluster's device list as it is under the locks (§7.6).
 */
export async function withReportSession<T>(specs: string[], cluster: LvmCluster | undefined, fn: (s: LvmSession) => Promise<T>, vgNames: string[] = []): Promise<T> {
  const opts = { readOnly: true, guard: 'none' as const };
  if (cluster === undefined) return withSession(specs, opts, fn);
  const wait = { timeoutMs: cluster.lockTimeoutMs };
  const read = async (): Promise<T> => {
    let s = await LvmSession.open(mergeSpecs(specs, await clusterDeviceSpecs(cluster)), opts);
    try {
      const seqnoOf = (name: string): number | undefined => (s.vgNames().includes(name) ? s.vg(name).vg.seqno : undefined);
      const clustered = s.vgNames().filter((n) => {
        if (vgNames.length > 0 && !vgNames.includes(n)) return false;
        const vg = s.vg(n).vg;
        return vg.systemId !== undefined || (vg.lockType !== undefined && vg.lockType !== 'none');
      });
      const holds: VgLockHold[] = [];
      const underLocks = async (i: number): Promise<T> => {
        if (i < clustered.length) return withVgLock(cluster.locks, clustered[i]!, 'sh', (h) => (holds.push(h), underLocks(i + 1)), wait);
        if (holds.some((h) => h.valueInvalid || (h.value !== undefined && !h.value.removed && (seqnoOf(h.vg) ?? 0) < h.value.seqno))) {
          await s.close();
          s = await LvmSession.open(mergeSpecs(specs, await clusterDeviceSpecs(cluster)), opts);
          for (const h of holds) checkAgainstValue(h.vg, s.vgNames().includes(h.vg) ? s.vg(h.vg).vg : undefined, h, cluster);
        }
        return fn(s);
      };
      // Sorted, so two reports never wait for each other's locks in opposite orders.
      clustered.sort();
      return await underLocks(0);
    } finally {
      await s.close();
    }
  };
  return vgNames.length > 0 ? read() : withGlobalLock(cluster.locks, 'sh', read, wait);
}

// ---- PVs ----

export interface PvCreateOptions extends Omit<PvLayoutOptions, 'deviceSizeBytes'> {
  /** Overwrite a filesystem or other signature (never a PV: pvremove that first). */
  force?: boolean;
}

/** pvcreate: every device must be blank (no PV, no known signature) and not in use elsewhere. */
export async function pvCreate(specs: string[], opts: PvCreateOptions, cluster?: LvmCluster): Promise<{ device: string; pvId: string }[]> {
  // Exclusive: formatting a device another process has open is refused (EBUSY).
  return withOrphanLocks(cluster, () => withSession(specs, exclusiveOpenOptions(cluster), async (s) => {
    const layouts = [];
    for (const sc of s.scan) {
      if (sc.pv) throw new SanboxError('EEXIST', `${sc.dev.name}: already an LVM physical volume ${sc.pv.label.pvId}${pvInUse(sc.pv) ? ` in VG ${pvInUse(sc.pv)}` : ''} (label at offset ${sc.pv.label.sector * LABEL_SECTOR_BYTES}); pvremove it first`, { device: sc.dev.name, offsetBytes: sc.pv.label.sector * LABEL_SECTOR_BYTES });
      await checkBlank(sc.dev, opts.force ?? false);
      try {
        layouts.push(planPvLayout({ ...opts, deviceSizeBytes: sc.dev.sizeBytes }));
      } catch (err) {
        if (!(err instanceof SanboxError)) throw err;
        throw new SanboxError(err.code, `${sc.dev.name}: ${err.message}`, { device: sc.dev.name });
      }
    }
    const out = [];
    for (const [i, sc] of s.scan.entries()) {
      const pvId = newId();
      await writeNewPv(sc.dev, pvId, layouts[i]!);
      out.push({ device: sc.dev.name, pvId });
    }
    await unlistDevices(cluster, out.map((o) => o.device));
    return out;
  }));
}

export async function pvRemove(specs: string[], cluster?: LvmCluster): Promise<void> {
  await withOrphanLocks(cluster, () =>
    withSession(specs, exclusiveOpenOptions(cluster), async (s) => {
      const pvs = specs.map((spec) => s.pvOn(spec));
      for (const pv of pvs) {
        const vg = pvInUse(pv);
        if (vg) throw new SanboxError('EBUSY', `${pv.dev.name}: PV belongs to volume group ${vg}; vgreduce or vgremove it first`, { device: pv.dev.name });
      }
      for (const pv of pvs) await wipePv(pv);
      await unlistDevices(cluster, pvs.map((pv) => pv.dev.name));
    }),
  );
}

// ---- VGs ----

function checkName(kind: 'VG' | 'LV', name: string): void {
  if (!isValidLvmName(name)) throw new SanboxError('EINVAL', `invalid ${kind} name '${name}' (letters, digits, + _ . -; not starting with -; at most 127)`);
  const reserved = kind === 'LV' ? reservedLvName(name) : undefined;
  if (reserved) throw new SanboxError('EINVAL', `invalid LV name '${name}': ${reserved}`);
}

function orphanPvs(s: LvmSession, specs: string[]): PvState[] {
  // One disk named twice (vgcreate vg a.img a.img) would become two PVs over the same extents.
  const seen = new Map<PvState, string>();
  return specs.map((spec) => {
    const pv0 = s.pvOn(spec);
    const twin = seen.get(pv0);
    if (twin !== undefined) throw new SanboxError('EINVAL', `${spec}: named twice (also as ${twin}); each physical volume may be named once`, { device: spec });
    seen.set(pv0, spec);
    const pv = s.pvOn(spec);
    const vg = pvInUse(pv);
    if (vg) throw new SanboxError('EBUSY', `${spec}: physical volume already belongs to volume group ${vg}`, { device: spec });
    return pv;
  });
}

/** `prepare` may shape the new VG (container.ts mirrors a container kind into it) and write beside it, before the commit. */
export async function vgCreate(
  specs: string[],
  pvSpecs: string[],
  name: string,
  extentSizeSectors: number,
  ctx: LvmContext,
  prepare?: (vg: VgModel, pvs: PvState[]) => Promise<void>,
): Promise<VgModel> {
  checkName('VG', name);
  if (!Number.isSafeInteger(extentSizeSectors) || extentSizeSectors < 8 || (extentSizeSectors & (extentSizeSectors - 1)) !== 0) {
    throw new SanboxError('EINVAL', `extent size must be a power of 2 of at least 4 KiB, not ${extentSizeSectors * LVM_SECTOR_BYTES} bytes`);
  }
  return withVgChangeLocks(ctx.cluster, specs, { vg: name, global: true }, (hold) =>
    withSession(hold.devices, hold.openOptions, async (s) => {
      if (s.vgNames().includes(name)) throw new SanboxError('EEXIST', `volume group "${name}" already exists`);
      // A VG of that name committed by another node on PVs not reachable here is one too.
      hold.checkScanned(undefined);
      const pvs = orphanPvs(s, pvSpecs);
      const vg = newVgModel({ name, id: newId(), extentSizeSectors, pvs: pvs.map((pv, i) => pvEntry(pv, `pv${i}`, extentSizeSectors)) });
      if (prepare) await prepare(vg, pvs);
      await commitVg({ next: vg, pvByKey: new Map(vg.pvs.map((p, i) => [p.key, pvs[i]!])), baseSeqno: 0 }, ctx);
      await hold.committed(vg, pvs);
      return vg;
    }),
  );
}

type ChangeResult = { pvByKey?: Map<string, PvState>; leaving?: PvState[] } | void;

/** Applies `change` to a copy of the VG and commits it. The change may add PVs (`joining`). */
async function changeVg(
  s: LvmSession,
  hold: VgChangeHold,
  name: string,
  ctx: CommitContext,
  change: (vg: VgModel, h: VgHandle) => ChangeResult | Promise<ChangeResult>,
): Promise<VgModel> {
  const h = lockedVg(s, hold, name);
  assertChangeable(h);
  if (!h.vg.status.includes('WRITE')) throw new SanboxError('EINVAL', `volume group ${name} is read-only`);
  if (h.vg.status.includes('EXPORTED')) throw new SanboxError('EINVAL', `volume group ${name} is exported (a deported container); vgimport it first`);
  if (h.vg.systemId || (h.vg.lockType && h.vg.lockType !== 'none')) {
    if (hold.cluster === undefined) {
      throw new SanboxError('EINVAL', `volume group ${name} is ${h.vg.systemId ? `owned by system ${h.vg.systemId}` : `shared (lock_type ${h.vg.lockType})`}; sanbox does not change it without that lock (run the command as a node: --cluster IMG --node N)`);
    }
    // Any node of the container's cluster may administer it (issue 18 item 1), under the VG lock.
    checkClusterOwnsVg(h.vg, hold.cluster);
  }
  const next: VgModel = structuredClone(h.vg);
  const r = (await change(next, h)) ?? {};
  next.seqno = h.vg.seqno + 1;
  checkNoOverlap(next);
  const pvByKey = r.pvByKey ?? h.pvByKey;
  await commitVg({ next, pvByKey, leaving: r.leaving, baseSeqno: h.vg.seqno }, ctx);
  await hold.committed(next, [...new Set(pvByKey.values())], r.leaving);
  return next;
}

/** The VG `name` as scanned under its lock, checked against what the lock's value block says. */
export function lockedVg(s: LvmSession, hold: VgChangeHold, name: string): VgHandle {
  if (!s.vgNames().includes(name)) hold.checkScanned(undefined);
  const h = s.vg(name);
  hold.checkScanned(h.vg);
  return h;
}

export async function vgExtend(specs: string[], name: string, pvSpecs: string[], ctx: LvmContext): Promise<VgModel> {
  return withVgChangeLocks(ctx.cluster, specs, { vg: name, global: true }, (hold) =>
    withSession(hold.devices, hold.openOptions, (s) => {
      const pvs = orphanPvs(s, pvSpecs);
      return changeVg(s, hold, name, ctx, (vg, h) => {
        const pvByKey = new Map(h.pvByKey);
        let n = vg.pvs.length;
        if (vg.maxPv > 0 && vg.pvs.length + pvs.length > vg.maxPv) throw new SanboxError('EINVAL', `volume group ${name} may hold at most ${vg.maxPv} physical volumes (max_pv)`);
        for (const pv of pvs) {
          let key = `pv${n++}`;
          while (pvByKey.has(key)) key = `pv${n++}`;
          vg.pvs.push(pvEntry(pv, key, vg.extentSizeSectors));
          pvByKey.set(key, pv);
        }
        return { pvByKey };
      });
    }),
  );
}

/** Renames PV keys to pv0..pvN-1 in order (lvm2 numbers them afresh on every write). */
function renumberPvs(vg: VgModel, pvByKey: Map<string, PvState>): Map<string, PvState> {
  const rename = new Map(vg.pvs.map((p, i) => [p.key, `pv${i}`]));
  const out = new Map<string, PvState>();
  for (const p of vg.pvs) out.set(rename.get(p.key)!, pvByKey.get(p.key)!);
  for (const p of vg.pvs) p.key = rename.get(p.key)!;
  for (const lv of vg.lvs) for (const seg of lv.segments) for (const st of seg.stripes) st.pv = rename.get(st.pv) ?? st.pv;
  return out;
}

export async function vgReduce(specs: string[], name: string, pvSpecs: string[], ctx: LvmContext): Promise<VgModel> {
  return withVgChangeLocks(ctx.cluster, specs, { vg: name, global: true }, (hold) =>
    withSession(hold.devices, hold.openOptions, (s) =>
      changeVg(s, hold, name, ctx, (vg, h) => {
        const leaving: PvState[] = [];
        for (const spec of pvSpecs) {
          const pv = s.pvOn(spec);
          const entry = vg.pvs.find((p) => p.id === pv.label.pvId);
          if (!entry) throw new SanboxError('EINVAL', `${spec}: physical volume is not in volume group ${name}`, { device: spec });
          const users = vg.lvs.filter((lv) => lv.segments.some((seg) => seg.stripes.some((st) => st.pv === entry.key)));
          if (users.length) throw new SanboxError('EBUSY', `${spec}: physical volume still holds extents of ${users.map((l) => l.name).join(', ')}`, { device: spec });
          vg.pvs = vg.pvs.filter((p) => p !== entry);
          leaving.push(pv);
        }
        if (vg.pvs.length === 0) throw new SanboxError('EINVAL', `cannot remove the last PV of ${name}; use vgremove`);
        const kept = new Map([...h.pvByKey].filter(([k]) => vg.pvs.some((p) => p.key === k)));
        const pvByKey = renumberPvs(vg, kept);
        if (![...pvByKey.values()].some((pv) => pv.mdas.length > 0)) throw new SanboxError('EINVAL', `${name} would keep no PV with a metadata area`);
        return { pvByKey, leaving };
      }),
    ),
  );
}

/** vgremove: every PV becomes an orphan. Refused while LVs exist unless `force`. */
export async function vgRemove(specs: string[], name: string, force: boolean, ctx: LvmContext): Promise<void> {
  await withVgChangeLocks(ctx.cluster, specs, { vg: name, global: true }, (hold) =>
    withSession(hold.devices, hold.openOptions, async (s) => {
      const h = lockedVg(s, hold, name);
      assertChangeable(h, 'remove');
      if (h.vg.lvs.length && !force) {
        throw new SanboxError('EBUSY', `volume group ${name} still holds logical volumes ${h.vg.lvs.map((l) => l.name).join(', ')}; remove them or use --force`);
      }
      if (h.vg.lvs.length) await changeVg(s, hold, name, ctx, (vg) => void (vg.lvs = []));
      const pvs = [...new Set(h.pvByKey.values())];
      for (const pv of pvs) await orphanPv(pv);
      await hold.removedVg(pvs);
    }),
  );
}

// ---- LVs ----

export function splitLvPath(spec: string): { vg: string; lv: string } {
  const m = /^([^/]+)\/([^/]+)$/.exec(spec);
  if (!m) throw new SanboxError('EINVAL', `'${spec}' is not VG/LV`);
  return { vg: m[1]!, lv: m[2]! };
}

/** A size request: absolute or relative, in bytes (-L) or extents (-l; % of VG or FREE). */
export type SizeRequest =
  | { kind: 'bytes'; sign: '' | '+' | '-'; bytes: number }
  | { kind: 'extents'; sign: '' | '+' | '-'; extents: number }
  | { kind: 'percent'; sign: '' | '+' | '-'; percent: number; of: 'VG' | 'FREE' };

function requestExtents(vg: VgModel, req: SizeRequest): number {
  const extentBytes = vg.extentSizeSectors * LVM_SECTOR_BYTES;
  switch (req.kind) {
    case 'bytes':
      return Math.ceil(req.bytes / extentBytes);
    case 'extents':
      return req.extents;
    case 'percent': {
      const base = req.of === 'VG' ? vgTotalExtents(vg) : freeExtents(vg);
      return Math.floor((base * req.percent) / 100);
    }
  }
}

export interface LvCreateOptions extends AllocOptions {
  size: SizeRequest;
}

function checkStripes(vg: VgModel, o: AllocOptions): void {
  if (o.stripes !== undefined && (!Number.isSafeInteger(o.stripes) || o.stripes < 1)) throw new SanboxError('EINVAL', `invalid stripe count ${o.stripes}`);
  const ss = o.stripeSizeSectors;
  if (ss !== undefined && (ss < STRIPE_SIZE_MIN_SECTORS || (ss & (ss - 1)) !== 0 || ss > vg.extentSizeSectors)) {
    throw new SanboxError('EINVAL', `stripe size must be a power of 2 between 4 KiB and the extent size, not ${ss * LVM_SECTOR_BYTES} bytes`);
  }
}

export async function lvCreate(specs: string[], vgName: string, lvName: string, o: LvCreateOptions, ctx: LvmContext): Promise<LvModel> {
  checkName('LV', lvName);
  let created: LvModel | undefined;
  await withVgChangeLocks(ctx.cluster, specs, { vg: vgName, global: false }, (hold) =>
    withSession(hold.devices, hold.openOptions, (s) =>
      changeVg(s, hold, vgName, ctx, (vg) => {
        if (vg.lvs.some((l) => l.name === lvName)) throw new SanboxError('EEXIST', `logical volume ${vgName}/${lvName} already exists`);
        const visible = vg.lvs.filter((l) => l.status.includes('VISIBLE')).length;
        if (vg.maxLv > 0 && visible >= vg.maxLv) throw new SanboxError('EINVAL', `volume group ${vgName} already holds its maximum of ${vg.maxLv} logical volumes (max_lv)`);
        checkStripes(vg, o);
        const stripes = o.stripes ?? 1;
        const extents = roundToStripes(requestExtents(vg, o.size), stripes);
        if (extents < 1) throw new SanboxError('EINVAL', 'a logical volume needs at least one extent');
        const lv: LvModel = {
          name: lvName,
          id: newId(),
          status: ['READ', 'WRITE', 'VISIBLE'],
          flags: [],
          tags: [],
          creationTime: Math.floor(ctx.nowMs / 1000),
          creationHost: ctx.creationHost,
          // lvmlockd's dlm back end gives every LV of a shared VG lock_args "dlm" (lvm2.md §7.4).
          lockArgs: vg.lockType === 'dlm' ? DLM_LV_LOCK_ARGS : undefined,
          readAhead: undefined,
          segments: [],
          extra: [],
        };
        lv.segments = allocateSegments(vg, lv, extents, o);
        vg.lvs.push(lv);
        created = lv;
      }),
    ),
  );
  return created!;
}

function findLv(vg: VgModel, name: string): LvModel {
  const lv = vg.lvs.find((l) => l.name === name);
  if (!lv) throw new SanboxError('ENOENT', `logical volume ${vg.name}/${name} not found`);
  return lv;
}

export async function lvResize(specs: string[], vgName: string, lvName: string, size: SizeRequest, mode: 'extend' | 'reduce', o: AllocOptions, ctx: LvmContext): Promise<LvModel> {
  let out: LvModel | undefined;
  await withVgChangeLocks(ctx.cluster, specs, { vg: vgName, global: false }, (hold) =>
    withSession(hold.devices, hold.openOptions, (s) =>
      changeVg(s, hold, vgName, ctx, (vg) => {
        const lv = findLv(vg, lvName);
        const cur = lvExtentCount(lv);
        const n = requestExtents(vg, size);
        let target = size.sign === '+' ? cur + n : size.sign === '-' ? cur - n : n;
        const last = lv.segments[lv.segments.length - 1];
        if (mode === 'extend') {
          const stripes = o.stripes ?? (last?.type === 'striped' ? last.stripeCount : 1);
          const opts: AllocOptions = { ...o, stripes, stripeSizeSectors: o.stripeSizeSectors ?? last?.stripeSizeSectors };
          checkStripes(vg, opts);
          const add = roundToStripes(target - cur, stripes);
          if (target <= cur) throw new SanboxError('EINVAL', `new size of ${vgName}/${lvName} (${target} extents) is not larger than the current ${cur}`);
          target = cur + add;
          lv.segments = mergeSegments([...lv.segments, ...allocateSegments(vg, lv, add, opts)]);
        } else {
          if (target >= cur) throw new SanboxError('EINVAL', `new size of ${vgName}/${lvName} (${target} extents) is not smaller than the current ${cur}`);
          if (target < 1) throw new SanboxError('EINVAL', `cannot reduce ${vgName}/${lvName} to ${target} extents; use lvremove`);
          lv.segments = reduceSegments(lv, target);
        }
        out = lv;
      }),
    ),
  );
  return out!;
}

/** vgchange/lvchange: applies `change` to a copy of the VG's model and commits it as the next seqno. */
export async function vgModify(specs: string[], vgName: string, ctx: LvmContext, change: (vg: VgModel) => void): Promise<VgModel> {
  return withVgChangeLocks(ctx.cluster, specs, { vg: vgName, global: false }, (hold) => withSession(hold.devices, hold.openOptions, (s) => changeVg(s, hold, vgName, ctx, (vg) => void change(vg))));
}

/**
 * Like vgModify, for a change that does I/O before its commit (pvmove copies an extent): `change`
 * gets the copy to edit and the VG's open PVs (keyed like the text), and may throw to commit nothing.
 */
export async function vgModifyWithIo(specs: string[], vgName: string, ctx: LvmContext, change: (vg: VgModel, h: VgHandle) => Promise<void>): Promise<VgModel> {
  return withVgChangeLocks(ctx.cluster, specs, { vg: vgName, global: false }, (hold) => withSession(hold.devices, hold.openOptions, (s) => changeVg(s, hold, vgName, ctx, (vg, h) => change(vg, h))));
}

export async function lvRename(specs: string[], vgName: string, from: string, to: string, ctx: LvmContext): Promise<void> {
  checkName('LV', to);
  await withVgChangeLocks(ctx.cluster, specs, { vg: vgName, global: false }, (hold) =>
    withSession(hold.devices, hold.openOptions, (s) =>
      changeVg(s, hold, vgName, ctx, (vg) => {
        const lv = findLv(vg, from);
        if (vg.lvs.some((l) => l.name === to)) throw new SanboxError('EEXIST', `logical volume ${vgName}/${to} already exists`);
        lv.name = to;
      }),
    ),
  );
}

export async function lvRemove(specs: string[], vgName: string, lvName: string, ctx: LvmContext): Promise<void> {
  await withVgChangeLocks(ctx.cluster, specs, { vg: vgName, global: false }, (hold) =>
    withSession(hold.devices, hold.openOptions, (s) =>
      changeVg(s, hold, vgName, ctx, (vg) => {
        findLv(vg, lvName);
        vg.lvs = vg.lvs.filter((l) => l.name !== lvName);
      }),
    ),
  );
}

/** Opens VG/LV as a block device over the devices in `specs`; closing it closes them. */
export async function openLv(
  specs: string[],
  vgName: string,
  lvName: string,
  /** `guard`: how this opener registers in the LV's in-use guard (vg-lock.ts LvGuardMode); plain `shared` by default. */
  opts: Omit<OpenAllOptions, 'guard'> & { guard?: LvGuardMode | 'none' } = {},
): Promise<LvDevice> {
  const s = await LvmSession.open(specs, { readOnly: opts.readOnly ?? false, ...(opts.open !== undefined ? { open: opts.open } : {}) });
  let release: (() => void) | undefined;
  try {
    const h = s.vg(vgName);
    assertChangeable(h, 'open the logical volumes of');
    const lv = findLv(h.vg, lvName);
    const guard = opts.guard ?? 'shared';
    if (guard !== 'none') release = acquireLvGuard(`${vgName}/${lvName}`, lv.id, guard);
    const pvDevs = new Map([...h.pvByKey].map(([k, pv]) => [k, pv.dev]));
    let layout = mapLv(h.vg, lv, pvDevs);
    const devs = [...pvDevs.values()];
    // Re-reading uses only these devices: a PV added to the VG later is not reachable from here.
    const reader = async (): Promise<LvLayout> => {
      const h2 = findVg(await scanDevices(devs), vgName);
      return mapLv(h2.vg, findLv(h2.vg, lvName), new Map([...h2.pvByKey].map(([k, pv]) => [k, pv.dev])));
    };
    if (guard === 'shared' || guard === 'exclusive') {
      // The layout above was read before the guard was had: a change that held the guard then
      // may have committed since. Read again with the guard held (no change on this host commits
      // now); an LV removed or replaced meanwhile fails the open. A 'locked' opener reads under
      // the VG lock, which no change holds meanwhile.
      const fresh = await reader();
      if (fresh.lvId !== layout.lvId) throw new SanboxError('ENOENT', `${vgName}/${lvName}: the logical volume was replaced while it was being opened`, { device: `${vgName}/${lvName}` });
      layout = fresh;
    }
    const used = new Set(h.pvByKey.values());
    // Devices that are not PVs of this VG are not needed by the LV.
    for (const sc of s.scan) if (!sc.pv || !used.has(sc.pv)) await sc.dev.close();
    const dev = makeLvDevice(`${vgName}/${lvName}`, layout, devs, devs, reader);
    if (release !== undefined) dev.onClose(release);
    return dev;
  } catch (err) {
    release?.();
    await s.close();
    throw err;
  }
}
