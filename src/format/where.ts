// Where a record came from, so a parser can name the device and the absolute byte offset of the
// bad field in its FormatError. Every codec that reads a record off a device takes one.

import { FormatError } from '../errors.js';

export interface Where {
  /** Device (or image) name for messages. */
  device?: string;
  /** Absolute byte offset of the start of the buffer being parsed. */
  offsetBytes?: number;
}

/**
 * Throws a FormatError naming the device (`defaultDevice` when the Where names none) and the
 * absolute offset of byte `relOffset` of the record.
 */
export function formatFail(where: Where, relOffset: number, what: string, defaultDevice = 'ocfs2'): never {
  const offsetBytes = (where.offsetBytes ?? 0) + relOffset;
  const device = where.device ?? defaultDevice;
  throw new FormatError(`${device}: ${what} at offset ${offsetBytes}`, { device, offsetBytes });
}

/** A sub-record's Where: same device, offset moved by `relOffset`. */
export function at(where: Where, relOffset: number): Where {
  return { device: where.device, offsetBytes: (where.offsetBytes ?? 0) + relOffset };
}

/** Requires `buf` to hold at least `needBytes` bytes from `relOffset`. */
export function needBytes(buf: Uint8Array, relOffset: number, need: number, where: Where, what: string): void {
  if (relOffset < 0 || relOffset + need > buf.length) {
    formatFail(where, relOffset, `${what} needs ${need} bytes but the buffer holds ${Math.max(0, buf.length - relOffset)}`);
  }
}

/** Reads a little-endian u64 as a number, refusing values above 2^53 (block numbers must be exact). */
export function readU64Safe(buf: Buffer, relOffset: number, where: Where, what: string, defaultDevice?: string): number {
  const v = buf.readBigUInt64LE(relOffset);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) formatFail(where, relOffset, `${what} ${v} is too large`, defaultDevice);
  return Number(v);
}

/** NUL-padded ASCII/UTF-8 text field. */
export function readPaddedString(buf: Buffer, relOffset: number, length: number): string {
  const field = buf.subarray(relOffset, relOffset + length);
  const nul = field.indexOf(0);
  return field.subarray(0, nul < 0 ? length : nul).toString('utf8');
}

/** Writes `text` as a NUL-padded UTF-8 field; refuses text longer than the field or holding a NUL (it would read back cut short). */
export function writePaddedString(buf: Buffer, relOffset: number, length: number, text: string, what: string): void {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > length) throw new FormatError(`${what} '${text}' is longer than ${length} bytes`);
  if (bytes.includes(0)) throw new FormatError(`${what} contains a NUL byte`);
  buf.fill(0, relOffset, relOffset + length);
  bytes.copy(buf, relOffset);
}

/** A 32-bit value as 8 hex digits (checksums, magics, generations in messages), without "0x". */
export function hex32(v: number): string {
  return (v >>> 0).toString(16).padStart(8, '0');
}

/** A 64-bit value as 16 hex digits, without "0x". */
export function hex64(v: bigint): string {
  return v.toString(16).padStart(16, '0');
}
