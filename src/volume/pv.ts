// Physical volumes on a block device: reading the label, the metadata-area headers and the
// committed VG text; laying out and writing a new PV (pvcreate); wiping one (pvremove).
// Layout facts: reference/lvm2.md §1 and §4.4.

import type { BlockDevice } from '../disk/index.js';
import { FormatError, SanboxError } from '../errors.js';
import {
  DEFAULT_LABEL_SECTOR,
  encodeLabel,
  LABEL_SCAN_BYTES,
  LABEL_SECTOR_BYTES,
  PV_EXT_USED,
  PV_EXT_VERSION,
  scanLabel,
  type DiskArea,
  type PvLabel,
} from '../format/lvm/label.js';
import {
  decodeMdaHeader,
  EMPTY_LOCN,
  encodeMdaHeader,
  locnInUse,
  MDA_HEADER_BYTES,
  MDA_SIZE_MIN_BYTES,
  piecesChecksum,
  textPieces,
  type MdaHeader,
  type RawLocn,
} from '../format/lvm/mda-header.js';
import { parseVgText, type ParsedVgText } from '../format/lvm/vg-text.js';
import { refuseSignatures } from '../disk/signature-probe.js';
import { retryTorn } from '../disk/stable-read.js';

/** mda1 always starts here: LABEL_SCAN_SIZE rounded up to the page size (lvm2.md §1). */
export const MDA1_START_BYTES = 4096;
/** devices/data_alignment default: pe_start = 1 MiB. */
export const DEFAULT_DATA_ALIGNMENT_BYTES = 1024 * 1024;
/** Default metadata area size: mda1 = 4 KiB .. 1 MiB (lvm2.md §1), whatever the alignment. */
export const DEFAULT_MDA_SIZE_BYTES = 1024 * 1024 - MDA1_START_BYTES;
/** pvcreate zeroes this much of each new metadata area before writing its header. */
const MDA_ZERO_BYTES = 4096;

export interface MdaState {
  area: DiskArea;
  header: MdaHeader;
  /** The committed text, when raw_locn[0] is in use. */
  committed: { locn: RawLocn; text: string; parsed: ParsedVgText } | undefined;
}

export interface PvState {
  dev: BlockDevice;
  label: PvLabel;
  mdas: MdaState[];
}

/** Reads a PV: undefined when the device has no LVM label. Any defect throws FormatError. */
export async function readPv(dev: BlockDevice, opts: { withoutText?: boolean } = {}): Promise<PvState | undefined> {
  // A read that races a commit in another process can see a header sector mid-write: the PV is
  // read again (the one torn-read bound, src/disk/stable-read.ts); the same error twice means the
  // damage is on disk and is reported.
  return retryTorn(() => readPvOnce(dev, opts.withoutText ?? false), { sameErrorIsDamage: true });
}

async function readPvOnce(dev: BlockDevice, withoutText: boolean): Promise<PvState | undefined> {
  const head = Buffer.alloc(Math.min(LABEL_SCAN_BYTES, dev.sizeBytes));
  await dev.read(head, 0);
  const scan = scanLabel(head, { device: dev.name, offsetBytes: 0 });
  if (scan.kind === 'none') return undefined;
  const label = scan.label;
  const mdas: MdaState[] = [];
  for (const area of label.metadataAreas) {
    if (area.offsetBytes + area.sizeBytes > dev.sizeBytes || area.sizeBytes < MDA_HEADER_BYTES) {
      throw new FormatError(`${dev.name}: metadata area ${area.offsetBytes}+${area.sizeBytes} does not fit the device (${dev.sizeBytes} bytes) at offset ${area.offsetBytes}`, {
        device: dev.name,
        offsetBytes: area.offsetBytes,
      });
    }
    const hbuf = Buffer.alloc(MDA_HEADER_BYTES);
    await dev.read(hbuf, area.offsetBytes);
    const header = decodeMdaHeader(hbuf, area.offsetBytes, area.sizeBytes, { device: dev.name });
    const l0 = header.locns[0];
    let committed: MdaState['committed'];
    if (locnInUse(l0) && !withoutText) committed = { locn: l0, ...(await readText(dev, area, l0)) };
    mdas.push({ area, header, committed });
  }
  for (const da of label.dataAreas) {
    if (da.offsetBytes >= dev.sizeBytes) {
      throw new FormatError(`${dev.name}: data area starts at ${da.offsetBytes}, beyond the device end at offset ${da.offsetBytes}`, { device: dev.name, offsetBytes: da.offsetBytes });
    }
  }
  return { dev, label, mdas };
}

async function readText(dev: BlockDevice, area: DiskArea, locn: RawLocn): Promise<{ text: string; parsed: ParsedVgText }> {
  const pieces: Buffer[] = [];
  for (const p of textPieces(area.sizeBytes, locn.offsetBytes, locn.sizeBytes)) {
    const b = Buffer.alloc(p.lengthBytes);
    await dev.read(b, area.offsetBytes + p.relBytes);
    pieces.push(b);
  }
  const textAt = area.offsetBytes + locn.offsetBytes;
  const crc = piecesChecksum(pieces);
  if (crc !== locn.checksum) {
    throw new FormatError(`${dev.name}: metadata text checksum mismatch: raw_locn says 0x${locn.checksum.toString(16)}, text has 0x${crc.toString(16)} at offset ${textAt}`, {
      device: dev.name,
      offsetBytes: textAt,
    });
  }
  const all = Buffer.concat(pieces);
  // The size includes one NUL; text written by lvm2 has no other.
  const nul = all.indexOf(0);
  const text = all.toString('latin1', 0, nul < 0 ? all.length : nul);
  return { text, parsed: parseVgText(text, { device: dev.name, offsetBytes: textAt }) };
}

export interface PvLayoutOptions {
  deviceSizeBytes: number;
  /** Requested metadata area size (LVM --metadatasize); default: mda1 ends at the data alignment. */
  metadataSizeBytes?: number;
  /** 1 or 2 (LVM --metadatacopies); 0 is allowed too (no metadata on this PV). */
  metadataCopies?: number;
  dataAlignmentBytes?: number;
}

export interface PvLayout {
  mdas: DiskArea[];
  peStartBytes: number;
  /** Where the data area ends: the start of mda2, or the device end. */
  dataEndBytes: number;
}

/** The layout pvcreate gives a device (lvm2.md §1, §4.4). */
export function planPvLayout(o: PvLayoutOptions): PvLayout {
  const align = o.dataAlignmentBytes ?? DEFAULT_DATA_ALIGNMENT_BYTES;
  const copies = o.metadataCopies ?? 1;
  if (!Number.isSafeInteger(align) || align < 4096 || align % 4096 !== 0) throw new SanboxError('EINVAL', `data alignment ${align} must be a positive multiple of 4 KiB`);
  if (![0, 1, 2].includes(copies)) throw new SanboxError('EINVAL', `metadata copies must be 0, 1 or 2, not ${copies}`);
  const requested = o.metadataSizeBytes ?? DEFAULT_MDA_SIZE_BYTES;
  const mdaSize = Math.max(MDA_SIZE_MIN_BYTES, Math.ceil(requested / 512) * 512);
  const mdas: DiskArea[] = [];
  let peStartBytes: number;
  if (copies === 0) peStartBytes = align;
  else {
    peStartBytes = Math.ceil((MDA1_START_BYTES + mdaSize) / align) * align;
    mdas.push({ offsetBytes: MDA1_START_BYTES, sizeBytes: peStartBytes - MDA1_START_BYTES });
  }
  let dataEndBytes = Math.floor(o.deviceSizeBytes / 512) * 512;
  if (copies === 2) {
    // mda2 at the end: the requested size (not mda1's, which was pushed out to the alignment),
    // moved down (grown) so it starts on the data alignment when there is room.
    let start = Math.floor((o.deviceSizeBytes - mdaSize) / align) * align;
    if (start < peStartBytes) start = Math.floor((o.deviceSizeBytes - mdaSize) / 4096) * 4096;
    mdas.push({ offsetBytes: start, sizeBytes: o.deviceSizeBytes - start });
    dataEndBytes = start;
  }
  if (dataEndBytes <= peStartBytes) {
    throw new SanboxError('EINVAL', `device of ${o.deviceSizeBytes} bytes is too small for a PV with ${copies} metadata copies (data would start at ${peStartBytes})`);
  }
  return { mdas, peStartBytes, dataEndBytes };
}

/** Refuses a device that holds a PV or (unless `force`) any known signature, naming what and where. */
export async function checkBlank(dev: BlockDevice, force = false): Promise<void> {
  const head = Buffer.alloc(Math.min(LABEL_SCAN_BYTES, dev.sizeBytes));
  await dev.read(head, 0);
  const scan = scanLabel(head, { device: dev.name, offsetBytes: 0 });
  if (scan.kind === 'label') {
    throw new SanboxError('EEXIST', `${dev.name}: already holds LVM physical volume ${scan.label.pvId} (label at offset ${scan.label.sector * LABEL_SECTOR_BYTES}); pvremove it first`, {
      device: dev.name,
      offsetBytes: scan.label.sector * LABEL_SECTOR_BYTES,
    });
  }
  if (!force) await refuseSignatures(dev, 'pvcreate');
}

/** Writes a new orphan PV in pvcreate's order: zero the label area and mdas, mda headers, label. */
export async function writeNewPv(dev: BlockDevice, pvId: string, layout: PvLayout): Promise<PvState> {
  await dev.write(Buffer.alloc(LABEL_SCAN_BYTES), 0);
  const mdas: MdaState[] = [];
  for (const area of layout.mdas) {
    await dev.write(Buffer.alloc(Math.min(MDA_ZERO_BYTES, area.sizeBytes)), area.offsetBytes);
    const header: MdaHeader = { startBytes: area.offsetBytes, sizeBytes: area.sizeBytes, locns: [EMPTY_LOCN, EMPTY_LOCN] };
    await dev.write(encodeMdaHeader(header), area.offsetBytes);
    mdas.push({ area, header, committed: undefined });
  }
  const label: PvLabel = {
    sector: DEFAULT_LABEL_SECTOR,
    pvId,
    deviceSizeBytes: dev.sizeBytes,
    dataAreas: [{ offsetBytes: layout.peStartBytes, sizeBytes: 0 }],
    metadataAreas: layout.mdas,
    extVersion: PV_EXT_VERSION,
    extFlags: 0,
    bootloaderAreas: [],
  };
  await dev.flush();
  await writeLabel(dev, label);
  return { dev, label, mdas };
}

export async function writeLabel(dev: BlockDevice, label: PvLabel): Promise<void> {
  await dev.write(encodeLabel(label), label.sector * LABEL_SECTOR_BYTES);
  await dev.flush();
}

/** Sets or clears PV_EXT_USED (and upgrades an old extension) when it changes. */
export async function setPvUsed(pv: PvState, used: boolean): Promise<void> {
  const flags = used ? pv.label.extFlags | PV_EXT_USED : pv.label.extFlags & ~PV_EXT_USED;
  if (flags === pv.label.extFlags && pv.label.extVersion >= PV_EXT_VERSION) return;
  pv.label = { ...pv.label, extVersion: Math.max(pv.label.extVersion, PV_EXT_VERSION), extFlags: flags };
  await writeLabel(pv.dev, pv.label);
}

/** pvremove: clears the label sector(s) and every mda header. */
export async function wipePv(pv: PvState): Promise<void> {
  await pv.dev.write(Buffer.alloc(LABEL_SCAN_BYTES), 0);
  for (const m of pv.mdas) await pv.dev.write(Buffer.alloc(MDA_HEADER_BYTES), m.area.offsetBytes);
  await pv.dev.flush();
}

/** Start of the data area (pe_start) in bytes, from the label. */
export function pvDataStartBytes(pv: PvState): number {
  const da = pv.label.dataAreas[0];
  if (!da) throw new FormatError(`${pv.dev.name}: pv_header lists no data area at offset ${pv.label.sector * LABEL_SECTOR_BYTES}`, { device: pv.dev.name, offsetBytes: pv.label.sector * LABEL_SECTOR_BYTES });
  return da.offsetBytes;
}

/** Where the data area ends: the first mda after pe_start, or the device end. */
export function pvDataEndBytes(pv: PvState): number {
  const start = pvDataStartBytes(pv);
  const after = pv.mdas.map((m) => m.area.offsetBytes).filter((o) => o > start);
  return after.length ? Math.min(...after) : Math.floor(pv.dev.sizeBytes / 512) * 512;
}
