// The reflected, table-driven CRC-32s of the on-disk formats, computed as the kernel computes them:
// the seed goes in as given and no final inversion is applied, so checksums chain,
// crc(a‖b) = crc(b, crc(a)). One table builder and one loop serve both polynomials:
//
// | function | polynomial (reflected)  | used by                                                         |
// |----------|-------------------------|-----------------------------------------------------------------|
// | crc32Le  | IEEE 0xEDB88320         | o2hb blocks (seed 0), ocfs2 metaecc (seed ~0), LVM2 (seed 0xF597A6CF, lvm/lvm-crc.ts) |
// | crc32c   | Castagnoli 0x82F63B78   | JBD2 checksum v2/v3 (seed ~0, reference/ocfs2.md §5.8)          |
// | crc32Zlib | IEEE, zlib's form      | sanbox's own records: cluster image, node records, reservations, lockspace |
//
// Check values: crc32Le(0, "123456789") = 0x2DFD2D88; crc32c(~0, "123456789") = 0x1CF96D7C (the
// standard CRC-32C, which inverts at the end, is 0xE3069283). sanbox's own records use zlib's
// crc32 (crc32Zlib below), which inverts before and after; it chains the zlib way,
// crc32Zlib(a‖b) = crc32Zlib(b, crc32Zlib(a)).

import CRC32 from 'crc-32';
import CRC32C from 'crc-32/crc32c.js';
import { formatFail, hex32, type Where } from './where.js';

// The table-driven work is the crc-32 package's (SheetJS; CRC-32 and, in crc32c.js, CRC-32C). Its
// buf(data, seed) inverts the seed on entry and the result on exit (zlib style), so the raw kernel
// form is ~buf(data, ~seed) (reference/baselines.md A4).

/** The kernel's crc32_le(seed, data): no inversion. */
export function crc32Le(seed: number, data: Uint8Array): number {
  return ~CRC32.buf(data, ~seed) >>> 0;
}

/** The kernel's crc32c(seed, data): no inversion. */
export function crc32c(seed: number, data: Uint8Array): number {
  return ~CRC32C.buf(data, ~seed) >>> 0;
}

/** zlib's crc32(seed, data): inverted on entry and exit; `seed` is the CRC of what came before (0 to start). */
export function crc32Zlib(data: Uint8Array, seed = 0): number {
  return CRC32.buf(data, seed) >>> 0;
}

const ZERO4 = new Uint8Array(4);

/** `crc` over `data` with bytes [holeOffset, holeOffset+4) taken as zero (a checksum field), without copying. */
function withHole(crc: (seed: number, data: Uint8Array) => number, seed: number, data: Uint8Array, holeOffset: number): number {
  let c = crc(seed, data.subarray(0, holeOffset));
  c = crc(c, ZERO4);
  return crc(c, data.subarray(holeOffset + 4));
}

/** crc32Le over `data` with its 4-byte checksum field at `holeOffset` taken as zero. */
export function crc32LeWithHole(seed: number, data: Uint8Array, holeOffset: number): number {
  return withHole(crc32Le, seed, data, holeOffset);
}

/** crc32c over `data` with its 4-byte checksum field at `holeOffset` taken as zero. */
export function crc32cWithHole(seed: number, data: Uint8Array, holeOffset: number): number {
  return withHole(crc32c, seed, data, holeOffset);
}

/** crc32Zlib over `data` with its 4-byte checksum field at `holeOffset` taken as zero. */
export function crc32ZlibWithHole(data: Uint8Array, holeOffset: number): number {
  return withHole((seed, d) => crc32Zlib(d, seed), 0, data, holeOffset);
}

/** Stores crc32ZlibWithHole of `buf` in its little-endian checksum field at `crcOffset`. */
export function sealCrc32Zlib(buf: Buffer, crcOffset: number): void {
  buf.writeUInt32LE(crc32ZlibWithHole(buf, crcOffset), crcOffset);
}

/** Throws a FormatError naming `what`, the device and the field's offset when the stored zlib CRC is wrong. */
export function checkCrc32Zlib(buf: Buffer, crcOffset: number, where: Where, what: string, defaultDevice: string): void {
  const stored = buf.readUInt32LE(crcOffset);
  const computed = crc32ZlibWithHole(buf, crcOffset);
  if (stored !== computed) formatFail(where, crcOffset, `${what} has a bad checksum: stored 0x${hex32(stored)}, computed 0x${hex32(computed)}`, defaultDevice);
}
