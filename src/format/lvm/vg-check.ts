// What lvm2 refuses in VG metadata, split the way lvm2 splits it (measured with the real 2.03.16
// `vgs` and `vgck` on crafted metadata: test/lvm-differential.test.ts):
//  - refused on read (`vgs` does not list the VG): the parser throws (vg-text.ts), e.g. two LVs
//    with one name, overlapping or out-of-range extents, unknown status flags;
//  - read, but `vgck` fails or lvm2 refuses to change it: `vgDefects` lists these, and sanbox reads
//    such a VG (so it can be reported) but never writes it or opens its LVs.
// Also the names lvm2 reserves for its own internal LVs (lvcreate/lvrename refuse them).

import { isValidLvmName } from './vg-text.js';
import type { SegmentModel, VgModel } from './vg-model.js';

/** Status flags lvm2 knows (lib/format_text/flags.c); an unknown one makes lvm2 refuse the VG. */
export const VG_STATUS_FLAGS: readonly string[] = ['EXPORTED', 'RESIZEABLE', 'PARTIAL', 'PVMOVE', 'READ', 'WRITE', 'WRITE_LOCKED', 'CLUSTERED', 'SHARED'];
export const PV_STATUS_FLAGS: readonly string[] = ['ALLOCATABLE', 'EXPORTED', 'MISSING'];
export const LV_STATUS_FLAGS: readonly string[] = [
  'READ', 'WRITE', 'WRITE_LOCKED', 'FIXED_MINOR', 'VISIBLE', 'PVMOVE', 'LOCKED', 'NOTSYNCED', 'REBUILD', 'RESHAPE',
  'RESHAPE_DATA_OFFSET', 'DATA_OFFSET_DESC', 'RESHAPE_DELTA_DISKS_PLUS', 'RESHAPE_DELTA_DISKS_MINUS', 'PARTIAL_LV',
  'WRITEMOSTLY', 'ACTIVATION_SKIP', 'ERROR_WHEN_FULL', 'METADATA_FORMAT', 'CACHE_VOL', 'CACHE_USES_CACHEVOL',
  'CROP_METADATA', 'NOSCAN', 'TEMPORARY', 'POOL_METADATA_SPARE', 'LOCKD_SANLOCK_LV', 'REMOVED', 'MERGING',
  'CONVERTING', 'MIRRORED', 'MIRROR_IMAGE', 'MIRROR_LOG', 'RAID', 'RAID_IMAGE', 'RAID_META', 'THIN_POOL',
  'THIN_POOL_DATA', 'THIN_POOL_METADATA', 'THIN_VOLUME', 'CACHE', 'CACHE_POOL', 'CACHE_POOL_DATA', 'CACHE_POOL_METADATA',
  'SNAPSHOT', 'VIRTUAL', 'VIRTUAL_ORIGIN', 'INTEGRITY', 'INTEGRITY_METADATA', 'WRITECACHE', 'VDO', 'VDO_POOL', 'VDO_POOL_DATA',
];

/** Segment types lvm2 2.03 knows; any other makes lvm2 refuse to change the VG ("unknown segments"). */
export const KNOWN_SEGMENT_TYPES: readonly string[] = [
  'striped', 'linear', 'mirror', 'snapshot', 'error', 'zero', 'free', 'thin-pool', 'thin', 'cache-pool', 'cache',
  'writecache', 'integrity', 'vdo', 'vdo-pool', 'raid0', 'raid0_meta', 'raid1', 'raid10', 'raid10_near', 'raid4', 'raid5',
  'raid5_n', 'raid5_la', 'raid5_ra', 'raid5_ls', 'raid5_rs', 'raid6', 'raid6_n_6', 'raid6_zr', 'raid6_nr', 'raid6_nc',
  'raid6_ls_6', 'raid6_rs_6', 'raid6_la_6', 'raid6_ra_6',
];

/** Smallest extent lvm2 creates: 1 KiB = 2 sectors (vgcreate -s); sanbox also needs a power of 2. */
const EXTENT_SIZE_MIN_SECTORS = 2;

/**
 * LV names lvm2 reserves (lib/metadata/lv_manip.c `apply_lvname_restrictions`): the prefixes
 * "snapshot" and "pvmove", and the suffixes of its internal sub-LVs.
 */
const RESERVED_PREFIXES = ['snapshot', 'pvmove'];
const RESERVED_SUFFIXES = ['_cdata', '_cmeta', '_corig', '_cpool', '_cvol', '_imeta', '_iorig', '_mimage', '_mlog', '_pmspare', '_rimage', '_rmeta', '_tdata', '_tmeta', '_vdata', '_vorigin', '_wcorig'];

/** Why lvm2 would refuse `name` for a new LV, or undefined. */
export function reservedLvName(name: string): string | undefined {
  for (const p of RESERVED_PREFIXES) if (name.startsWith(p)) return `names starting with "${p}" are reserved by lvm2`;
  for (const s of RESERVED_SUFFIXES) if (name.includes(s)) return `names containing "${s}" are reserved by lvm2 for its internal volumes`;
  return undefined;
}

/** A segment's PV areas: striped stripes, and ("pvN", PE) pairs in other types' area lists (pvmove mirrors). */
export function segmentPvAreas(seg: SegmentModel, pvKeys: ReadonlySet<string>): { pv: string; firstPe: number; count: number }[] {
  if (seg.type === 'striped') return seg.stripes.map((st) => ({ pv: st.pv, firstPe: st.firstPe, count: seg.extentCount / seg.stripeCount }));
  const out: { pv: string; firstPe: number; count: number }[] = [];
  for (const e of seg.extra) {
    if (!('value' in e) || !Array.isArray(e.value)) continue;
    const arr = e.value;
    // Whatever the type, an area list names a PV by its key followed by its first PE; count the
    // whole segment on it (an over-estimate is safe: those extents are never handed out again).
    for (let i = 0; i + 1 < arr.length; i++) {
      const pv = arr[i];
      const pe = arr[i + 1];
      if (typeof pv === 'string' && pvKeys.has(pv) && typeof pe === 'number') out.push({ pv, firstPe: pe, count: seg.extentCount });
    }
  }
  return out;
}

export interface VgFindings {
  /** lvm2's `vgck` fails on these (while `vgs` lists the VG). */
  defects: string[];
  /**
   * lvm2 passes these, but sanbox cannot be sure what a change would overwrite (extents of a
   * segment type it does not know, an extent or stripe size it cannot map, an ambiguous PV key):
   * it reads such a VG and refuses to change it or open its LVs. lvm2 itself refuses to change a
   * VG with unknown segment types.
   */
  cautions: string[];
}

/** What lvm2's `vgck` would fail on, and what sanbox will not write over (see VgFindings). */
export function vgFindings(vg: VgModel): VgFindings {
  const out: string[] = [];
  const cautions: string[] = [];
  const seen = new Map<string, string>();
  for (const p of vg.pvs) {
    const twin = seen.get(p.id);
    if (twin) out.push(`${p.key} and ${twin} are the same physical volume`);
    seen.set(p.id, p.key);
  }
  const keys = vg.pvs.map((p) => p.key);
  for (const [i, k] of keys.entries()) if (keys.indexOf(k) !== i) cautions.push(`two physical volumes are keyed ${k}`);
  const es = vg.extentSizeSectors;
  if (!Number.isSafeInteger(es) || es < EXTENT_SIZE_MIN_SECTORS || (es & (es - 1)) !== 0) cautions.push(`extent_size ${es} is not a power of 2 of at least ${EXTENT_SIZE_MIN_SECTORS} sectors`);
  const lvIds = new Map<string, string>();
  for (const lv of vg.lvs) {
    if (!isValidLvmName(lv.name)) out.push(`invalid LV name '${lv.name}'`);
    const twin = lvIds.get(lv.id);
    if (twin) out.push(`LVs ${twin} and ${lv.name} have the same id`);
    lvIds.set(lv.id, lv.name);
    for (const seg of lv.segments) {
      if (!KNOWN_SEGMENT_TYPES.includes(seg.type)) cautions.push(`LV ${lv.name} has a segment of unknown type '${seg.type}'`);
      const ss = seg.stripeSizeSectors;
      if (seg.type === 'striped' && seg.stripeCount > 1 && ss !== undefined && (ss <= 0 || (ss & (ss - 1)) !== 0 || es % ss !== 0)) {
        cautions.push(`LV ${lv.name}: stripe_size ${ss} is not a power of 2 dividing extent_size ${es}`);
      }
    }
  }
  return { defects: out, cautions };
}
