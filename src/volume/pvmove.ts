// pvmove (issue 18 item 4): an LV's extents move from one PV to another in chunks while nodes
// write to the LV. Each chunk is one extent: under the lock-out (the LV's writers drained for this
// chunk only: lockout.ts) the extent is copied from the source PE to a free PE of the destination
// and flushed, then the LV's segment map is switched to the copy in one committed metadata change
// (a new seqno). Writers re-read the layout and go on, now writing the moved extent at its new home.
// A striped segment's area (stripe) on the source moves the same way, one PE (one stripe row) per
// chunk: the segment splits at the row's boundaries and the moved area of the row points at the
// copy (remapExtent); rows that continue each other merge again, so a finished move leaves one
// segment, as lvm2's does. No two stripes of a segment end up on one PV: a destination holding
// another stripe is refused before anything is written (checkMove), as lvm2 refuses it.
//
// How the move is recorded. lvm2 records a move in progress as a hidden `pvmove0` LV with a
// mirror segment (source and destination areas) that the moved LV's segments point into, with
// PVMOVE/LOCKED flags, and lets dm-mirror copy under live I/O. sanbox maps no mirror segment, and
// needs none: the writers are locked out while a chunk is copied, so the metadata at every commit
// point is plain linear and striped segments — the LV's extents either still at the source or
// already at the destination, a striped segment split at stripe-row boundaries — which every lvm2
// reads and vgck accepts. What is in progress is recorded as a VG tag,
// `sanbox_pvmove:<source PV uuid>:<destination PV uuid or =>:<LV name or =>` ('=' = any; tags
// may hold ':' and '=', LV names cannot hold '='), committed before the first chunk and removed
// after the last.
//
// A mover killed mid-way (kill -9) leaves either the old or the new map of the chunk it was
// moving (the commit of one mda is one sector write, lvm2.md §4.3) — a copy without its commit is
// a copy into a free extent, never read — so `pvmove` again finds the tag and moves what is still
// on the source, and `pvmove --abort` removes the tag: as lvm2's abort of a non-atomic move, moved
// extents stay at the destination and the others at the source. No acknowledged write is lost: a
// write acknowledged before a chunk's lock-out is in the source extent the copy reads (the writers
// drained before the copy), one after it went through the map the chunk's commit (or its absence)
// left, which is the map on disk.

import { SanboxError } from '../errors.js';
import { segmentPvAreas } from '../format/lvm/vg-check.js';
import { LVM_SECTOR_BYTES, type LvModel, type SegmentModel, type VgModel } from '../format/lvm/vg-model.js';
import { freeRanges, mergeSegments } from './allocator.js';
import { pvInUse, type CommitContext } from './vg.js';
import { vgModifyWithIo, withSession } from './manager.js';
import { acquireLvGuard } from './vg-lock.js';

/** Extents per chunk: one. A chunk is what the writers wait for; an extent (4 MiB by default) copies in milliseconds. */
export const PVMOVE_CHUNK_EXTENTS = 1;
const TAG_PREFIX = 'sanbox_pvmove:';
/** "any" in a move record (a character no LV name and no PV uuid holds). */
const ANY = '=';

/** A move in progress, as its VG tag records it. */
export interface MoveRecord {
  vg: string;
  /** PV uuids as the VG text names them. */
  srcPvId: string;
  dstPvId: string | undefined;
  lv: string | undefined;
}

export function moveTag(r: MoveRecord): string {
  return `${TAG_PREFIX}${r.srcPvId}:${r.dstPvId ?? ANY}:${r.lv ?? ANY}`;
}

/** The moves recorded in `vg`'s tags. */
export function movesOf(vg: VgModel): MoveRecord[] {
  const out: MoveRecord[] = [];
  for (const t of vg.tags) {
    if (!t.startsWith(TAG_PREFIX)) continue;
    const [src, dst, lv] = t.slice(TAG_PREFIX.length).split(':');
    if (src === undefined || dst === undefined || lv === undefined) throw new SanboxError('EINVAL', `VG ${vg.name}: malformed pvmove record tag '${t}'`);
    out.push({ vg: vg.name, srcPvId: src, dstPvId: dst === ANY ? undefined : dst, lv: lv === ANY ? undefined : lv });
  }
  return out;
}

/**
 * One chunk to move: one PE, row 0 of area `area` of the segment that starts at LE `le` of `lv`
 * (a linear segment has one area, and a row is one LE; a k-stripe segment's row is k LEs, one PE
 * of each area), from `srcKey`:`srcPe` to `dstKey`:`dstPe`.
 */
export interface Chunk {
  lv: LvModel;
  le: number;
  /** The index of the moved area (stripe) in the segment's `stripes`: 0 for a linear segment. */
  area: number;
  srcKey: string;
  srcPe: number;
  dstKey: string;
  dstPe: number;
  /** PEs of the moved LVs still on the source, this chunk included. */
  left: number;
}

function keyOf(vg: VgModel, pvId: string, what: string): string {
  const pv = vg.pvs.find((p) => p.id === pvId);
  if (pv === undefined) throw new SanboxError('ENOENT', `VG ${vg.name}: the ${what} PV ${pvId} of the move is not in the VG`);
  return pv.key;
}

/** How a PV is named in an error: the device it was found on when known, else its key and uuid. */
export type PvNamer = (key: string) => string;

function defaultNamer(vg: VgModel): PvNamer {
  return (key) => {
    const pv = vg.pvs.find((p) => p.key === key);
    return pv?.device ?? `${key} (${pv?.id ?? '?'})`;
  };
}

/** A segment of a moved LV with an area (or more) on the source PV. */
interface SourceSegment {
  lv: LvModel;
  seg: SegmentModel;
  /** The indexes of its areas on the source. */
  areas: number[];
}

/** The segments of `r`'s LVs with areas on `srcKey`, in LV and LE order; non-striped ones are refused by name. */
function sourceSegments(vg: VgModel, r: MoveRecord, srcKey: string): SourceSegment[] {
  const lvs = vg.lvs.filter((l) => r.lv === undefined || l.name === r.lv);
  if (r.lv !== undefined && lvs.length === 0) throw new SanboxError('ENOENT', `logical volume ${vg.name}/${r.lv} not found`);
  const srcOnly = new Set([srcKey]);
  const out: SourceSegment[] = [];
  for (const lv of lvs) {
    for (const seg of lv.segments) {
      // segmentPvAreas lists every stripe of a striped segment (whatever the key set): filter.
      if (!segmentPvAreas(seg, srcOnly).some((a) => a.pv === srcKey)) continue;
      if (seg.type !== 'striped') throw new SanboxError('EINVAL', `${vg.name}/${lv.name}: its ${seg.type} segment at LE ${seg.startExtent} is on the source PV; sanbox's pvmove moves linear and striped segments only`);
      out.push({ lv, seg, areas: seg.stripes.flatMap((st, j) => (st.pv === srcKey ? [j] : [])) });
    }
  }
  return out;
}

/**
 * The PVs area `area` of `s` may move to: `dstKeys` without the PVs that hold the segment's other
 * areas (two stripes of one segment on one PV would no longer be striped over PVs: lvm2's pvmove
 * refuses such a destination, "Insufficient suitable allocatable extents"). None: refused by name.
 */
function destinationsFor(vg: VgModel, s: SourceSegment, area: number, dstKeys: string[], named: string | undefined, nameOf: PvNamer): string[] {
  const others = new Map(s.seg.stripes.flatMap((st, j) => (j !== area ? [[st.pv, j] as const] : [])));
  const ok = dstKeys.filter((k) => !others.has(k));
  if (ok.length > 0) return ok;
  const what = `${vg.name}/${s.lv.name}: stripe ${area} of its ${s.seg.stripeCount}-stripe segment at LE ${s.seg.startExtent}`;
  if (named !== undefined) {
    throw new SanboxError('EINVAL', `${what} cannot move to ${nameOf(named)}: that PV holds stripe ${others.get(named)} of the same segment, and two stripes of a segment never share a PV; name another destination`);
  }
  throw new SanboxError('ENOSPC', `${what} has no PV to move to: every other allocatable PV of the VG holds another stripe of the same segment`);
}

function moveKeys(vg: VgModel, r: MoveRecord): { srcKey: string; dstKeys: string[] } {
  const srcKey = keyOf(vg, r.srcPvId, 'source');
  const dstKeys =
    r.dstPvId !== undefined ? [keyOf(vg, r.dstPvId, 'destination')] : vg.pvs.filter((p) => p.key !== srcKey && p.status.includes('ALLOCATABLE')).map((p) => p.key);
  if (dstKeys.includes(srcKey)) throw new SanboxError('EINVAL', `VG ${vg.name}: a move's source and destination are the same PV`);
  return { srcKey, dstKeys };
}

/**
 * Throws what the whole move `r` would be refused for — a segment type sanbox does not move, a
 * stripe whose only destinations hold another stripe of its segment — before anything is written.
 * Space is not checked here: the destinations fill chunk by chunk, and a full one stops the move
 * (resumable) as lvm2's does. Pure.
 */
export function checkMove(vg: VgModel, r: MoveRecord, nameOf: PvNamer = defaultNamer(vg)): void {
  const { srcKey, dstKeys } = moveKeys(vg, r);
  for (const s of sourceSegments(vg, r, srcKey)) for (const area of s.areas) destinationsFor(vg, s, area, dstKeys, r.dstPvId === undefined ? undefined : dstKeys[0], nameOf);
}

/** The next chunk of move `r` in `vg`, or undefined when nothing of it is left on the source. Pure. */
export function nextChunk(vg: VgModel, r: MoveRecord, nameOf: PvNamer = defaultNamer(vg)): Chunk | undefined {
  const { srcKey, dstKeys } = moveKeys(vg, r);
  const segs = sourceSegments(vg, r, srcKey);
  const first = segs[0];
  if (first === undefined) return undefined;
  const left = segs.reduce((n, s) => n + (s.areas.length * s.seg.extentCount) / s.seg.stripeCount, 0);
  const { lv, seg } = first;
  const area = first.areas[0]!;
  const k = seg.stripeCount;
  const candidates = destinationsFor(vg, first, area, dstKeys, r.dstPvId === undefined ? undefined : dstKeys[0], nameOf);
  // Prefer the PE right after where this area's previous row went (the segment before this one,
  // striped alike), so moved rows merge into one segment.
  const prev = lv.segments.find((s) => s.startExtent + s.extentCount === seg.startExtent && s.type === 'striped' && s.stripeCount === k && s.stripeSizeSectors === seg.stripeSizeSectors);
  const prevArea = prev?.stripes[area];
  const isFree = (key: string, pe: number): boolean => freeRanges(vg, key).some((f) => pe >= f.startPe && pe < f.startPe + f.count);
  let dst: { key: string; pe: number } | undefined;
  if (prev !== undefined && prevArea !== undefined && candidates.includes(prevArea.pv)) {
    const pe = prevArea.firstPe + prev.extentCount / k;
    if (isFree(prevArea.pv, pe)) dst = { key: prevArea.pv, pe };
  }
  for (const key of candidates) {
    if (dst !== undefined) break;
    const f = freeRanges(vg, key)[0];
    if (f !== undefined) dst = { key, pe: f.startPe };
  }
  const what = k > 1 ? `${lv.name}'s stripe ${area} at LE ${seg.startExtent}` : `${lv.name}'s LE ${seg.startExtent}`;
  if (dst === undefined) throw new SanboxError('ENOSPC', `VG ${vg.name}: no free extent on ${r.dstPvId !== undefined ? `destination PV ${r.dstPvId}` : 'any other PV'} for ${what}`);
  return { lv, le: seg.startExtent, area, srcKey, srcPe: seg.stripes[area]!.firstPe, dstKey: dst.key, dstPe: dst.pe, left };
}

/**
 * `lv`'s segments with the row that starts at LE `le` (a stripe-row boundary of its segment; any
 * LE of a linear one) having its area `area` at `dstKey`:`dstPe`. The segment splits at the row's
 * boundaries: the part before keeps its areas, the row gets the new area and the others advanced
 * to the row, the part after has every area advanced past it (a k-stripe segment split at area
 * extent r is two segments of r·k and the rest LEs, mapping every byte as before, since
 * stripe_size divides extent_size: vg-check). Adjacent segments that continue each other merge
 * (as lvm2's lv_merge_segments). Pure.
 */
export function remapExtent(lv: LvModel, le: number, dstKey: string, dstPe: number, area = 0): SegmentModel[] {
  const out: SegmentModel[] = [];
  for (const s of lv.segments) {
    const end = s.startExtent + s.extentCount;
    if (le < s.startExtent || le >= end) {
      out.push(s);
      continue;
    }
    if (s.type !== 'striped') throw new SanboxError('EINVAL', `${lv.name}: LE ${le} is in a ${s.type} segment; only linear and striped segments move`);
    const k = s.stripeCount;
    const rel = le - s.startExtent;
    if (rel % k !== 0) throw new SanboxError('EINVAL', `${lv.name}: LE ${le} is not at a stripe-row boundary of its ${k}-stripe segment at LE ${s.startExtent}`);
    if (!Number.isInteger(area) || area < 0 || area >= k) throw new SanboxError('EINVAL', `${lv.name}: the segment at LE ${s.startExtent} has no stripe ${area}`);
    const row = rel / k;
    const advanced = (rows: number): SegmentModel['stripes'] => s.stripes.map((st) => ({ pv: st.pv, firstPe: st.firstPe + rows }));
    if (row > 0) out.push({ ...s, extentCount: rel, stripes: advanced(0) });
    out.push({ ...s, startExtent: le, extentCount: k, stripes: advanced(row).map((st, j) => (j === area ? { pv: dstKey, firstPe: dstPe } : st)) });
    if (le + k < end) out.push({ ...s, startExtent: le + k, extentCount: end - le - k, stripes: advanced(row + 1) });
  }
  return mergeSegments(out);
}

/** What one chunk did. */
export interface ChunkDone {
  lv: string;
  le: number;
  /** The moved stripe, for a striped segment (k > 1); undefined for a linear one. */
  stripe: number | undefined;
  from: string;
  to: string;
  /** Extents still on the source after this chunk. */
  left: number;
  seqno: number;
}

/**
 * Runs one step of the move: `affected` names the LVs the step changes (given the VG read under
 * the VG lock), `step` does it. The cluster's guard is the lock-out (lockout.ts); the local one
 * takes the LVs' host in-use guards.
 */
export type ChunkGuard = <T>(affected: (vg: VgModel) => { name: string; id: string }[], step: () => Promise<T>) => Promise<T>;

/** Without a cluster: a chunk is refused (EBUSY) while a process on this host has the LV open. */
export function localGuard(specs: string[], vgName: string): ChunkGuard {
  return async (affected, step) => {
    const vg = await withSession(specs, { readOnly: true, guard: 'none' }, async (s) => s.vg(vgName).vg);
    const releases = affected(vg).map((lv) => acquireLvGuard(`${vgName}/${lv.name}`, lv.id, 'exclusive'));
    try {
      return await step();
    } finally {
      for (const r of releases) r();
    }
  };
}

class NothingLeft extends Error {}

/** A PV key's device name in `h` (the key itself when no device holds it), kept past `h`'s session. */
function namerOf(h: { pvByKey: Map<string, { dev: { name: string } }> }): PvNamer {
  const byKey = new Map([...h.pvByKey].map(([key, pv]) => [key, pv.dev.name]));
  return (key) => byKey.get(key) ?? key;
}

async function moveChunk(specs: string[], r: MoveRecord, ctx: CommitContext): Promise<ChunkDone | undefined> {
  let done: Omit<ChunkDone, 'seqno'> | undefined;
  try {
    const vg = await vgModifyWithIo(specs, r.vg, ctx, async (next, h) => {
      const c = nextChunk(next, r, namerOf(h));
      if (c === undefined) throw new NothingLeft();
      const extentBytes = next.extentSizeSectors * LVM_SECTOR_BYTES;
      const src = next.pvs.find((p) => p.key === c.srcKey)!;
      const dst = next.pvs.find((p) => p.key === c.dstKey)!;
      const srcDev = h.pvByKey.get(c.srcKey)!.dev;
      const dstDev = h.pvByKey.get(c.dstKey)!.dev;
      const buf = Buffer.alloc(extentBytes * PVMOVE_CHUNK_EXTENTS);
      // The copy is on disk before the commit that makes it the extent's home.
      await srcDev.read(buf, src.peStartSectors * LVM_SECTOR_BYTES + c.srcPe * extentBytes);
      await dstDev.write(buf, dst.peStartSectors * LVM_SECTOR_BYTES + c.dstPe * extentBytes);
      await dstDev.flush();
      const lv = next.lvs.find((l) => l.id === c.lv.id)!;
      const striped = lv.segments.find((s) => s.startExtent === c.le)!.stripeCount > 1;
      lv.segments = remapExtent(lv, c.le, c.dstKey, c.dstPe, c.area);
      done = { lv: lv.name, le: c.le, stripe: striped ? c.area : undefined, from: `${srcDev.name}:${c.srcPe}`, to: `${dstDev.name}:${c.dstPe}`, left: c.left - 1 };
    });
    return { ...done!, seqno: vg.seqno };
  } catch (err) {
    if (err instanceof NothingLeft) return undefined;
    throw err;
  }
}

async function setRecord(specs: string[], r: MoveRecord, present: boolean, ctx: CommitContext): Promise<void> {
  const tag = moveTag(r);
  await vgModifyWithIo(specs, r.vg, ctx, async (vg) => {
    vg.tags = present ? [...vg.tags.filter((t) => t !== tag), tag] : vg.tags.filter((t) => t !== tag);
  });
}

/**
 * Moves (or, recorded already, resumes moving) what `r` names off its source PV, chunk by chunk,
 * each under `guard`; `progress` hears of every chunk. Records the move first and removes the
 * record at the end. Returns the number of chunks moved.
 */
export async function pvMove(specs: string[], r: MoveRecord, ctx: CommitContext, guard: ChunkGuard, progress: (c: ChunkDone, total: number) => void): Promise<number> {
  const { vg0, names } = await withSession(specs, { readOnly: true, guard: 'none' }, async (s) => {
    const h = s.vg(r.vg);
    return { vg0: h.vg, names: namerOf(h) };
  });
  // Refused as a whole before the move is recorded: nothing written.
  checkMove(vg0, r, names);
  const first = nextChunk(vg0, r, names);
  const total = first?.left ?? 0;
  if (!movesOf(vg0).some((m) => moveTag(m) === moveTag(r))) await guard(() => [], () => setRecord(specs, r, true, ctx));
  let n = 0;
  for (;;) {
    const c = await guard(
      (vg) => {
        const next = nextChunk(vg, r);
        return next === undefined ? [] : [{ name: next.lv.name, id: next.lv.id }];
      },
      () => moveChunk(specs, r, ctx),
    );
    if (c === undefined) break;
    n++;
    progress(c, total);
  }
  await guard(() => [], () => setRecord(specs, r, false, ctx));
  return n;
}

/** pvmove --abort: removes the record; moved extents stay where they went (lvm2's non-atomic abort). */
export async function pvMoveAbort(specs: string[], r: MoveRecord, ctx: CommitContext, guard: ChunkGuard): Promise<void> {
  await guard(() => [], () => setRecord(specs, r, false, ctx));
}

/**
 * The moves a `pvmove [SRC [DST]] [-n LV]` command means: with SRC, the move of SRC (resumed if
 * one is recorded — with the same DST and LV, else refused); without, every move recorded in a VG
 * on `specs` (none: an error).
 */
export async function resolveMoves(specs: string[], src: string | undefined, dst: string | undefined, lv: string | undefined): Promise<MoveRecord[]> {
  return withSession(specs, { readOnly: true, guard: 'none' }, async (s) => {
    if (src === undefined) {
      if (dst !== undefined || lv !== undefined) throw new SanboxError('EINVAL', 'a destination PV or -n LV needs a source PV');
      const all = s.vgNames().flatMap((name) => movesOf(s.vg(name).vg));
      if (all.length === 0) throw new SanboxError('ENOENT', 'no pvmove in progress on these devices');
      return all;
    }
    const pv = s.pvOn(src);
    const vgName = pvInUse(pv);
    if (vgName === undefined) throw new SanboxError('EINVAL', `${src}: physical volume is not in a volume group; nothing to move`, { device: src });
    let dstPvId: string | undefined;
    if (dst !== undefined) {
      const d = s.pvOn(dst);
      if (pvInUse(d) !== vgName) throw new SanboxError('EINVAL', `${dst}: physical volume is not in volume group ${vgName} (the source's)`, { device: dst });
      if (d === pv) throw new SanboxError('EINVAL', `${dst}: the source and destination are the same PV`, { device: dst });
      dstPvId = d.label.pvId;
    }
    const vg = s.vg(vgName).vg;
    const srcPvId = vg.pvs.find((p) => p.id === pv.label.pvId)?.id ?? pv.label.pvId;
    const wanted: MoveRecord = { vg: vgName, srcPvId, dstPvId: dstPvId !== undefined ? (vg.pvs.find((p) => p.id === dstPvId)?.id ?? dstPvId) : undefined, lv };
    const recorded = movesOf(vg).filter((m) => m.srcPvId === srcPvId);
    if (recorded.length === 0) return [wanted];
    const same = recorded.find((m) => (dst === undefined || m.dstPvId === wanted.dstPvId) && (lv === undefined || m.lv === lv));
    if (same === undefined) throw new SanboxError('EBUSY', `${src}: another move off this PV is in progress (${moveTag(recorded[0]!)}); run pvmove without arguments to resume it, or pvmove --abort`, { device: src });
    return [same];
  });
}
