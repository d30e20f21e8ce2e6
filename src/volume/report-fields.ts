// lvm2's report fields for `pvs`, `vgs`, `lvs`: names, column headings, kinds and how sanbox
// computes each from the metadata. Headings, value words ("allocatable", "writeable",
// "unmanaged", …) and formats were read off lvm2 2.03.16's own reports (`pvs -o FIELD` on loop
// devices); test/lvm-report.test.ts compares them field by field with the real tools.
//
// Only fields sanbox can answer truthfully are listed. Fields about kernel state (device-mapper
// activation, open counts, kernel major/minor) and about segment types sanbox does not create
// (thin, cache, raid, vdo, snapshots) are known by name and refused with an error saying why,
// rather than printed blank or guessed. An LV's activation state is always "not active in the
// kernel": sanbox opens LVs in its own processes, there is no device-mapper.

import { dashId } from '../format/lvm/uuid.js';
import { LVM_SECTOR_BYTES, lvExtentCount, type LvModel, type SegmentModel, type VgModel } from '../format/lvm/vg-model.js';
import { RAW_LOCN_IGNORED } from '../format/lvm/mda-header.js';
import type { PvState } from './pv.js';
import { lvAttr, type PvRow, type VgRow } from './report.js';

/** How a value is printed and sorted: sizes follow --units; numbers and binary words as they are. */
export type FieldType = 'size' | 'number' | 'string' | 'binary';

export interface VgSubject {
  vg: VgModel;
  row: VgRow;
  /** The PVs of this VG that are in the device list. */
  pvs: PvState[];
}

export interface PvSubject {
  row: PvRow;
  pv: PvState;
  vg: VgSubject | undefined;
}

export interface LvSubject {
  vg: VgSubject;
  lv: LvModel;
}

export interface SegSubject {
  lv: LvSubject;
  seg: SegmentModel;
  /** The device name of a PV key, as segments name PVs. */
  pvName: (key: string) => string;
}

export type FieldValue = string | number | { bytes: number };

export interface FieldDef<S> {
  name: string;
  heading: string;
  type: FieldType;
  value: (s: S) => FieldValue;
}

const bytes = (n: number): { bytes: number } => ({ bytes: n });
const word = (set: boolean, w: string): string => (set ? w : '');
const sectors = (n: number | undefined): { bytes: number } => bytes((n ?? 0) * LVM_SECTOR_BYTES);

function mdaSizes(pvs: PvState[]): number[] {
  return pvs.flatMap((p) => p.mdas.map((m) => m.area.sizeBytes));
}
/**
 * An LV's read-ahead as lvm2 means its metadata value: absent or 0 = auto, -1 = none (0 sectors),
 * N = N sectors (lvm2 2.03.16: `lvchange -r none` writes -1, `-r auto` drops the key).
 */
export function readAheadSectors(lv: LvModel): number | 'auto' {
  const raw = lv.readAhead;
  if (raw === undefined || raw === 0) return 'auto';
  return raw < 0 ? 0 : raw;
}

/** lvm2 lists tags sorted, comma-separated. */
const tagList = (tags: string[]): string => [...tags].sort().join(',');

/** lvm2 reports the smallest metadata area; 0 when there is none. */
function smallest(sizes: number[]): number {
  return sizes.length ? Math.min(...sizes) : 0;
}
function usedMdas(pvs: PvState[]): number {
  return pvs.reduce((n, p) => n + p.mdas.filter((m) => (m.header.locns[0].flags & RAW_LOCN_IGNORED) === 0).length, 0);
}

/** lvm2's date form for lv_time: local time with its UTC offset, "2026-12-05 19:58:33 +0000". */
export function reportTime(epochSec: number): string {
  const d = new Date(epochSec * 1000);
  const p = (n: number): string => String(n).padStart(2, '0');
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const a = Math.abs(off);
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${sign}${p(Math.floor(a / 60))}${p(a % 60)}`;
}

export const PV_FIELDS: FieldDef<PvSubject>[] = [
  { name: 'pv_fmt', heading: 'Fmt', type: 'string', value: (s) => s.row.pv_fmt },
  { name: 'pv_uuid', heading: 'PV UUID', type: 'string', value: (s) => s.row.pv_uuid },
  { name: 'dev_size', heading: 'DevSize', type: 'size', value: (s) => bytes(s.row.dev_size) },
  { name: 'pv_name', heading: 'PV', type: 'string', value: (s) => s.row.pv_name },
  { name: 'pv_mda_size', heading: 'PMdaSize', type: 'size', value: (s) => bytes(smallest(mdaSizes([s.pv]))) },
  { name: 'pv_ext_vsn', heading: 'PExtVsn', type: 'number', value: (s) => s.pv.label.extVersion },
  { name: 'pe_start', heading: '1st PE', type: 'size', value: (s) => bytes(s.row.pe_start) },
  { name: 'pv_size', heading: 'PSize', type: 'size', value: (s) => bytes(s.row.pv_size) },
  { name: 'pv_free', heading: 'PFree', type: 'size', value: (s) => bytes(s.row.pv_free) },
  { name: 'pv_used', heading: 'Used', type: 'size', value: (s) => bytes(s.row.pv_size - s.row.pv_free) },
  { name: 'pv_attr', heading: 'Attr', type: 'string', value: (s) => s.row.pv_attr },
  { name: 'pv_allocatable', heading: 'Allocatable', type: 'binary', value: (s) => word(s.row.pv_attr[0] === 'a', 'allocatable') },
  { name: 'pv_exported', heading: 'Exported', type: 'binary', value: (s) => word(s.row.pv_attr[1] === 'x', 'exported') },
  { name: 'pv_missing', heading: 'Missing', type: 'binary', value: (s) => word(s.row.pv_attr[2] === 'm', 'missing') },
  { name: 'pv_pe_count', heading: 'PE', type: 'number', value: (s) => s.row.pv_pe_count },
  { name: 'pv_pe_alloc_count', heading: 'Alloc', type: 'number', value: (s) => s.row.pv_pe_alloc_count },
  { name: 'pv_tags', heading: 'PV Tags', type: 'string', value: (s) => tagList(s.vg?.vg.pvs.find((p) => p.id === s.pv.label.pvId)?.tags ?? []) },
  { name: 'pv_mda_count', heading: '#PMda', type: 'number', value: (s) => s.row.pv_mda_count },
  { name: 'pv_mda_used_count', heading: '#PMdaUse', type: 'number', value: (s) => usedMdas([s.pv]) },
  { name: 'pv_ba_start', heading: 'BA Start', type: 'size', value: (s) => bytes(s.pv.label.bootloaderAreas[0]?.offsetBytes ?? 0) },
  { name: 'pv_ba_size', heading: 'BA Size', type: 'size', value: (s) => bytes(s.pv.label.bootloaderAreas[0]?.sizeBytes ?? 0) },
  { name: 'pv_in_use', heading: 'PInUse', type: 'binary', value: (s) => word(s.row.vg_name !== '', 'used') },
  { name: 'pv_duplicate', heading: 'Duplicate', type: 'binary', value: () => '' },
];

export const VG_FIELDS: FieldDef<VgSubject>[] = [
  { name: 'vg_fmt', heading: 'Fmt', type: 'string', value: (s) => s.vg.format ?? 'lvm2' },
  { name: 'vg_uuid', heading: 'VG UUID', type: 'string', value: (s) => s.row.vg_uuid },
  { name: 'vg_name', heading: 'VG', type: 'string', value: (s) => s.row.vg_name },
  { name: 'vg_attr', heading: 'Attr', type: 'string', value: (s) => s.row.vg_attr },
  { name: 'vg_permissions', heading: 'VPerms', type: 'string', value: (s) => (s.vg.status.includes('WRITE') ? 'writeable' : 'read-only') },
  { name: 'vg_extendable', heading: 'Extendable', type: 'binary', value: (s) => word(s.vg.status.includes('RESIZEABLE'), 'extendable') },
  { name: 'vg_exported', heading: 'Exported', type: 'binary', value: (s) => word(s.vg.status.includes('EXPORTED'), 'exported') },
  { name: 'vg_autoactivation', heading: 'AutoAct', type: 'binary', value: (s) => word(!s.vg.flags.includes('NOAUTOACTIVATE'), 'enabled') },
  { name: 'vg_partial', heading: 'Partial', type: 'binary', value: (s) => word(s.pvs.length < s.vg.pvs.length, 'partial') },
  { name: 'vg_allocation_policy', heading: 'AllocPol', type: 'string', value: (s) => s.vg.allocationPolicy ?? 'normal' },
  { name: 'vg_clustered', heading: 'Clustered', type: 'binary', value: (s) => word(s.vg.status.includes('CLUSTERED'), 'clustered') },
  { name: 'vg_shared', heading: 'Shared', type: 'binary', value: (s) => word(!!s.vg.lockType && s.vg.lockType !== 'none', 'shared') },
  { name: 'vg_size', heading: 'VSize', type: 'size', value: (s) => bytes(s.row.vg_size) },
  { name: 'vg_free', heading: 'VFree', type: 'size', value: (s) => bytes(s.row.vg_free) },
  { name: 'vg_sysid', heading: 'SYS ID', type: 'string', value: (s) => s.vg.systemId ?? '' },
  { name: 'vg_systemid', heading: 'System ID', type: 'string', value: (s) => s.vg.systemId ?? '' },
  { name: 'vg_lock_type', heading: 'LockType', type: 'string', value: (s) => s.vg.lockType ?? '' },
  { name: 'vg_lock_args', heading: 'VLockArgs', type: 'string', value: (s) => s.vg.lockArgs ?? '' },
  { name: 'vg_extent_size', heading: 'Ext', type: 'size', value: (s) => bytes(s.row.vg_extent_size) },
  { name: 'vg_extent_count', heading: '#Ext', type: 'number', value: (s) => s.row.vg_extent_count },
  { name: 'vg_free_count', heading: 'Free', type: 'number', value: (s) => s.row.vg_free_count },
  { name: 'max_lv', heading: 'MaxLV', type: 'number', value: (s) => s.vg.maxLv },
  { name: 'max_pv', heading: 'MaxPV', type: 'number', value: (s) => s.vg.maxPv },
  { name: 'pv_count', heading: '#PV', type: 'number', value: (s) => s.row.pv_count },
  { name: 'vg_missing_pv_count', heading: '#PV Missing', type: 'number', value: (s) => s.vg.pvs.length - s.pvs.length },
  { name: 'lv_count', heading: '#LV', type: 'number', value: (s) => s.row.lv_count },
  { name: 'snap_count', heading: '#SN', type: 'number', value: (s) => s.row.snap_count },
  { name: 'vg_seqno', heading: 'Seq', type: 'number', value: (s) => s.row.vg_seqno },
  { name: 'vg_tags', heading: 'VG Tags', type: 'string', value: (s) => tagList(s.vg.tags) },
  { name: 'vg_mda_count', heading: '#VMda', type: 'number', value: (s) => s.pvs.reduce((n, p) => n + p.mdas.length, 0) },
  { name: 'vg_mda_used_count', heading: '#VMdaUse', type: 'number', value: (s) => usedMdas(s.pvs) },
  { name: 'vg_mda_size', heading: 'VMdaSize', type: 'size', value: (s) => bytes(smallest(mdaSizes(s.pvs))) },
  { name: 'vg_mda_copies', heading: '#VMdaCps', type: 'string', value: (s) => (s.vg.metadataCopies ? String(s.vg.metadataCopies) : 'unmanaged') },
];

/** lv_layout: linear or striped for the types sanbox maps; lvm2 says "unknown" for an error LV, and so does sanbox for every other type. */
function layout(lv: LvModel): string {
  if (lv.segments.some((s) => s.type !== 'striped')) return 'unknown';
  return lv.segments.some((s) => s.stripeCount > 1) ? 'striped' : 'linear';
}

export const LV_FIELDS: FieldDef<LvSubject>[] = [
  { name: 'lv_uuid', heading: 'LV UUID', type: 'string', value: (s) => dashId(s.lv.id) },
  { name: 'lv_name', heading: 'LV', type: 'string', value: (s) => s.lv.name },
  { name: 'lv_full_name', heading: 'LV', type: 'string', value: (s) => `${s.vg.vg.name}/${s.lv.name}` },
  { name: 'lv_path', heading: 'Path', type: 'string', value: (s) => `/dev/${s.vg.vg.name}/${s.lv.name}` },
  // device-mapper names double every '-' of the VG and LV names and join them with one '-'.
  { name: 'lv_dm_path', heading: 'DMPath', type: 'string', value: (s) => `/dev/mapper/${s.vg.vg.name.replace(/-/g, '--')}-${s.lv.name.replace(/-/g, '--')}` },
  { name: 'lv_layout', heading: 'Layout', type: 'string', value: (s) => layout(s.lv) },
  { name: 'lv_role', heading: 'Role', type: 'string', value: () => 'public' },
  { name: 'lv_allocation_policy', heading: 'AllocPol', type: 'string', value: () => 'inherit' },
  { name: 'lv_size', heading: 'LSize', type: 'size', value: (s) => bytes(lvExtentCount(s.lv) * s.vg.row.vg_extent_size) },
  { name: 'lv_read_ahead', heading: 'Rahead', type: 'size', value: (s) => { const ra = readAheadSectors(s.lv); return ra === 'auto' ? ra : sectors(ra); } },
  { name: 'seg_count', heading: '#Seg', type: 'number', value: (s) => s.lv.segments.length },
  { name: 'lv_tags', heading: 'LV Tags', type: 'string', value: (s) => tagList(s.lv.tags) },
  { name: 'lv_lockargs', heading: 'LLockArgs', type: 'string', value: (s) => s.lv.lockArgs ?? '' },
  { name: 'lv_time', heading: 'CTime', type: 'string', value: (s) => (s.lv.creationTime === undefined ? '' : reportTime(s.lv.creationTime)) },
  { name: 'lv_host', heading: 'Host', type: 'string', value: (s) => s.lv.creationHost ?? '' },
  { name: 'lv_attr', heading: 'Attr', type: 'string', value: (s) => lvAttr(s.lv) },
  // lvs's default columns that only other segment types fill: blank for linear and striped LVs.
  { name: 'pool_lv', heading: 'Pool', type: 'string', value: () => '' },
  { name: 'origin', heading: 'Origin', type: 'string', value: () => '' },
  { name: 'data_percent', heading: 'Data%', type: 'number', value: () => '' },
  { name: 'metadata_percent', heading: 'Meta%', type: 'number', value: () => '' },
  { name: 'move_pv', heading: 'Move', type: 'string', value: () => '' },
  { name: 'mirror_log', heading: 'Log', type: 'string', value: () => '' },
  { name: 'copy_percent', heading: 'Cpy%Sync', type: 'number', value: () => '' },
  { name: 'convert_lv', heading: 'Convert', type: 'string', value: () => '' },
];

function perStripe(seg: SegmentModel): number {
  return seg.stripeCount ? seg.extentCount / seg.stripeCount : seg.extentCount;
}

export const SEG_FIELDS: FieldDef<SegSubject>[] = [
  { name: 'segtype', heading: 'Type', type: 'string', value: (s) => (s.seg.type === 'striped' && s.seg.stripeCount === 1 ? 'linear' : s.seg.type) },
  { name: 'stripes', heading: '#Str', type: 'number', value: (s) => s.seg.stripeCount },
  { name: 'data_stripes', heading: '#DStr', type: 'number', value: (s) => s.seg.stripeCount },
  { name: 'data_copies', heading: '#Cpy', type: 'number', value: () => 1 },
  { name: 'stripe_size', heading: 'Stripe', type: 'size', value: (s) => sectors(s.seg.stripeCount > 1 ? s.seg.stripeSizeSectors : 0) },
  { name: 'region_size', heading: 'Region', type: 'size', value: () => bytes(0) },
  { name: 'chunk_size', heading: 'Chunk', type: 'size', value: () => bytes(0) },
  { name: 'seg_start', heading: 'Start', type: 'size', value: (s) => bytes(s.seg.startExtent * s.lv.vg.row.vg_extent_size) },
  { name: 'seg_start_pe', heading: 'Start', type: 'number', value: (s) => s.seg.startExtent },
  { name: 'seg_size', heading: 'SSize', type: 'size', value: (s) => bytes(s.seg.extentCount * s.lv.vg.row.vg_extent_size) },
  { name: 'seg_size_pe', heading: 'SSize', type: 'number', value: (s) => s.seg.extentCount },
  { name: 'seg_tags', heading: 'Seg Tags', type: 'string', value: (s) => tagList(s.seg.tags) },
  { name: 'seg_pe_ranges', heading: 'PE Ranges', type: 'string', value: (s) => ranges(s).join(' ') },
  { name: 'seg_le_ranges', heading: 'LE Ranges', type: 'string', value: (s) => ranges(s).join(',') },
  { name: 'devices', heading: 'Devices', type: 'string', value: (s) => s.seg.stripes.map((st) => `${s.pvName(st.pv)}(${st.firstPe})`).join(',') },
];

function ranges(s: SegSubject): string[] {
  const per = perStripe(s.seg);
  return s.seg.stripes.map((st) => `${s.pvName(st.pv)}:${st.firstPe}-${st.firstPe + per - 1}`);
}

/**
 * Columns lvm2 pads wider than their heading and values (its declared field widths), read off
 * lvm2 2.03.16's aligned output; every other column is as wide as its heading or widest value.
 */
export const LVM2_COLUMN_WIDTHS: ReadonlyMap<string, number> = new Map(
  Object.entries({
    lv_name: 4, pv_mda_size: 9, pe_start: 7, pv_exported: 10, pv_missing: 10, pv_pe_count: 3, vg_permissions: 10, vg_exported: 10, vg_partial: 10,
    vg_allocation_policy: 10, vg_clustered: 10, vg_shared: 7, vg_mda_size: 9, lv_layout: 10, lv_role: 10, lv_allocation_policy: 10, lv_time: 26,
    lv_host: 10, data_percent: 6, metadata_percent: 6,
  }),
);

/** lvm2 fields sanbox knows by name but does not report, and why (the error says it). */
export const UNREPORTED_FIELDS: ReadonlyMap<string, string> = new Map([
  ...['pv_major', 'pv_minor', 'lv_major', 'lv_minor', 'lv_kernel_major', 'lv_kernel_minor', 'lv_kernel_read_ahead', 'lv_active', 'lv_active_locally', 'lv_active_remotely', 'lv_active_exclusively', 'lv_permissions', 'lv_suspended', 'lv_live_table', 'lv_inactive_table', 'lv_device_open', 'lv_fixed_minor', 'seg_monitor', 'lv_check_needed', 'lv_merge_failed', 'lv_snapshot_invalid', 'lv_health_status', 'zero', 'lv_skip_activation', 'lv_autoactivation'].map((f) => [f, 'it is kernel (device-mapper) state, and sanbox activates no LV in the kernel'] as const),
  ...['pv_mda_free', 'vg_mda_free'].map((f) => [f, "it depends on lvm2's metadata-area accounting, which sanbox does not reproduce"] as const),
  ...['pv_device_id', 'pv_device_id_type', 'pvseg_start', 'pvseg_size', 'lv_profile', 'vg_profile', 'selected'].map((f) => [f, 'sanbox does not report it'] as const),
]);

/** The field sets each command reports, and the prefix lvm2 lets users leave out (`-o size`). */
export const REPORTS = {
  pvs: { key: 'pv', prefix: 'pv_', defaults: ['pv_name', 'vg_name', 'pv_fmt', 'pv_attr', 'pv_size', 'pv_free'], sort: ['pv_name'] },
  vgs: { key: 'vg', prefix: 'vg_', defaults: ['vg_name', 'pv_count', 'lv_count', 'snap_count', 'vg_attr', 'vg_size', 'vg_free'], sort: ['vg_name'] },
  lvs: {
    key: 'lv',
    prefix: 'lv_',
    defaults: ['lv_name', 'vg_name', 'lv_attr', 'lv_size', 'pool_lv', 'origin', 'data_percent', 'metadata_percent', 'move_pv', 'mirror_log', 'copy_percent', 'convert_lv'],
    sort: ['vg_name', 'lv_name'],
  },
  segs: { key: 'seg', prefix: 'lv_', defaults: ['lv_name', 'vg_name', 'lv_attr', 'stripes', 'segtype', 'seg_size'], sort: ['vg_name', 'lv_name', 'seg_start'] },
} as const;
export type ReportName = keyof typeof REPORTS;
