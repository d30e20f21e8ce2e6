// The LVM2 metadata-area header (mda_header) and the circular text buffer it indexes.
// Facts: reference/lvm2.md §4.
//
// mda_header: 512 bytes at the first byte of every metadata area (little-endian):
//
// | off | size | field        | meaning                                                        |
// |-----|------|--------------|----------------------------------------------------------------|
// | 0   | 4    | checksum_xl  | lvm_crc of bytes 4..511                                        |
// | 4   | 16   | magic        | " LVM2 x[5A%r0N*>" (first byte is a space)                     |
// | 20  | 4    | version      | 1                                                              |
// | 24  | 8    | start        | absolute byte offset of this header (= pv_header mda offset)   |
// | 32  | 8    | size         | whole area in bytes, header included (= pv_header mda size)    |
// | 40  | 24   | raw_locn[0]  | committed metadata                                             |
// | 64  | 24   | raw_locn[1]  | precommitted metadata (normally zero)                          |
// | 88  | 24   | zero         | list terminator; zero to the end of the sector                 |
//
// raw_locn (24 bytes): offset u64 (bytes from the AREA START; first text at 512), size u64 (text
// length INCLUDING its NUL), checksum u32 (lvm_crc of those size bytes, across the wrap),
// flags u32 (bit 0 RAW_LOCN_IGNORED).
//
// The text buffer is bytes [512, size) of the area, used circularly: a copy that reaches the end
// continues at relative offset 512. Two full copies always coexist (the new one is written
// after the committed one, never over it).

import { formatFail, hex32, readU64Safe, type Where } from '../where.js';
import { lvmCrc, LVM_CRC_INITIAL } from './lvm-crc.js';

export const MDA_HEADER_BYTES = 512;
export const MDA_MAGIC = Buffer.from(' LVM2 x[5A%r0N*>', 'latin1');
/** FMTT_VERSION. */
export const MDA_VERSION = 1;
/** RAW_LOCN_IGNORED: the mda is "metadataignore"d; readers skip it even if it points at text. */
export const RAW_LOCN_IGNORED = 0x1;
/** Text copies start on 512-byte boundaries relative to the area, whatever the sector size. */
export const MDA_TEXT_ALIGN_BYTES = 512;
/** MDA_SIZE_MIN: 8 pages of 4 KiB (format-text.c). */
export const MDA_SIZE_MIN_BYTES = 32768;

const OFF_CHECKSUM = 0;
const OFF_MAGIC = 4;
const OFF_VERSION = 20;
const OFF_START = 24;
const OFF_SIZE = 32;
const OFF_LOCN0 = 40;
const RAW_LOCN_BYTES = 24;

export interface RawLocn {
  /** Relative to the start of the metadata area; 0 with size 0 = no metadata. */
  offsetBytes: number;
  /** Text length including the NUL. */
  sizeBytes: number;
  checksum: number;
  flags: number;
}

export interface MdaHeader {
  startBytes: number;
  sizeBytes: number;
  /** [committed, precommitted]. */
  locns: [RawLocn, RawLocn];
}

export const EMPTY_LOCN: RawLocn = Object.freeze({ offsetBytes: 0, sizeBytes: 0, checksum: 0, flags: 0 });

export type { Where } from '../where.js';

/** Offsets in this codec's messages are absolute: `where` names the device only. */
function fail(where: Where, absOffset: number, msg: string): never {
  return formatFail({ device: where.device }, absOffset, msg, 'mda');
}

/**
 * Decodes the header found at absolute byte `expectStartBytes`, of an area the pv_header says is
 * `expectSizeBytes` long. Checks checksum, magic, version, start, size and both slots' ranges.
 */
export function decodeMdaHeader(buf: Buffer, expectStartBytes: number, expectSizeBytes: number, where: Where = {}): MdaHeader {
  const base = expectStartBytes;
  if (buf.length < MDA_HEADER_BYTES) fail(where, base, `mda_header is ${buf.length} bytes, need ${MDA_HEADER_BYTES}`);
  const stored = buf.readUInt32LE(OFF_CHECKSUM);
  const crc = lvmCrc(buf, LVM_CRC_INITIAL, OFF_MAGIC, MDA_HEADER_BYTES);
  if (stored !== crc) fail(where, base + OFF_CHECKSUM, `mda_header checksum mismatch: stored 0x${hex32(stored)}, computed 0x${hex32(crc)}`);
  if (!buf.subarray(OFF_MAGIC, OFF_MAGIC + 16).equals(MDA_MAGIC)) fail(where, base + OFF_MAGIC, 'bad mda_header magic');
  const version = buf.readUInt32LE(OFF_VERSION);
  if (version !== MDA_VERSION) fail(where, base + OFF_VERSION, `unsupported mda_header version ${version} (expected ${MDA_VERSION})`);
  const startBytes = readU64Safe(buf, OFF_START, { device: where.device, offsetBytes: base }, `mda_header start`, 'mda');
  if (startBytes !== expectStartBytes) fail(where, base + OFF_START, `mda_header start is ${startBytes}, expected ${expectStartBytes}`);
  const sizeBytes = readU64Safe(buf, OFF_SIZE, { device: where.device, offsetBytes: base }, `mda_header size`, 'mda');
  if (sizeBytes !== expectSizeBytes) fail(where, base + OFF_SIZE, `mda_header size is ${sizeBytes}, pv_header says ${expectSizeBytes}`);
  if (sizeBytes < MDA_HEADER_BYTES * 2) fail(where, base + OFF_SIZE, `metadata area size ${sizeBytes} is too small`);
  const locns: RawLocn[] = [];
  for (let i = 0; i < 2; i++) {
    const off = OFF_LOCN0 + i * RAW_LOCN_BYTES;
    const l: RawLocn = {
      offsetBytes: readU64Safe(buf, off, { device: where.device, offsetBytes: base }, `mda_header raw_locn[${i}].offset`, 'mda'),
      sizeBytes: readU64Safe(buf, off + 8, { device: where.device, offsetBytes: base }, `mda_header raw_locn[${i}].size`, 'mda'),
      checksum: buf.readUInt32LE(off + 16),
      flags: buf.readUInt32LE(off + 20),
    };
    if (l.offsetBytes !== 0 || l.sizeBytes !== 0) {
      if (l.offsetBytes < MDA_HEADER_BYTES || l.offsetBytes >= sizeBytes) fail(where, base + off, `raw_locn[${i}].offset ${l.offsetBytes} is outside the text buffer`);
      if (l.sizeBytes > sizeBytes - MDA_HEADER_BYTES) fail(where, base + off + 8, `raw_locn[${i}].size ${l.sizeBytes} exceeds the text buffer`);
    }
    locns.push(l);
  }
  return { startBytes, sizeBytes, locns: [locns[0]!, locns[1]!] };
}

export function encodeMdaHeader(h: MdaHeader): Buffer {
  const buf = Buffer.alloc(MDA_HEADER_BYTES);
  MDA_MAGIC.copy(buf, OFF_MAGIC);
  buf.writeUInt32LE(MDA_VERSION, OFF_VERSION);
  buf.writeBigUInt64LE(BigInt(h.startBytes), OFF_START);
  buf.writeBigUInt64LE(BigInt(h.sizeBytes), OFF_SIZE);
  h.locns.forEach((l, i) => {
    const off = OFF_LOCN0 + i * RAW_LOCN_BYTES;
    buf.writeBigUInt64LE(BigInt(l.offsetBytes), off);
    buf.writeBigUInt64LE(BigInt(l.sizeBytes), off + 8);
    buf.writeUInt32LE(l.checksum >>> 0, off + 16);
    buf.writeUInt32LE(l.flags >>> 0, off + 20);
  });
  buf.writeUInt32LE(lvmCrc(buf, LVM_CRC_INITIAL, OFF_MAGIC, MDA_HEADER_BYTES), OFF_CHECKSUM);
  return buf;
}

/** True when the slot points at text a reader should use. */
export function locnInUse(l: RawLocn): boolean {
  return (l.flags & RAW_LOCN_IGNORED) === 0 && !(l.offsetBytes === 0 && l.sizeBytes === 0);
}

/** Largest text (with NUL) one copy may have: two copies plus alignment slack must fit. */
export function maxTextBytes(areaSizeBytes: number): number {
  return Math.floor((areaSizeBytes - MDA_HEADER_BYTES) / 2) - MDA_TEXT_ALIGN_BYTES;
}

/** A piece of a (possibly wrapped) copy: relative offset in the area and length. */
export interface TextPiece {
  relBytes: number;
  lengthBytes: number;
}

/** Where the `sizeBytes` of a copy at `offsetBytes` lie: one piece, or two when it wraps. */
export function textPieces(areaSizeBytes: number, offsetBytes: number, sizeBytes: number): TextPiece[] {
  if (offsetBytes + sizeBytes <= areaSizeBytes) return [{ relBytes: offsetBytes, lengthBytes: sizeBytes }];
  const first = areaSizeBytes - offsetBytes;
  return [
    { relBytes: offsetBytes, lengthBytes: first },
    { relBytes: MDA_HEADER_BYTES, lengthBytes: sizeBytes - first },
  ];
}

/** Where lvm2 puts the next copy, given the committed slot (reference/lvm2.md §4.2). */
export function nextTextOffset(areaSizeBytes: number, committed: RawLocn): number {
  if (!locnInUse(committed)) return MDA_HEADER_BYTES;
  const wrapped = committed.offsetBytes + committed.sizeBytes > areaSizeBytes;
  const oldLast = wrapped
    ? committed.offsetBytes + committed.sizeBytes - areaSizeBytes + MDA_HEADER_BYTES - 1
    : committed.offsetBytes + committed.sizeBytes - 1;
  if (areaSizeBytes - oldLast < MDA_TEXT_ALIGN_BYTES) return MDA_HEADER_BYTES;
  const next = Math.ceil((oldLast + 1) / MDA_TEXT_ALIGN_BYTES) * MDA_TEXT_ALIGN_BYTES;
  return next > areaSizeBytes - MDA_TEXT_ALIGN_BYTES ? MDA_HEADER_BYTES : next;
}

/** True when two copies (circular ranges in the text buffer) share a byte. */
export function copiesOverlap(areaSizeBytes: number, a: RawLocn, b: RawLocn): boolean {
  const ring = areaSizeBytes - MDA_HEADER_BYTES;
  const pa = a.offsetBytes - MDA_HEADER_BYTES;
  const pb = b.offsetBytes - MDA_HEADER_BYTES;
  const mod = (x: number): number => ((x % ring) + ring) % ring;
  return mod(pb - pa) < a.sizeBytes || mod(pa - pb) < b.sizeBytes;
}

/**
 * Plans the writes of a new copy (text with its NUL) after the committed one: the pieces with
 * their bytes, zero-padded to the next 512-byte boundary as lvm2 does, and the new raw_locn.
 */
export function planTextWrite(
  areaSizeBytes: number,
  committed: RawLocn,
  textWithNul: Buffer,
  where: Where & { startBytes: number },
): { locn: RawLocn; writes: { relBytes: number; data: Buffer }[] } {
  const max = maxTextBytes(areaSizeBytes);
  if (textWithNul.length > max) {
    fail(where, where.startBytes, `metadata text of ${textWithNul.length} bytes exceeds the maximum metadata size ${max} of this metadata area`);
  }
  const offsetBytes = nextTextOffset(areaSizeBytes, committed);
  const locn: RawLocn = { offsetBytes, sizeBytes: textWithNul.length, checksum: lvmCrc(textWithNul), flags: 0 };
  if (locnInUse(committed) && copiesOverlap(areaSizeBytes, committed, locn)) {
    fail(where, where.startBytes + offsetBytes, `metadata text of ${textWithNul.length} bytes would overwrite the committed copy`);
  }
  const writes: { relBytes: number; data: Buffer }[] = [];
  let done = 0;
  for (const p of textPieces(areaSizeBytes, offsetBytes, textWithNul.length)) {
    const padded = Math.min(Math.ceil(p.lengthBytes / MDA_TEXT_ALIGN_BYTES) * MDA_TEXT_ALIGN_BYTES, areaSizeBytes - p.relBytes);
    const data = Buffer.alloc(padded);
    textWithNul.copy(data, 0, done, done + p.lengthBytes);
    writes.push({ relBytes: p.relBytes, data });
    done += p.lengthBytes;
  }
  return { locn, writes };
}

/** Checksum of a copy read back as its pieces, chained across the wrap. */
export function piecesChecksum(pieces: Buffer[]): number {
  let crc = LVM_CRC_INITIAL;
  for (const p of pieces) crc = lvmCrc(p, crc);
  return crc;
}

