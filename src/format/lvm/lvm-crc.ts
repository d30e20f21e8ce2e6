// The LVM2 checksum used by the label sector, the mda_header and the metadata text
// (reference/lvm2.md §2.3): reflected CRC-32 with the IEEE polynomial 0xEDB88320, initial value
// 0xF597A6CF and NO final inversion. It is therefore not the zlib CRC-32; with a zlib-style API
// it equals crc32(buf, seed 0x0A685930) ^ 0xFFFFFFFF. Chaining works: crc(a‖b) = crc(b, crc(a)),
// which is how text that wraps around the end of the circular buffer is checked. It is the
// kernel's crc32_le (../crc32.ts) with LVM's seed.

import { crc32Le } from '../crc32.js';

/** INITIAL_CRC in lvm2 (lib/misc/crc.h). */
export const LVM_CRC_INITIAL = 0xf597a6cf;

/** lvm_crc over `buf[start, end)`, continuing from `initial` (default: a fresh checksum). */
export function lvmCrc(buf: Uint8Array, initial: number = LVM_CRC_INITIAL, start = 0, end = buf.length): number {
  return crc32Le(initial, buf.subarray(start, end));
}
