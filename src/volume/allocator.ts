// Extent allocation inside a VG. Pure functions over the model: which PEs are used (by every LV
// segment), which are free, and new segments for a new or growing LV. Allocation never overlaps
// (checked again by `checkNoOverlap` before every commit), spans PVs when one is not enough, and
// refuses to go beyond the free extents.

import { SanboxError } from '../errors.js';
import { segmentPvAreas } from '../format/lvm/vg-check.js';
import type { LvModel, SegmentModel, VgModel } from '../format/lvm/vg-model.js';

export interface PeRange {
  startPe: number;
  count: number;
}

/** lvcreate's default stripe size: 64 KiB = 128 sectors. */
export const DEFAULT_STRIPE_SIZE_SECTORS = 128;
/** Smallest stripe size LVM accepts: 4 KiB (one page). */
export const STRIPE_SIZE_MIN_SECTORS = 8;

/**
 * Used PE ranges per PV key: every striped segment, and with `allAreas` also the PV areas other
 * segment types name (pvmove's mirrors): extents of a segment sanbox does not interpret are never
 * free (issue 15: they once were, and a new LV was placed over one).
 */
export function usedRanges(vg: VgModel, allAreas = true): Map<string, (PeRange & { lv: string })[]> {
  const used = new Map<string, (PeRange & { lv: string })[]>();
  for (const pv of vg.pvs) used.set(pv.key, []);
  const keys = new Set(vg.pvs.map((p) => p.key));
  for (const lv of vg.lvs) {
    for (const seg of lv.segments) {
      if (seg.type !== 'striped' && !allAreas) continue;
      for (const a of segmentPvAreas(seg, keys)) used.get(a.pv)?.push({ startPe: a.firstPe, count: a.count, lv: lv.name });
    }
  }
  for (const list of used.values()) list.sort((a, b) => a.startPe - b.startPe);
  return used;
}

/** Throws if two segments share a PE or one runs past its PV (a bug, or corrupt metadata). */
export function checkNoOverlap(vg: VgModel): void {
  for (const [key, list] of usedRanges(vg, false)) {
    const pv = vg.pvs.find((p) => p.key === key)!;
    let end = 0;
    let prev = '';
    for (const r of list) {
      if (r.startPe < end) throw new SanboxError('EINVAL', `VG ${vg.name}: ${r.lv} and ${prev} overlap on ${key} at PE ${r.startPe}`);
      end = r.startPe + r.count;
      prev = r.lv;
      if (end > pv.peCount) throw new SanboxError('EINVAL', `VG ${vg.name}: ${r.lv} uses PE ${end - 1} of ${key}, which has ${pv.peCount}`);
    }
  }
}

export function freeRanges(vg: VgModel, pvKey: string): PeRange[] {
  const pv = vg.pvs.find((p) => p.key === pvKey);
  if (!pv) return [];
  const out: PeRange[] = [];
  let at = 0;
  for (const r of usedRanges(vg).get(pvKey) ?? []) {
    if (r.startPe > at) out.push({ startPe: at, count: r.startPe - at });
    at = Math.max(at, r.startPe + r.count);
  }
  if (pv.peCount > at) out.push({ startPe: at, count: pv.peCount - at });
  return out;
}

export function freeExtents(vg: VgModel, pvKey?: string): number {
  const keys = pvKey ? [pvKey] : vg.pvs.filter((p) => p.status.includes('ALLOCATABLE')).map((p) => p.key);
  return keys.reduce((n, k) => n + freeRanges(vg, k).reduce((m, r) => m + r.count, 0), 0);
}

export interface AllocOptions {
  stripes?: number;
  stripeSizeSectors?: number;
  /** Restrict allocation to these PV keys (in this order). */
  pvKeys?: string[];
}

function insufficient(vg: VgModel, needed: number, available: number, what = 'extents'): never {
  throw new SanboxError('EINVAL', `insufficient free space in VG ${vg.name}: ${needed} ${what} needed, but only ${available} available`);
}

/** Rounds a request up to whole stripes, as lvcreate does. */
export function roundToStripes(extents: number, stripes: number): number {
  return Math.ceil(extents / stripes) * stripes;
}

/**
 * Segments for `extents` more logical extents of `lv` (a new LV has no segments). Linear: continue
 * right after the LV's last PE when that is free, then first fit in PV order, across PVs.
 * Striped: one contiguous range of extents/stripes PEs on each of `stripes` different PVs.
 */
export function allocateSegments(vg: VgModel, lv: LvModel, extents: number, opts: AllocOptions = {}): SegmentModel[] {
  if (!Number.isSafeInteger(extents) || extents < 1) throw new SanboxError('EINVAL', `cannot allocate ${extents} extents`);
  const stripes = opts.stripes ?? 1;
  const startExtent = lv.segments.reduce((n, s) => n + s.extentCount, 0);
  const allocatable = vg.pvs.filter((p) => p.status.includes('ALLOCATABLE') && (!opts.pvKeys || opts.pvKeys.includes(p.key)));
  const order = opts.pvKeys ? opts.pvKeys.map((k) => allocatable.find((p) => p.key === k)).filter((p) => p !== undefined) : allocatable;
  const available = order.reduce((n, p) => n + freeExtents(vg, p.key), 0);
  if (stripes > 1) {
    const stripeSizeSectors = opts.stripeSizeSectors ?? DEFAULT_STRIPE_SIZE_SECTORS;
    if (extents % stripes !== 0) throw new SanboxError('EINVAL', `${extents} extents is not a multiple of ${stripes} stripes`);
    if (order.length < stripes) throw new SanboxError('EINVAL', `VG ${vg.name}: ${stripes} stripes need ${stripes} PVs, but only ${order.length} are allocatable`);
    if (extents > available) insufficient(vg, extents, available);
    const per = extents / stripes;
    const picked: { pv: string; firstPe: number }[] = [];
    for (const p of order) {
      const r = freeRanges(vg, p.key).find((x) => x.count >= per);
      if (r) picked.push({ pv: p.key, firstPe: r.startPe });
      if (picked.length === stripes) break;
    }
    if (picked.length < stripes) {
      throw new SanboxError('EINVAL', `insufficient contiguous free space in VG ${vg.name}: ${stripes} stripes of ${per} extents need ${stripes} PVs with that much contiguous free space, found ${picked.length}`);
    }
    return [{ startExtent, extentCount: extents, type: 'striped', stripeCount: stripes, stripeSizeSectors, stripes: picked, tags: [], extra: [] }];
  }
  if (extents > available) insufficient(vg, extents, available);
  const segs: SegmentModel[] = [];
  const free = new Map(order.map((p) => [p.key, freeRanges(vg, p.key)]));
  let left = extents;
  let le = startExtent;
  // Takes from the start of a free range, so the working free map stays exact.
  const take = (pv: string, r: PeRange): void => {
    const count = Math.min(r.count, left);
    segs.push({ startExtent: le, extentCount: count, type: 'striped', stripeCount: 1, stripeSizeSectors: undefined, stripes: [{ pv, firstPe: r.startPe }], tags: [], extra: [] });
    r.startPe += count;
    r.count -= count;
    le += count;
    left -= count;
  };
  // Contiguous with the LV's tail first.
  const last = lv.segments[lv.segments.length - 1];
  if (last && last.type === 'striped' && last.stripeCount === 1) {
    const pv = last.stripes[0]!.pv;
    const r = free.get(pv)?.find((x) => x.startPe === last.stripes[0]!.firstPe + last.extentCount);
    if (r) take(pv, r);
  }
  for (const p of order) {
    for (const r of free.get(p.key)!) {
      if (left === 0) break;
      if (r.count > 0) take(p.key, r);
    }
  }
  if (left > 0) insufficient(vg, extents, available);
  return segs;
}

/**
 * Joins a striped segment (linear: one stripe) to the previous one when it continues it: the same
 * stripe count and size, and every area continuing the previous one's on the same PV, as lvm2's
 * lv_merge_segments joins them (lib/striped/striped.c: area_count, stripe_size, and each area's
 * PV and first PE + area_len equal).
 */
export function mergeSegments(segs: SegmentModel[]): SegmentModel[] {
  const out: SegmentModel[] = [];
  for (const s of segs) {
    const p = out[out.length - 1];
    const k = s.stripeCount;
    if (
      p &&
      p.type === 'striped' &&
      s.type === 'striped' &&
      p.stripeCount === k &&
      (k === 1 || p.stripeSizeSectors === s.stripeSizeSectors) &&
      p.stripes.length === k &&
      s.stripes.length === k &&
      s.stripes.every((st, j) => p.stripes[j]!.pv === st.pv && p.stripes[j]!.firstPe + p.extentCount / k === st.firstPe) &&
      p.tags.length === 0 &&
      s.tags.length === 0
    ) {
      out[out.length - 1] = { ...p, extentCount: p.extentCount + s.extentCount };
    } else out.push({ ...s });
  }
  return out;
}

/** The LV cut down to `extents` logical extents (from the end). */
export function reduceSegments(lv: LvModel, extents: number): SegmentModel[] {
  const out: SegmentModel[] = [];
  for (const s of lv.segments) {
    if (s.startExtent >= extents) break;
    if (s.startExtent + s.extentCount <= extents) {
      out.push(s);
      continue;
    }
    const keep = extents - s.startExtent;
    if (s.type !== 'striped') throw new SanboxError('EINVAL', `cannot reduce a ${s.type} segment of ${lv.name}`);
    if (keep % s.stripeCount !== 0) throw new SanboxError('EINVAL', `${lv.name}: new size must be a multiple of ${s.stripeCount} stripes within its striped segment`);
    out.push({ ...s, extentCount: keep });
  }
  return out;
}
