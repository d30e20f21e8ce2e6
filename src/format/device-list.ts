// The cluster's device list (issue 18 item 7): which image files and nbd:// exports are LVM PVs,
// and of which VG, kept in the cluster image's `devices` region so that every node finds a PV
// another node added, with nothing edited by hand (lvm2's per-host devices file goes stale exactly
// there: reference/lvm2.md §9). Written only under the global lock held ex (every command that
// changes which PVs a VG has takes it: lvm2.md §7.3), read at each VG lock.
//
// The region's payload holds two copies, A at 0 and B at COPY_BYTES. A writer writes the copy that
// is not the newest, with the next sequence, so a torn write leaves the newest intact; a reader
// takes the valid copy with the highest sequence. A payload that is all zero (a fresh image) is an
// empty list.
//
// Copy (COPY_BYTES = 65536, little-endian):
//
// | off  | size    | field    | meaning                                                    |
// |------|---------|----------|------------------------------------------------------------|
// | 0x00 | 8       | magic    | "SBXDEVL1"                                                 |
// | 0x08 | 4       | version  | 1                                                          |
// | 0x0C | 4       | count    | entries that follow, 0..DEVICE_LIST_ENTRIES_MAX            |
// | 0x10 | 8       | seq      | 1, 2, …: the newer copy has the higher one                 |
// | 0x18 | 4       | crc32    | zlib CRC-32 of header + count entries, this field zeroed   |
// | 0x1C | 36      | reserved | zero                                                       |
// | 0x40 | 512 × n | entries  | see below                                                  |
//
// Entry (512 bytes):
//
// | off   | size | field  | meaning                                                          |
// |-------|------|--------|------------------------------------------------------------------|
// | 0x000 | 352  | device | absolute path or nbd:// URI, UTF-8, NUL-padded, not empty        |
// | 0x160 | 32   | pvUuid | the PV's uuid (32 characters of lvm2's alphabet, undashed)       |
// | 0x180 | 128  | vg     | the VG it belongs to, NUL-padded; empty for an orphan PV         |
//
// Pure codec: no I/O.

import { checkCrc32Zlib, sealCrc32Zlib } from './crc32.js';
import { at, formatFail, readPaddedString, writePaddedString, type Where } from './where.js';

export const DEVICE_LIST_MAGIC = 'SBXDEVL1';
export const DEVICE_LIST_VERSION = 1;
/** Each copy's size: 64 KiB holds a 64-byte header and 127 entries. */
export const DEVICE_LIST_COPY_BYTES = 64 * 1024;
/** The region's payload: two copies. */
export const DEVICE_LIST_PAYLOAD_BYTES = 2 * DEVICE_LIST_COPY_BYTES;
const HEADER_BYTES = 0x40;
const ENTRY_BYTES = 512;
const CRC_OFF = 0x18;
const DEVICE_BYTES = 352;
const PVUUID_OFF = 0x160;
const PVUUID_BYTES = 32;
const VG_OFF = 0x180;
const VG_BYTES = 128;
/** Entries one copy holds (the copy's size less its header, in 512-byte entries). */
export const DEVICE_LIST_ENTRIES_MAX = Math.floor((DEVICE_LIST_COPY_BYTES - HEADER_BYTES) / ENTRY_BYTES);
/** lvm2's uuid alphabet (reference/lvm2.md §6). */
const UUID_RE = /^[0-9a-zA-Z!#]{32}$/;
const DEVICE = 'device list';

export interface DeviceListEntry {
  device: string;
  pvUuid: string;
  /** '' for an orphan PV. */
  vg: string;
}

export interface DeviceList {
  seq: bigint;
  entries: DeviceListEntry[];
}

export function encodeDeviceListCopy(list: DeviceList): Buffer {
  if (list.entries.length > DEVICE_LIST_ENTRIES_MAX) throw new RangeError(`the cluster's device list holds at most ${DEVICE_LIST_ENTRIES_MAX} devices, not ${list.entries.length}`);
  if (list.seq < 1n || list.seq >= 2n ** 64n) throw new RangeError(`device list sequence ${list.seq} is outside 1..2^64-1`);
  const buf = Buffer.alloc(DEVICE_LIST_COPY_BYTES);
  buf.write(DEVICE_LIST_MAGIC, 0, 'latin1');
  buf.writeUInt32LE(DEVICE_LIST_VERSION, 0x08);
  buf.writeUInt32LE(list.entries.length, 0x0c);
  buf.writeBigUInt64LE(list.seq, 0x10);
  const seen = new Set<string>();
  list.entries.forEach((e, i) => {
    const off = HEADER_BYTES + i * ENTRY_BYTES;
    if (e.device.length === 0) throw new RangeError('a device list entry needs a device');
    if (seen.has(e.device)) throw new RangeError(`device ${e.device} is listed twice`);
    seen.add(e.device);
    if (!UUID_RE.test(e.pvUuid)) throw new RangeError(`${e.device}: PV uuid '${e.pvUuid}' is not 32 characters of lvm2's alphabet`);
    writePaddedString(buf, off, DEVICE_BYTES, e.device, 'device');
    buf.write(e.pvUuid, off + PVUUID_OFF, 'latin1');
    writePaddedString(buf, off + VG_OFF, VG_BYTES - 1, e.vg, 'VG name');
  });
  sealCrc32Zlib(buf.subarray(0, HEADER_BYTES + list.entries.length * ENTRY_BYTES), CRC_OFF);
  return buf;
}

/** One copy; undefined when it is all zero (never written). */
export function decodeDeviceListCopy(buf: Buffer, where: Where = {}): DeviceList | undefined {
  const dev = where.device ?? DEVICE;
  if (buf.length !== DEVICE_LIST_COPY_BYTES) formatFail(where, 0, `device list copy must be ${DEVICE_LIST_COPY_BYTES} bytes, got ${buf.length}`, dev);
  if (buf.subarray(0, HEADER_BYTES).every((b) => b === 0)) return undefined;
  const magic = buf.toString('latin1', 0, 8);
  if (magic !== DEVICE_LIST_MAGIC) formatFail(where, 0, `not a device list: magic is ${JSON.stringify(magic)}, expected ${JSON.stringify(DEVICE_LIST_MAGIC)}`, dev);
  const version = buf.readUInt32LE(0x08);
  if (version !== DEVICE_LIST_VERSION) formatFail(where, 0x08, `device list version ${version} is not supported (this sanbox reads version ${DEVICE_LIST_VERSION})`, dev);
  const count = buf.readUInt32LE(0x0c);
  if (count > DEVICE_LIST_ENTRIES_MAX) formatFail(where, 0x0c, `device list count ${count} is more than the ${DEVICE_LIST_ENTRIES_MAX} a copy holds`, dev);
  checkCrc32Zlib(buf.subarray(0, HEADER_BYTES + count * ENTRY_BYTES), CRC_OFF, where, 'device list', dev);
  const seq = buf.readBigUInt64LE(0x10);
  if (seq < 1n) formatFail(where, 0x10, 'device list sequence 0', dev);
  for (let i = CRC_OFF + 4; i < HEADER_BYTES; i++) if (buf[i] !== 0) formatFail(where, i, 'device list reserved bytes are not zero', dev);
  const entries: DeviceListEntry[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < count; i++) {
    const off = HEADER_BYTES + i * ENTRY_BYTES;
    const w = at(where, off);
    const device = readPaddedString(buf, off, DEVICE_BYTES);
    if (device.length === 0) formatFail(w, 0, `device list entry ${i} names no device`, dev);
    if (seen.has(device)) formatFail(w, 0, `device list entry ${i} names ${device} again`, dev);
    seen.add(device);
    const pvUuid = buf.toString('latin1', off + PVUUID_OFF, off + PVUUID_OFF + PVUUID_BYTES);
    if (!UUID_RE.test(pvUuid)) formatFail(w, PVUUID_OFF, `device list entry ${i} (${device}) has no valid PV uuid`, dev);
    const vg = readPaddedString(buf, off + VG_OFF, VG_BYTES);
    if (buf[off + VG_OFF + VG_BYTES - 1] !== 0) formatFail(w, VG_OFF, `device list entry ${i} (${device}) VG name is not NUL-terminated`, dev);
    entries.push({ device, pvUuid, vg });
  }
  return { seq, entries };
}

/**
 * The newest valid copy of a payload (both copies); an empty list when neither was ever written.
 * A copy that fails validation is skipped while the other is valid (a torn write); both bad is a
 * FormatError naming the first.
 */
export function decodeDeviceList(payload: Buffer, where: Where = {}): DeviceList {
  if (payload.length < DEVICE_LIST_PAYLOAD_BYTES) formatFail(where, 0, `device list payload must be at least ${DEVICE_LIST_PAYLOAD_BYTES} bytes, got ${payload.length}`, where.device ?? DEVICE);
  const copies: (DeviceList | undefined)[] = [];
  const errors: unknown[] = [];
  for (let c = 0; c < 2; c++) {
    try {
      copies.push(decodeDeviceListCopy(payload.subarray(c * DEVICE_LIST_COPY_BYTES, (c + 1) * DEVICE_LIST_COPY_BYTES), at(where, c * DEVICE_LIST_COPY_BYTES)));
    } catch (err) {
      errors.push(err);
      copies.push(undefined);
    }
  }
  const valid = copies.filter((c): c is DeviceList => c !== undefined);
  if (valid.length === 0) {
    if (errors.length > 0) throw errors[0];
    return { seq: 0n, entries: [] };
  }
  return valid.reduce((a, b) => (b.seq > a.seq ? b : a));
}

/** Which copy (0 or 1) the next write goes to, given the payload now: never the newest valid one. */
export function nextCopyIndex(payload: Buffer, where: Where = {}): number {
  let newest = -1;
  let newestSeq = -1n;
  for (let c = 0; c < 2; c++) {
    try {
      const d = decodeDeviceListCopy(payload.subarray(c * DEVICE_LIST_COPY_BYTES, (c + 1) * DEVICE_LIST_COPY_BYTES), at(where, c * DEVICE_LIST_COPY_BYTES));
      if (d !== undefined && d.seq > newestSeq) {
        newest = c;
        newestSeq = d.seq;
      }
    } catch {
      // a torn or foreign copy: a fine place to write
    }
  }
  return newest === 0 ? 1 : 0;
}
