// pvdisplay, vgdisplay and lvdisplay [--maps] as lvm2 2.03.16 prints them (keys padded to a fixed
// column, sizes in the long form "2.00 MiB", a "   " line after each block), from the same
// subjects as the reports. sanbox adds one line lvm2 has no need for: under `lvdisplay --maps`,
// each linear piece of an LV gets the losetup(8) command that maps exactly that byte range of
// its image file to a loop device, so fsck.ocfs2 or debugfs.ocfs2 can be pointed at the LV
// without arithmetic. (lvm2 has device-mapper for that; sanbox's LVs live only in its processes.)

import { dashId } from '../format/lvm/uuid.js';
import { LVM_SECTOR_BYTES, lvExtentCount, type LvModel, type SegmentModel } from '../format/lvm/vg-model.js';
import { readAheadSectors, reportTime, type LvSubject, type PvSubject, type VgSubject } from './report-fields.js';
import { formatDisplaySize } from './units-format.js';

/** The key column of pvdisplay and vgdisplay (2 + 22 characters), and of lvdisplay (2 + 23). */
const PV_VG_KEY_WIDTH = 22;
const LV_KEY_WIDTH = 23;
/** lvm2 ends every display block with a line of three spaces. */
const END = '   \n';

function block(title: string, width: number, fields: [string, string | number][]): string {
  return `  --- ${title} ---\n${fields.map(([k, v]) => `  ${k.padEnd(width)}${String(v)}\n`).join('')}`;
}

export function vgDisplay(s: VgSubject): string {
  const r = s.row;
  const alloc = r.vg_extent_count - r.vg_free_count;
  return (
    block('Volume group', PV_VG_KEY_WIDTH, [
      ['VG Name', r.vg_name],
      ['System ID', s.vg.systemId ?? ''],
      ['Format', s.vg.format ?? 'lvm2'],
      ['Metadata Areas', s.pvs.reduce((n, p) => n + p.mdas.length, 0)],
      ['Metadata Sequence No', r.vg_seqno],
      ['VG Access', s.vg.status.includes('WRITE') ? 'read/write' : 'read'],
      ['VG Status', s.vg.status.includes('RESIZEABLE') ? 'resizable' : ''],
      ['MAX LV', s.vg.maxLv],
      ['Cur LV', r.lv_count],
      // Open in the kernel: sanbox opens LVs in its own processes, never through device-mapper.
      ['Open LV', 0],
      ['Max PV', s.vg.maxPv],
      ['Cur PV', r.pv_count],
      ['Act PV', s.pvs.length],
      ['VG Size', formatDisplaySize(r.vg_size)],
      ['PE Size', formatDisplaySize(r.vg_extent_size)],
      ['Total PE', r.vg_extent_count],
      ['Alloc PE / Size', `${alloc} / ${formatDisplaySize(alloc * r.vg_extent_size)}`],
      ['Free  PE / Size', `${r.vg_free_count} / ${formatDisplaySize(r.vg_free)}`],
      ['VG UUID', r.vg_uuid],
    ]) + END
  );
}

/** The extents of a PV in use by LVs, with the LV and its logical extents, in PE order. */
interface PvUse {
  firstPe: number;
  lastPe: number;
  lvPath: string;
  firstLe: number;
  lastLe: number;
}

function pvUses(s: PvSubject): PvUse[] {
  const vg = s.vg?.vg;
  const entry = vg?.pvs.find((p) => p.id === s.pv.label.pvId);
  if (!vg || !entry) return [];
  const uses: PvUse[] = [];
  for (const lv of vg.lvs) {
    for (const seg of lv.segments) {
      const per = seg.stripeCount ? seg.extentCount / seg.stripeCount : seg.extentCount;
      for (const st of seg.stripes) {
        if (st.pv !== entry.key) continue;
        uses.push({ firstPe: st.firstPe, lastPe: st.firstPe + per - 1, lvPath: `/dev/${vg.name}/${lv.name}`, firstLe: seg.startExtent, lastLe: seg.startExtent + seg.extentCount - 1 });
      }
    }
  }
  return uses.sort((a, b) => a.firstPe - b.firstPe);
}

export function pvDisplay(s: PvSubject, maps: boolean): string {
  const r = s.row;
  if (!s.vg || r.vg_name === '' || s.vg.row.vg_name === '') {
    // An orphan PV: lvm2 introduces it as new and shows no extents.
    const size = formatDisplaySize(r.dev_size);
    return (
      `  "${r.pv_name}" is a new physical volume of "${size}"\n` +
      block('NEW Physical volume', PV_VG_KEY_WIDTH, [
        ['PV Name', r.pv_name],
        ['VG Name', ''],
        ['PV Size', size],
        ['Allocatable', 'NO'],
        ['PE Size', formatDisplaySize(0)],
        ['Total PE', 0],
        ['Free PE', 0],
        ['Allocated PE', 0],
        ['PV UUID', r.pv_uuid],
      ]) +
      END
    );
  }
  const extentBytes = s.vg.row.vg_extent_size;
  const free = r.pv_pe_count - r.pv_pe_alloc_count;
  let out =
    block('Physical volume', PV_VG_KEY_WIDTH, [
      ['PV Name', r.pv_name],
      ['VG Name', r.vg_name],
      ['PV Size', `${formatDisplaySize(r.dev_size)} / not usable ${formatDisplaySize(r.dev_size - r.pv_pe_count * extentBytes)}`],
      ['Allocatable', r.pv_attr[0] !== 'a' ? 'NO' : free === 0 ? 'yes (but full)' : 'yes '],
      ['PE Size', formatDisplaySize(extentBytes)],
      ['Total PE', r.pv_pe_count],
      ['Free PE', free],
      ['Allocated PE', r.pv_pe_alloc_count],
      ['PV UUID', r.pv_uuid],
    ]) + END;
  if (maps) {
    out += '  --- Physical Segments ---\n';
    let next = 0;
    const free = (from: number, to: number): string => `  Physical extent ${from} to ${to}:\n    FREE\n`;
    for (const u of pvUses(s)) {
      if (u.firstPe > next) out += free(next, u.firstPe - 1);
      out += `  Physical extent ${u.firstPe} to ${u.lastPe}:\n    Logical volume\t${u.lvPath}\n    Logical extents\t${u.firstLe} to ${u.lastLe}\n`;
      next = u.lastPe + 1;
    }
    if (next < r.pv_pe_count) out += free(next, r.pv_pe_count - 1);
    out += END;
  }
  return out;
}

/** Where a linear piece of an LV lies on its image file: what losetup needs. */
export interface HostRange {
  firstLe: number;
  lastLe: number;
  image: string;
  offsetBytes: number;
  sizeBytes: number;
  sectorSizeBytes: number;
}

/** The byte range on a PV's image of every linear (one-stripe) segment of the LV. */
export function hostRanges(s: LvSubject, pv: (key: string) => { image: string; sectorSizeBytes: number } | undefined): (HostRange | undefined)[] {
  const extentBytes = s.vg.row.vg_extent_size;
  const entries = new Map(s.vg.vg.pvs.map((p) => [p.key, p]));
  return s.lv.segments.map((seg) => {
    const st = seg.stripes[0];
    const target = st && pv(st.pv);
    const entry = st && entries.get(st.pv);
    if (seg.type !== 'striped' || seg.stripeCount !== 1 || !st || !target || !entry) return undefined;
    return {
      firstLe: seg.startExtent,
      lastLe: seg.startExtent + seg.extentCount - 1,
      image: target.image,
      offsetBytes: entry.peStartSectors * LVM_SECTOR_BYTES + st.firstPe * extentBytes,
      sizeBytes: seg.extentCount * extentBytes,
      sectorSizeBytes: target.sectorSizeBytes,
    };
  });
}

/** The losetup(8) command that maps a host range to a loop device (and prints its name). */
export function losetupCommand(r: HostRange): string {
  const sector = r.sectorSizeBytes === 512 ? '' : ` --sector-size ${r.sectorSizeBytes}`;
  return `losetup --find --show --offset ${r.offsetBytes} --sizelimit ${r.sizeBytes}${sector} ${shellQuote(r.image)}`;
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function segmentMap(seg: SegmentModel, pvName: (key: string) => string, stripeSizeBytes: number, host: HostRange | undefined): string {
  const last = seg.startExtent + seg.extentCount - 1;
  let out = `  Logical extents ${seg.startExtent} to ${last}:\n`;
  const per = seg.stripeCount ? seg.extentCount / seg.stripeCount : seg.extentCount;
  if (seg.type === 'striped' && seg.stripeCount === 1) {
    const st = seg.stripes[0]!;
    out += `    Type\t\tlinear\n    Physical volume\t${pvName(st.pv)}\n    Physical extents\t${st.firstPe} to ${st.firstPe + per - 1}\n`;
    if (host) out += `    Host device\t${losetupCommand(host)}\n`;
    return out;
  }
  out += `    Type\t\t${seg.type}\n`;
  if (seg.type !== 'striped') return out;
  out += `    Stripes\t\t${seg.stripeCount}\n    Stripe size\t\t${formatDisplaySize(stripeSizeBytes)}\n`;
  for (const [i, st] of seg.stripes.entries()) {
    out += `    Stripe ${i}:\n      Physical volume\t${pvName(st.pv)}\n      Physical extents\t${st.firstPe} to ${st.firstPe + per - 1}\n`;
  }
  return out;
}

export interface LvDisplayOptions {
  maps: boolean;
  pvName: (key: string) => string;
  hosts: (HostRange | undefined)[];
}

export function lvDisplay(s: LvSubject, o: LvDisplayOptions): string {
  const lv: LvModel = s.lv;
  const vg = s.vg.vg;
  const when = lv.creationTime === undefined ? '' : reportTime(lv.creationTime);
  let out =
    block('Logical volume', LV_KEY_WIDTH, [
      ['LV Path', `/dev/${vg.name}/${lv.name}`],
      ['LV Name', lv.name],
      ['VG Name', vg.name],
      ['LV UUID', dashId(lv.id)],
      ['LV Write Access', lv.status.includes('WRITE') ? 'read/write' : 'read only'],
      ['LV Creation host, time', `${lv.creationHost ?? ''}, ${when}`],
      // Not active in the kernel: there is no device-mapper device for a sanbox LV.
      ['LV Status', 'NOT available'],
      ['LV Size', formatDisplaySize(lvExtentCount(lv) * s.vg.row.vg_extent_size)],
      ['Current LE', lvExtentCount(lv)],
      ['Segments', lv.segments.length],
      ['Allocation', 'inherit'],
      ['Read ahead sectors', readAheadSectors(lv)],
    ]) + END;
  if (o.maps) {
    out += '  --- Segments ---\n';
    // lvm2 ends each segment with a "   " line, and the list with one more.
    for (const [i, seg] of lv.segments.entries()) out += segmentMap(seg, o.pvName, (seg.stripeSizeSectors ?? 0) * LVM_SECTOR_BYTES, o.hosts[i]) + END;
    // Without device-mapper the host cannot join pieces into one device: say so instead of
    // letting a tool be pointed at a part of the LV.
    if (o.hosts.some((h) => h === undefined)) out += '  (striped segments interleave PVs: no single loop device holds them)\n';
    else if (lv.segments.length > 1) out += `  (${lv.segments.length} pieces: each loop device above holds one of them, not the whole LV)\n`;
    out += END;
  }
  return out;
}
