// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) as the kernel's crc32c(seed, data) computes
// it: the seed goes in as given and no final XOR is applied. JBD2 checksum v2/v3 use it with seed ~0
// (reference/ocfs2.md §5.8). Check value: crc32c(~0, "123456789") = 0x1CF96D7C (standard CRC-32C,
// which inverts at the end, is 0xE3069283).

const CRC32C_POLY_REFLECTED = 0x82f63b78;
const TABLE: Uint32Array = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? CRC32C_POLY_REFLECTED ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32c(seed: number, data: Uint8Array): number {
  let c = seed >>> 0;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

/** crc32c over `data` with bytes [holeOffset, holeOffset+4) taken as zero (a checksum field). */
export function crc32cWithHole(seed: number, data: Uint8Array, holeOffset: number): number {
  let c = crc32c(seed, data.subarray(0, holeOffset));
  c = crc32c(c, ZERO4);
  return crc32c(c, data.subarray(holeOffset + 4));
}
const ZERO4 = new Uint8Array(4);
