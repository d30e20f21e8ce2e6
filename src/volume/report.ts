// The rows behind `pvs`, `vgs`, `lvs` and `lvs --segments`. Field names are lvm2's report field
// names (pv_name, vg_uuid, seg_pe_ranges, …) and sizes are in bytes, so `--json` output lines up
// with `pvs --reportformat json --units b --nosuffix -o <same fields>` of the real tools.

import { dashId } from '../format/lvm/uuid.js';
import { LVM_SECTOR_BYTES, lvExtentCount, vgTotalExtents, type LvModel, type VgModel } from '../format/lvm/vg-model.js';
import { freeExtents } from './allocator.js';
import { pvInUse } from './vg.js';
import { vgModels, type ScannedDevice } from './vg.js';

export interface PvRow {
  pv_name: string;
  vg_name: string;
  pv_fmt: 'lvm2';
  pv_attr: string;
  pv_size: number;
  pv_free: number;
  pv_uuid: string;
  pe_start: number;
  pv_pe_count: number;
  pv_pe_alloc_count: number;
  dev_size: number;
  pv_mda_count: number;
}

export function pvRows(scan: ScannedDevice[]): PvRow[] {
  const vgs = vgModels(scan);
  const rows: PvRow[] = [];
  for (const s of scan) {
    if (!s.pv) continue;
    const pvId = s.pv.label.pvId;
    const vg = [...vgs.values()].find((v) => v.pvs.some((p) => p.id === pvId));
    const entry = vg?.pvs.find((p) => p.id === pvId);
    const peStart = s.pv.label.dataAreas[0]?.offsetBytes ?? 0;
    const base = { pv_name: s.dev.name, pv_fmt: 'lvm2' as const, pv_uuid: dashId(pvId), dev_size: s.dev.sizeBytes, pv_mda_count: s.pv.mdas.length };
    if (vg && entry) {
      const extentBytes = vg.extentSizeSectors * LVM_SECTOR_BYTES;
      const free = freeExtents(vg, entry.key);
      rows.push({
        ...base,
        vg_name: vg.name,
        pv_attr: `${entry.status.includes('ALLOCATABLE') ? 'a' : '-'}--`,
        pv_size: entry.peCount * extentBytes,
        pv_free: free * extentBytes,
        pe_start: entry.peStartSectors * LVM_SECTOR_BYTES,
        pv_pe_count: entry.peCount,
        pv_pe_alloc_count: entry.peCount - free,
      });
    } else {
      const inVg = pvInUse(s.pv);
      rows.push({ ...base, vg_name: inVg ?? '', pv_attr: '---', pv_size: s.dev.sizeBytes, pv_free: s.dev.sizeBytes, pe_start: peStart, pv_pe_count: 0, pv_pe_alloc_count: 0 });
    }
  }
  return rows;
}

export interface VgRow {
  vg_name: string;
  pv_count: number;
  lv_count: number;
  snap_count: number;
  vg_attr: string;
  vg_size: number;
  vg_free: number;
  vg_uuid: string;
  vg_seqno: number;
  vg_extent_size: number;
  vg_extent_count: number;
  vg_free_count: number;
}

/** `partial`: a PV of the VG is missing (lvm2's 'p' in the fourth attribute column). */
export function vgRow(vg: VgModel, partial = false): VgRow {
  const extentBytes = vg.extentSizeSectors * LVM_SECTOR_BYTES;
  const total = vgTotalExtents(vg);
  const free = freeExtents(vg);
  const w = vg.status.includes('WRITE') ? 'w' : 'r';
  const z = vg.status.includes('RESIZEABLE') ? 'z' : '-';
  const x = vg.status.includes('EXPORTED') ? 'x' : '-';
  const shared = vg.lockType && vg.lockType !== 'none' ? 's' : '-';
  return {
    vg_name: vg.name,
    pv_count: vg.pvs.length,
    lv_count: vg.lvs.filter((l) => l.status.includes('VISIBLE')).length,
    snap_count: 0,
    vg_attr: `${w}${z}${x}${partial ? 'p' : '-'}n${shared}`,
    vg_size: total * extentBytes,
    vg_free: free * extentBytes,
    vg_uuid: dashId(vg.id),
    vg_seqno: vg.seqno,
    vg_extent_size: extentBytes,
    vg_extent_count: total,
    vg_free_count: free,
  };
}

export interface LvRow {
  lv_name: string;
  vg_name: string;
  lv_attr: string;
  lv_size: number;
  lv_uuid: string;
  seg_count: number;
}

export function lvAttr(lv: LvModel): string {
  // volume type, permissions, allocation policy, fixed minor, state (not activated: sanbox has no
  // device-mapper), open, target type, zero, health, skip.
  // Error and zero segments make a virtual LV: 'v' as volume and target type (lvm2 2.03.16).
  const v = lv.segments.some((s) => s.type === 'error' || s.type === 'zero') ? 'v' : '-';
  return `${v}${lv.status.includes('WRITE') ? 'w' : 'r'}i---${v}---`;
}

/** Hidden LVs (no VISIBLE: raid images, lock LVs, …) are listed only with `all`, as in lvm2. */
function shown(vg: VgModel, all: boolean): LvModel[] {
  return vg.lvs.filter((lv) => all || lv.status.includes('VISIBLE'));
}

export function lvRows(vg: VgModel, all = false): LvRow[] {
  const extentBytes = vg.extentSizeSectors * LVM_SECTOR_BYTES;
  return shown(vg, all).map((lv) => ({
    lv_name: lv.name,
    vg_name: vg.name,
    lv_attr: lvAttr(lv),
    lv_size: lvExtentCount(lv) * extentBytes,
    lv_uuid: dashId(lv.id),
    seg_count: lv.segments.length,
  }));
}

export interface SegRow {
  lv_name: string;
  vg_name: string;
  lv_attr: string;
  stripes: number;
  segtype: string;
  seg_start_pe: number;
  seg_size: number;
  seg_size_pe: number;
  stripe_size: number;
  seg_pe_ranges: string;
  lv_uuid: string;
}

/** `pvName(key)` names a PV in PE ranges (a device path, like lvm2's /dev/loopN:0-4). */
export function segRows(vg: VgModel, pvName: (key: string) => string, all = false): SegRow[] {
  const extentBytes = vg.extentSizeSectors * LVM_SECTOR_BYTES;
  const rows: SegRow[] = [];
  for (const lv of shown(vg, all)) {
    for (const seg of lv.segments) {
      const per = seg.stripeCount ? seg.extentCount / seg.stripeCount : seg.extentCount;
      rows.push({
        lv_name: lv.name,
        vg_name: vg.name,
        lv_attr: lvAttr(lv),
        stripes: seg.stripeCount,
        segtype: seg.type === 'striped' && seg.stripeCount === 1 ? 'linear' : seg.type,
        seg_start_pe: seg.startExtent,
        seg_size: seg.extentCount * extentBytes,
        seg_size_pe: seg.extentCount,
        stripe_size: seg.stripeCount > 1 ? (seg.stripeSizeSectors ?? 0) * LVM_SECTOR_BYTES : 0,
        seg_pe_ranges: seg.stripes.map((st) => `${pvName(st.pv)}:${st.firstPe}-${st.firstPe + per - 1}`).join(' '),
        lv_uuid: dashId(lv.id),
      });
    }
  }
  return rows;
}
