// The LVM2 label sector: label_header + pv_header + pv_header_extension, one 512-byte sector in
// sectors 0-3 of a PV (pvcreate uses sector 1). Facts: reference/lvm2.md §2-3.
//
// On-disk layout (little-endian; offsets relative to the start of the label sector):
//
// | off | size   | field             | meaning                                                          |
// |-----|--------|-------------------|------------------------------------------------------------------|
// | 0   | 8      | id                | ASCII "LABELONE"                                                 |
// | 8   | 8      | sector_xl         | number of the sector holding this label                          |
// | 16  | 4      | crc_xl            | lvm_crc of bytes 20..511 of this sector                          |
// | 20  | 4      | offset_xl         | offset of pv_header from the sector start: always 32             |
// | 24  | 8      | type              | ASCII "LVM2 001"                                                 |
// | 32  | 32     | pv_uuid           | 32 id chars, no dashes                                           |
// | 64  | 8      | device_size_xl    | device size in BYTES at pvcreate time                            |
// | 72  | 16 × n | disk_areas_xl[]   | {offset u64, size u64} bytes: data areas, zero entry,            |
// |     |        |                   | metadata areas, zero entry. Lists end at the first offset 0.     |
// |     |        |                   | Data area size 0 = "to the end of the device".                   |
// | +0  | 4      | ext.version       | 2 (PV_HEADER_EXTENSION_VSN)                                      |
// | +4  | 4      | ext.flags         | bit 0 PV_EXT_USED: the PV belongs to a VG                        |
// | +8  | 16 × n | bootloader areas  | {offset, size} bytes, ended by a zero entry                      |
// | …   |        | zero              | to the end of the sector (covered by the CRC)                    |

import { FormatError } from '../../errors.js';
import { formatFail, hex32, readU64Safe, type Where } from '../where.js';
import { lvmCrc } from './lvm-crc.js';
import { isValidId, LVM_ID_LEN } from './uuid.js';

export const LABEL_SECTOR_BYTES = 512;
/** Readers look at sectors 0..3 (LABEL_SCAN_SECTORS in lib/label/label.h). */
export const LABEL_SCAN_SECTORS = 4;
export const LABEL_SCAN_BYTES = LABEL_SCAN_SECTORS * LABEL_SECTOR_BYTES;
/** DEFAULT_LABELSECTOR: where pvcreate writes the label. */
export const DEFAULT_LABEL_SECTOR = 1;
export const LABEL_ID = 'LABELONE';
export const LABEL_TYPE = 'LVM2 001';
/** label_header is 32 bytes; pv_header follows it (offset_xl). */
export const PV_HEADER_OFFSET = 32;
/** PV_HEADER_EXTENSION_VSN. */
export const PV_EXT_VERSION = 2;
/** PV_EXT_USED: set while the PV is in a VG. */
export const PV_EXT_USED = 0x1;
/** FMT_TEXT_MAX_MDAS_PER_PV. */
export const MAX_MDAS_PER_PV = 2;

const OFF_ID = 0;
const OFF_SECTOR = 8;
const OFF_CRC = 16;
const OFF_OFFSET = 20;
const OFF_TYPE = 24;
const OFF_UUID = 32;
const OFF_DEVSIZE = 64;
const OFF_AREAS = 72;
const DISK_LOCN_BYTES = 16;
/** The CRC covers from offset_xl to the end of the sector. */
const CRC_START = OFF_OFFSET;

export interface DiskArea {
  offsetBytes: number;
  /** 0 for a data area means "to the end of the device". */
  sizeBytes: number;
}

export interface PvLabel {
  /** Sector (0..3) that holds the label. */
  sector: number;
  /** 32 chars, no dashes. */
  pvId: string;
  deviceSizeBytes: number;
  dataAreas: DiskArea[];
  metadataAreas: DiskArea[];
  /** 0 when the extension is absent (old PVs). */
  extVersion: number;
  extFlags: number;
  bootloaderAreas: DiskArea[];
}

export type { Where } from '../where.js';


function readAreas(buf: Buffer, at: number, where: Where, what: string, maxCount: number): { areas: DiskArea[]; next: number } {
  const areas: DiskArea[] = [];
  for (;;) {
    if (at + DISK_LOCN_BYTES > LABEL_SECTOR_BYTES) formatFail(where, at, `${what} list runs past the end of the label sector`, 'label');
    const offsetBytes = readU64Safe(buf, at, where, `${what} offset`, 'label');
    const sizeBytes = readU64Safe(buf, at + 8, where, `${what} size`, 'label');
    at += DISK_LOCN_BYTES;
    if (offsetBytes === 0) return { areas, next: at };
    if (areas.length >= maxCount) formatFail(where, at - DISK_LOCN_BYTES, `too many ${what} entries (max ${maxCount})`, 'label');
    areas.push({ offsetBytes, sizeBytes });
  }
}

/** True when the 512 bytes look like a label (both magics); the CRC is not checked here. */
export function hasLabelMagic(sector: Buffer): boolean {
  return (
    sector.length >= LABEL_SECTOR_BYTES &&
    sector.toString('latin1', OFF_ID, OFF_ID + 8) === LABEL_ID &&
    sector.toString('latin1', OFF_TYPE, OFF_TYPE + 8) === LABEL_TYPE
  );
}

/** Decodes one label sector found at sector number `sectorNo`; throws FormatError on any defect. */
export function decodeLabel(sector: Buffer, sectorNo: number, where: Where = {}): PvLabel {
  if (sector.length < LABEL_SECTOR_BYTES) formatFail(where, 0, `label sector is ${sector.length} bytes, need ${LABEL_SECTOR_BYTES}`, 'label');
  if (sector.toString('latin1', OFF_ID, OFF_ID + 8) !== LABEL_ID) formatFail(where, OFF_ID, `bad label id (expected ${LABEL_ID})`, 'label');
  if (sector.toString('latin1', OFF_TYPE, OFF_TYPE + 8) !== LABEL_TYPE) formatFail(where, OFF_TYPE, `bad label type (expected "${LABEL_TYPE}")`, 'label');
  const stored = sector.readBigUInt64LE(OFF_SECTOR);
  if (stored !== BigInt(sectorNo)) formatFail(where, OFF_SECTOR, `label sector_xl is ${stored}, expected ${sectorNo}`, 'label');
  const crcStored = sector.readUInt32LE(OFF_CRC);
  const crc = lvmCrc(sector, undefined, CRC_START, LABEL_SECTOR_BYTES);
  if (crcStored !== crc) formatFail(where, OFF_CRC, `label CRC mismatch: stored 0x${hex32(crcStored)}, computed 0x${hex32(crc)}`, 'label');
  const offset = sector.readUInt32LE(OFF_OFFSET);
  if (offset !== PV_HEADER_OFFSET) formatFail(where, OFF_OFFSET, `label offset_xl is ${offset}, expected ${PV_HEADER_OFFSET}`, 'label');
  const pvId = sector.toString('latin1', OFF_UUID, OFF_UUID + LVM_ID_LEN);
  if (!isValidId(pvId)) formatFail(where, OFF_UUID, 'invalid PV uuid in pv_header', 'label');
  const deviceSizeBytes = readU64Safe(sector, OFF_DEVSIZE, where, 'device_size', 'label');
  const da = readAreas(sector, OFF_AREAS, where, 'data area', MAX_DATA_AREAS);
  const mda = readAreas(sector, da.next, where, 'metadata area', MAX_MDAS_PER_PV);
  let at = mda.next;
  let extVersion = 0;
  let extFlags = 0;
  let bootloaderAreas: DiskArea[] = [];
  if (at + 8 <= LABEL_SECTOR_BYTES) {
    extVersion = sector.readUInt32LE(at);
    extFlags = sector.readUInt32LE(at + 4);
    at += 8;
    if (extVersion > 0) bootloaderAreas = readAreas(sector, at, where, 'bootloader area', MAX_BOOTLOADER_AREAS).areas;
  }
  for (const a of [...mda.areas, ...da.areas]) {
    if (a.offsetBytes % LABEL_SECTOR_BYTES !== 0) formatFail(where, OFF_AREAS, `area offset ${a.offsetBytes} is not sector-aligned`, 'label');
  }
  return { sector: sectorNo, pvId, deviceSizeBytes, dataAreas: da.areas, metadataAreas: mda.areas, extVersion, extFlags, bootloaderAreas };
}

/** lvm2 writes exactly one data area; a few more are tolerated on read. */
const MAX_DATA_AREAS = 8;
const MAX_BOOTLOADER_AREAS = 8;

/** Encodes the 512-byte label sector (CRC included). */
export function encodeLabel(label: PvLabel): Buffer {
  const buf = Buffer.alloc(LABEL_SECTOR_BYTES);
  if (!isValidId(label.pvId)) throw new FormatError(`invalid PV uuid '${label.pvId}'`);
  if (label.metadataAreas.length > MAX_MDAS_PER_PV) throw new FormatError(`a PV holds at most ${MAX_MDAS_PER_PV} metadata areas`);
  buf.write(LABEL_ID, OFF_ID, 'latin1');
  buf.writeBigUInt64LE(BigInt(label.sector), OFF_SECTOR);
  buf.writeUInt32LE(PV_HEADER_OFFSET, OFF_OFFSET);
  buf.write(LABEL_TYPE, OFF_TYPE, 'latin1');
  buf.write(label.pvId, OFF_UUID, 'latin1');
  buf.writeBigUInt64LE(BigInt(label.deviceSizeBytes), OFF_DEVSIZE);
  let at = OFF_AREAS;
  const put = (areas: DiskArea[]): void => {
    for (const a of areas) {
      if (a.offsetBytes === 0) throw new FormatError('an area at offset 0 cannot be expressed in a pv_header');
      buf.writeBigUInt64LE(BigInt(a.offsetBytes), at);
      buf.writeBigUInt64LE(BigInt(a.sizeBytes), at + 8);
      at += DISK_LOCN_BYTES;
    }
    at += DISK_LOCN_BYTES; // zero terminator
  };
  put(label.dataAreas);
  put(label.metadataAreas);
  buf.writeUInt32LE(label.extVersion, at);
  buf.writeUInt32LE(label.extFlags, at + 4);
  at += 8;
  if (label.extVersion > 0) put(label.bootloaderAreas);
  if (at > LABEL_SECTOR_BYTES) throw new FormatError('pv_header does not fit in the label sector');
  buf.writeUInt32LE(lvmCrc(buf, undefined, CRC_START, LABEL_SECTOR_BYTES), OFF_CRC);
  return buf;
}

export type LabelScan =
  | { kind: 'label'; label: PvLabel }
  | { kind: 'none' };

/**
 * Scans the first 2048 bytes of a device (sectors 0..3) like lvm2: the first sector with both
 * magics, the right sector_xl and a good CRC wins. A sector with the magics that fails a check is
 * not silently skipped: if no good label is found, its error is thrown, so a damaged PV is
 * reported (device and offset) rather than taken for a blank disk.
 */
export function scanLabel(head: Buffer, where: Where = {}): LabelScan {
  let firstError: FormatError | undefined;
  for (let s = 0; s < LABEL_SCAN_SECTORS; s++) {
    const start = s * LABEL_SECTOR_BYTES;
    if (head.length < start + LABEL_SECTOR_BYTES) break;
    const sector = head.subarray(start, start + LABEL_SECTOR_BYTES);
    // Both magics: `wipefs` clears only the type, and such a sector is no label.
    if (!hasLabelMagic(sector)) continue;
    try {
      return { kind: 'label', label: decodeLabel(sector, s, { device: where.device, offsetBytes: (where.offsetBytes ?? 0) + start }) };
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      firstError ??= err;
    }
  }
  if (firstError) throw firstError;
  return { kind: 'none' };
}

