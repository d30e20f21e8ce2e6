// The reflected, table-driven CRC-32s of the on-disk formats, computed as the kernel computes them:
// the seed goes in as given and no final inversion is applied, so checksums chain,
// crc(a‖b) = crc(b, crc(a)). One table builder and one loop serve both polynomials:
//
// | function | polynomial (reflected)  | used by                                                         |
// |----------|-------------------------|-----------------------------------------------------------------|
// | crc32Le  | IEEE 0xEDB88320         | o2hb blocks (seed 0), ocfs2 metaecc (seed ~0), LVM2 (seed 0xF597A6CF, lvm/lvm-crc.ts) |
// | crc32c   | Castagnoli 0x82F63B78   | JBD2 checksum v2/v3 (seed ~0, reference/ocfs2.md §5.8)          |
//
// Check values: crc32Le(0, "123456789") = 0x2DFD2D88; crc32c(~0, "123456789") = 0x1CF96D7C (the
// standard CRC-32C, which inverts at the end, is 0xE3069283). sanbox's own records use zlib's
// crc32 (the crc-32 package), which inverts before and after.

import CRC32 from 'crc-32';
import CRC32C from 'crc-32/crc32c.js';

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
