// Cluster containers (issue 18 item 1): a VG is local, private (one owner node), shared or
// deported. sanbox's own record (src/format/container.ts, two copies on every PV) says which, and
// the VG's LVM metadata mirrors it so the real tools agree (lvm2.md §5.7-5.8):
//
// | kind     | LVM metadata                                                                     |
// |----------|----------------------------------------------------------------------------------|
// | local    | no system_id, no lock_type                                                       |
// | private  | system_id = the owner's system ID (`<cluster name>-node<N>`, systemIdOf)         |
// | shared   | lock_type = "dlm", lock_args = "1.0.0:<cluster name>", every LV lock_args = "dlm" |
// | deported | status EXPORTED on the VG and on each of its PVs (what lvm2's vgexport writes)   |
//
// Write order of a change: both record copies first (every PV's primary, flush, every PV's
// backup, flush), then the LVM commit. A crash before the LVM commit leaves a record one sequence
// ahead of the metadata; containerOf reports that as `inSync: false` and rerunning the command
// makes both agree. Any node may administer any container (the locking of item 2 is not here).

import { SanboxError } from '../errors.js';
import {
  CONTAINER_BACKUP_OFFSET_BYTES,
  CONTAINER_KINDS,
  CONTAINER_PRIMARY_OFFSET_BYTES,
  CONTAINER_PVS_MAX,
  CONTAINER_RECORD_BYTES,
  decodeContainer,
  encodeContainer,
  newestContainer,
  type ContainerCopy,
  type ContainerKind,
  type ContainerRecord,
} from '../format/container.js';
import { FormatError } from '../errors.js';
import { LABEL_SCAN_BYTES } from '../format/lvm/label.js';
import type { VgModel } from '../format/lvm/vg-model.js';
import { isValidLvmName } from '../format/lvm/vg-text.js';
import { O2NM_MAX_NODES } from '../format/o2hb-block.js';
import { readClusterImage } from '../heartbeat/cluster-image.js';
import { lockedVg, vgCreate, withSession, type LvmContext } from './manager.js';
import { withVgChangeLocks, type LvmCluster } from './lvm-cluster.js';
import type { PvState } from './pv.js';
import { acquireLvGuard } from './vg-lock.js';
import { DLM_LV_LOCK_ARGS, dlmVgLockArgs, lockLv } from './lvm-locks.js';
import { assertChangeable, commitVg, type CommitContext, type VgHandle } from './vg.js';

/** lvm2's lock_args of a dlm VG and of its LVs (lvm2.md §5.8, §7.4). */

export { CONTAINER_KINDS, type ContainerKind };

export function parseContainerKind(text: string): ContainerKind {
  const k = CONTAINER_KINDS.find((x) => x === text);
  if (!k) throw new SanboxError('EINVAL', `unknown container kind '${text}' (one of ${CONTAINER_KINDS.join(', ')})`);
  return k;
}

/** The cluster a container belongs to, as its record names it. */
export interface ContainerCluster {
  name: string;
  uuid: Buffer;
  /** Known when read from the cluster image; bounds the owner node. */
  nodeCount: number | undefined;
}

export async function clusterOfImage(image: string): Promise<ContainerCluster> {
  const info = await readClusterImage(image);
  return { name: info.config.clusterName, uuid: info.header.clusterUuid, nodeCount: info.config.nodeCount };
}

/** The system ID a private container's owner has (lvmsystemid(7): VG-name characters, ≤ 128). */
export function systemIdOf(clusterName: string, node: number): string {
  const id = `${clusterName}-node${node}`;
  if (!isValidLvmName(id)) throw new SanboxError('EINVAL', `cluster name '${clusterName}' does not make a valid LVM system ID ('${id}')`);
  return id;
}

/** Sets the VG's LVM metadata to mirror `r` (the table at the top). */
export function mirrorContainer(vg: VgModel, r: ContainerRecord): void {
  const exported = r.kind === 'deported';
  vg.systemId = r.kind === 'private' ? systemIdOf(r.clusterName, r.ownerNode!) : undefined;
  vg.lockType = r.kind === 'shared' ? r.lockType : undefined;
  vg.lockArgs = r.kind === 'shared' ? dlmVgLockArgs(r.clusterName) : undefined;
  for (const lv of vg.lvs) lv.lockArgs = r.kind === 'shared' ? DLM_LV_LOCK_ARGS : undefined;
  const setExported = (status: string[]): string[] => [...status.filter((s) => s !== 'EXPORTED'), ...(exported ? ['EXPORTED'] : [])];
  vg.status = setExported(vg.status);
  for (const p of vg.pvs) p.status = setExported(p.status);
}

/** What the LVM metadata says the kind is (undefined: a combination no kind writes). */
export function kindInLvm(vg: VgModel): ContainerKind | undefined {
  const exported = vg.status.includes('EXPORTED');
  const owned = vg.systemId !== undefined && vg.systemId !== '';
  const shared = vg.lockType !== undefined && vg.lockType !== 'none';
  if (Number(exported) + Number(owned) + Number(shared) > 1) return undefined;
  return exported ? 'deported' : owned ? 'private' : shared ? 'shared' : 'local';
}

/** Refuses a PV whose 2048..4095 gap is not free (a custom layout, or a 4 KiB-sector disk). */
function checkRoom(pv: PvState): void {
  const dev = pv.dev;
  if (dev.sectorSizeBytes !== 512) {
    throw new SanboxError('EINVAL', `${dev.name}: a container record needs a 512-byte-sector PV (this one has ${dev.sectorSizeBytes}-byte sectors: its label sector holds the record's bytes)`, { device: dev.name });
  }
  const end = CONTAINER_BACKUP_OFFSET_BYTES + CONTAINER_RECORD_BYTES;
  const areas = [...pv.label.metadataAreas, ...pv.label.dataAreas, ...pv.label.bootloaderAreas];
  const clash = areas.find((a) => a.offsetBytes < end);
  if (clash || pv.label.sector * 512 >= LABEL_SCAN_BYTES) {
    throw new SanboxError('EINVAL', `${dev.name}: PV ${pv.label.pvId} uses bytes ${CONTAINER_PRIMARY_OFFSET_BYTES}..${end - 1} (an area at offset ${clash?.offsetBytes ?? '?'}), where the container record goes`, { device: dev.name, offsetBytes: clash?.offsetBytes });
  }
}

/** Both copies from every PV, each decoded or with the reason it is not trusted. */
export async function readContainerCopies(pvs: readonly PvState[]): Promise<ContainerCopy[]> {
  const out: ContainerCopy[] = [];
  for (const pv of pvs) {
    if (pv.dev.sectorSizeBytes !== 512) continue;
    for (const offsetBytes of [CONTAINER_PRIMARY_OFFSET_BYTES, CONTAINER_BACKUP_OFFSET_BYTES]) {
      const buf = Buffer.alloc(CONTAINER_RECORD_BYTES);
      await pv.dev.read(buf, offsetBytes);
      const device = pv.dev.name;
      // All zero: never written (a PV that joined the VG later, or a VG that was never a container).
      if (buf.every((b) => b === 0)) continue;
      try {
        const record = decodeContainer(buf, { device, offsetBytes });
        // A copy on a PV that is not one of its members is a leftover (vgreduce, pvcreate keeps 2048..): not this VG's.
        if (record.pvUuids.includes(pv.label.pvId)) out.push({ record, offsetBytes, device });
      } catch (err) {
        if (!(err instanceof FormatError)) throw err;
        out.push({ error: err, offsetBytes, device });
      }
    }
  }
  return out;
}

export interface ContainerState {
  /** The newest valid record, or undefined: a VG that was never made a container (kind from LVM alone). */
  record: ContainerRecord | undefined;
  /** The kind the LVM metadata shows. */
  lvmKind: ContainerKind | undefined;
  /** The record and the LVM metadata agree (false after an interrupted change). */
  inSync: boolean;
  /** Copies that could not be trusted, with why. */
  badCopies: string[];
}

export async function containerOf(h: VgHandle): Promise<ContainerState> {
  const copies = await readContainerCopies([...h.pvByKey.values()]);
  const best = newestContainer(copies, h.vg.id);
  const lvmKind = kindInLvm(h.vg);
  const badCopies = copies.flatMap((c) => ('error' in c ? [c.error.message] : []));
  const record = best?.record;
  let inSync = lvmKind === (record?.kind ?? 'local');
  if (record && inSync) {
    const mirrored = structuredClone(h.vg);
    mirrorContainer(mirrored, record);
    inSync = mirrored.systemId === h.vg.systemId && mirrored.lockType === h.vg.lockType && mirrored.lockArgs === h.vg.lockArgs;
  }
  return { record, lvmKind, inSync, badCopies };
}

/** Writes the record to every PV: all primaries, flush, all backups, flush (a crash tears at most one copy per PV). */
export async function writeContainer(pvs: readonly PvState[], r: ContainerRecord): Promise<void> {
  for (const pv of pvs) checkRoom(pv);
  const buf = encodeContainer(r);
  for (const offsetBytes of [CONTAINER_PRIMARY_OFFSET_BYTES, CONTAINER_BACKUP_OFFSET_BYTES]) {
    for (const pv of pvs) await pv.dev.write(buf, offsetBytes);
    for (const pv of pvs) await pv.dev.flush();
  }
}

/** What a command asks for. */
export interface ContainerRequest {
  kind?: ContainerKind;
  ownerNode?: number;
  /** The cluster image, when named (--cluster): its name, uuid and node count. */
  cluster?: ContainerCluster;
}

/** The next record: `current` (or a fresh one for `vg`) changed as `req` asks; validated. */
export function nextRecord(vg: VgModel, current: ContainerRecord | undefined, req: ContainerRequest): ContainerRecord {
  const kind = req.kind ?? current?.kind ?? 'local';
  const cluster: ContainerCluster | undefined = req.cluster ?? (current && current.clusterName !== '' ? { name: current.clusterName, uuid: current.clusterUuid, nodeCount: undefined } : undefined);
  if (req.ownerNode !== undefined && kind !== 'private') throw new SanboxError('EINVAL', `volume group ${vg.name}: --owner goes with a private container, not a ${kind} one`);
  if (kind !== 'local' && kind !== 'deported' && !cluster) throw new SanboxError('EINVAL', `volume group ${vg.name}: a ${kind} container belongs to a cluster; name its image with --cluster IMG`);
  let ownerNode: number | undefined;
  if (kind === 'private') {
    ownerNode = req.ownerNode ?? current?.ownerNode;
    if (ownerNode === undefined) throw new SanboxError('EINVAL', `volume group ${vg.name}: a private container needs its owner (--owner N)`);
    const limit = cluster?.nodeCount ?? O2NM_MAX_NODES;
    if (!Number.isInteger(ownerNode) || ownerNode < 0 || ownerNode >= limit) {
      throw new SanboxError('EINVAL', `volume group ${vg.name}: owner node ${ownerNode} is out of range (cluster ${cluster?.name} has nodes 0..${limit - 1})`);
    }
  }
  if (vg.pvs.length > CONTAINER_PVS_MAX) throw new SanboxError('EINVAL', `volume group ${vg.name} has ${vg.pvs.length} PVs; a container record lists at most ${CONTAINER_PVS_MAX}`);
  return {
    sequence: (current?.sequence ?? 0) + 1,
    kind,
    lockType: kind === 'shared' ? 'dlm' : undefined,
    ownerNode,
    vgName: vg.name,
    vgUuid: vg.id,
    clusterName: cluster?.name ?? '',
    clusterUuid: cluster ? Buffer.from(cluster.uuid) : Buffer.alloc(16),
    pvUuids: vg.pvs.map((p) => p.id),
  };
}

/**
 * After vgextend/vgreduce: a container's record lists its member PVs, so it is rewritten (next
 * sequence) on the VG's PVs when they changed. The kind does not change, so a crash half-way
 * leaves copies that all say the same kind. Nothing happens to a VG with no record.
 */
export async function syncContainerMembers(specs: string[], name: string, cluster?: LvmCluster): Promise<ContainerRecord | undefined> {
  return withVgChangeLocks(cluster, specs, { vg: name, global: false }, (hold) =>
    withSession(hold.devices, hold.openOptions, async (s) => {
      const h = lockedVg(s, hold, name);
      const { record } = await containerOf(h);
      if (!record) return undefined;
      const ids = h.vg.pvs.map((p) => p.id);
      if (ids.length === record.pvUuids.length && ids.every((id, i) => record.pvUuids[i] === id)) return record;
      const next = nextRecord(h.vg, record, {});
      await writeContainer([...h.pvByKey.values()], next);
      return next;
    }),
  );
}

/** The owner node whose private container `next` takes away (a new owner, or another kind), or undefined. */
export function ownerTakenFrom(state: ContainerState, next: ContainerRecord): number | undefined {
  const kind = state.record?.kind ?? state.lvmKind;
  const owner = state.record?.ownerNode;
  if (kind !== 'private' || owner === undefined) return undefined;
  return next.kind === 'private' && next.ownerNode === owner ? undefined : owner;
}

/** vgcreate --container KIND: the record on the new PVs, then the VG's first commit mirroring it. */
export async function containerCreate(specs: string[], pvSpecs: string[], name: string, extentSizeSectors: number, req: ContainerRequest, ctx: LvmContext): Promise<ContainerRecord> {
  let out: ContainerRecord | undefined;
  await vgCreate(specs, pvSpecs, name, extentSizeSectors, ctx, async (vg, pvs) => {
    const r = nextRecord(vg, undefined, req);
    mirrorContainer(vg, r);
    await writeContainer(pvs, r);
    out = r;
  });
  return out!;
}

/**
 * vgchange --container/--owner, vgexport, vgimport: the new record, then the LVM commit. `expect`
 * refuses a change from the wrong kind (vgimport of a VG that is not deported) before anything is
 * written; so does `authorize` (called under the VG lock with the state read there and the next
 * record: the failover rule of src/node/failover.ts, which refuses taking a private container from
 * an owner that is alive or not fenced yet).
 */
export async function containerChange(
  specs: string[],
  name: string,
  req: ContainerRequest,
  ctx: LvmContext,
  expect?: { kinds: ContainerKind[]; why: string },
  authorize?: (state: ContainerState, next: ContainerRecord, pvNames: string[]) => Promise<void>,
): Promise<ContainerRecord> {
  return withVgChangeLocks(ctx.cluster, specs, { vg: name, global: false }, (hold) =>
    withSession(hold.devices, hold.openOptions, async (s) => {
      const h = lockedVg(s, hold, name);
      assertChangeable(h, 'change the container of');
      const state = await containerOf(h);
      const currentKind = state.record?.kind ?? state.lvmKind;
      if (expect && (currentKind === undefined || !expect.kinds.includes(currentKind))) {
        throw new SanboxError('EINVAL', `volume group ${name} is ${currentKind ?? 'of no container kind'}: ${expect.why}`);
      }
      const r = nextRecord(h.vg, state.record, req);
      await authorize?.(state, r, [...new Set(h.pvByKey.values())].map((pv) => pv.dev.name));
      const next: VgModel = structuredClone(h.vg);
      next.seqno = h.vg.seqno + 1;
      mirrorContainer(next, r);
      // Deporting a VG whose LV a process here has open is refused, as lvm2's vgexport refuses
      // active LVs; so is taking a private container from its owner while a process here (the
      // owner giving it away, or a fenced owner's process still alive) has one of its LVs open
      // (host-local: the cluster-wide activation locks are item 2's).
      const guards: (() => void)[] = [];
      try {
        const lettingGo = r.kind === 'deported' || ownerTakenFrom(state, r) !== undefined;
        if (lettingGo) for (const lv of h.vg.lvs) guards.push(acquireLvGuard(`${name}/${lv.name}`, lv.id, 'exclusive'));
        // Cluster-wide: no node may have one of its LVs active (its LV lock, taken here ex at once
        // and let go after the commit, as lvm2 proves an LV inactive; a conflict names the holder).
        if (lettingGo && hold.cluster !== undefined) {
          for (const lv of h.vg.lvs) {
            const l = await lockLv(hold.cluster.locks, name, { name: lv.name, uuid: lv.id }, 'ex', { what: `${r.kind === 'deported' ? 'deporting' : 'changing the owner of'} volume group ${name} (an active LV)` });
            guards.push(() => void l.unlock().catch(() => undefined));
          }
        }
        await writeContainer([...h.pvByKey.values()], r);
        await commitVg({ next, pvByKey: h.pvByKey, baseSeqno: h.vg.seqno }, ctx);
        await hold.committed(next, [...new Set(h.pvByKey.values())]);
      } finally {
        for (const g of guards) g();
      }
      return r;
    }),
  );
}

/** What a node needs to know of a VG's container before it does I/O through its LVs. */
export interface ContainerUse {
  vgName: string;
  kind: ContainerKind;
  /** A private container's owner node. */
  ownerNode: number | undefined;
}

/** The owner node a private container's system ID names (systemIdOf's `<cluster>-node<N>`). */
function ownerOfSystemId(systemId: string | undefined): number | undefined {
  const m = /-node(\d{1,5})$/.exec(systemId ?? '');
  return m === null ? undefined : Number(m[1]);
}

/** The container of a VG as it is now (its record, else what the LVM metadata mirrors); reads only. */
export async function readContainerUse(specs: string[], vgName: string): Promise<ContainerUse> {
  return withSession(specs, { readOnly: true, guard: 'none' }, async (s) => {
    const h = s.vg(vgName);
    const { record, lvmKind } = await containerOf(h);
    const kind = record?.kind ?? lvmKind;
    // A VG whose metadata mixes kinds (owned and shared at once) is none sanbox writes: refuse it.
    if (kind === undefined) throw new SanboxError('EINVAL', `volume group ${vgName}: its LVM metadata matches no container kind (system ID ${h.vg.systemId ?? 'none'}, lock type ${h.vg.lockType ?? 'none'}, status ${h.vg.status.join(' ')})`);
    return { vgName, kind, ownerNode: kind === 'private' ? (record?.ownerNode ?? ownerOfSystemId(h.vg.systemId)) : undefined };
  });
}

/**
 * Refuses I/O that a node may not do in a container (EVMS CSM's rules, reference/locking.md §5.2):
 * nobody uses a deported container, and only its owner uses a private one.
 */
export function assertNodeMayUse(c: ContainerUse, nodeId: number): void {
  if (c.kind === 'deported') throw new SanboxError('EINVAL', `volume group ${c.vgName} is a deported container: no node may use it (vgimport it first)`);
  if (c.kind === 'private' && c.ownerNode !== nodeId) {
    throw new SanboxError('EINVAL', `volume group ${c.vgName} is a private container owned by node ${c.ownerNode ?? '?'}: node ${nodeId} may not use it (the owner changes with vgchange --owner)`);
  }
}

/** I/O to volumes of shared and private containers is held while the node has no quorum; local ones are not. */
export function heldWithoutQuorum(c: ContainerUse): boolean {
  return c.kind === 'shared' || c.kind === 'private';
}
