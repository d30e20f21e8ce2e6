// The LVM2 checksum used by the label sector, the mda_header and the metadata text
// (reference/lvm2.md §2.3): reflected CRC-32 with the IEEE polynomial 0xEDB88320, initial value
// 0xF597A6CF and NO final inversion. It is therefore not the zlib CRC-32; with a zlib-style API
// it equals crc32(buf, seed 0x0A685930) ^ 0xFFFFFFFF. Chaining works: crc(a‖b) = crc(b, crc(a)),
// which is how text that wraps around the end of the circular buffer is checked.

/** INITIAL_CRC in lvm2 (lib/misc/crc.h). */
export const LVM_CRC_INITIAL = 0xf597a6cf;

const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** lvm_crc over `buf[start, end)`, continuing from `initial` (default: a fresh checksum). */
export function lvmCrc(buf: Uint8Array, initial: number = LVM_CRC_INITIAL, start = 0, end = buf.length): number {
  let crc = initial >>> 0;
  for (let i = start; i < end; i++) crc = TABLE[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return crc >>> 0;
}
