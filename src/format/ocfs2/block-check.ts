// ocfs2 metadata ECC (`ocfs2_block_check`, used only when incompat META_ECC is set): 8 bytes holding
// bc_crc32e le32, bc_ecc le16 and 2 reserved bytes, somewhere in the block (dinode 0x80, extent
// block 0x08, group descriptor 0x30, directory trailer +0x38, …). Facts: reference/ocfs2.md §7.
//
//   crc = crc32_le(seed ~0, whole block with the 8 check bytes zeroed), no final inversion
//   ecc = XOR of the Hamming code position of every set data bit, truncated to 16 bits, where data
//         bit i (bit i%8 of byte i/8) sits at position i+1 pushed past every power-of-two position
// Validation tries the CRC; on a mismatch a single flipped data bit is located from the ECC
// syndrome, flipped back and the CRC re-checked.

import { crc32Le } from '../crc32.js';
import { formatFail, type Where } from '../where.js';

export const BLOCK_CHECK_BYTES = 8;

/** Where each metadata block keeps its check (§7). */
export const BlockCheckOffset = { DINODE: 0x80, EXTENT_BLOCK: 0x08, GROUP_DESC: 0x30, DX_ROOT: 0x08, DX_LEAF: 0x08, XATTR_BLOCK: 0x18, REFCOUNT_BLOCK: 0x20 } as const;

/** Hamming code position of data bit i: i + 1, pushed past every power of two. */
export function hammingCodeBit(i: number): number {
  let b = i + 1;
  for (let p = 0; 2 ** p < b + 1; p++) b++;
  return b;
}

/** Hamming parity of the block's bits (check bytes must already be zero). */
export function hammingParity(data: Uint8Array): number {
  let parity = 0;
  for (let byte = 0; byte < data.length; byte++) {
    const v = data[byte]!;
    if (v === 0) continue;
    for (let bit = 0; bit < 8; bit++) if (v & (1 << bit)) parity ^= hammingCodeBit(byte * 8 + bit);
  }
  return parity & 0xffff;
}

export interface BlockCheck {
  crc32: number;
  ecc: number;
}

/** Computes the check of `block` as if its check field at `checkOffset` were zero. */
export function computeBlockCheck(block: Uint8Array, checkOffset: number): BlockCheck {
  const copy = Buffer.from(block);
  copy.fill(0, checkOffset, checkOffset + BLOCK_CHECK_BYTES);
  return { crc32: crc32Le(0xffffffff, copy), ecc: hammingParity(copy) };
}

/** Writes the check into `block` in place. */
export function writeBlockCheck(block: Buffer, checkOffset: number): void {
  const c = computeBlockCheck(block, checkOffset);
  block.fill(0, checkOffset, checkOffset + BLOCK_CHECK_BYTES);
  block.writeUInt32LE(c.crc32, checkOffset);
  block.writeUInt16LE(c.ecc, checkOffset + 4);
}

/**
 * Verifies a block's check. Returns the block (a corrected copy when a single-bit error was
 * repaired, with `repairedBit` set) or throws a FormatError naming the check's offset.
 */
export function verifyBlockCheck(block: Buffer, checkOffset: number, where: Where): { block: Buffer; repairedBit: number | undefined } {
  const storedCrc = block.readUInt32LE(checkOffset);
  const storedEcc = block.readUInt16LE(checkOffset + 4);
  const c = computeBlockCheck(block, checkOffset);
  if (c.crc32 === storedCrc) return { block, repairedBit: undefined };
  const syndrome = (c.ecc ^ storedEcc) & 0xffff;
  if (syndrome !== 0) {
    const bits = block.length * 8;
    for (let i = 0; i < bits; i++) {
      const pos = hammingCodeBit(i);
      if (pos > syndrome) break;
      if (pos !== syndrome) continue;
      const fixed = Buffer.from(block);
      fixed[i >>> 3] ^= 1 << (i & 7);
      if (computeBlockCheck(fixed, checkOffset).crc32 === storedCrc) return { block: fixed, repairedBit: i };
      break;
    }
  }
  formatFail(where, checkOffset, `metaecc check failed: stored crc32 0x${storedCrc.toString(16)}, computed 0x${c.crc32.toString(16)}`);
}
