// Allocator inodes (global_bitmap, global_inode_alloc, inode_alloc:N, extent_alloc:N) keep a
// chain list in id2; each chain links group descriptors (`GROUP01`) holding a bitmap.
// Facts: reference/ocfs2.md §2.3 (chain list) and hexdumps of mkfs.ocfs2 1.8.7 group descriptors.
//
// Chain list at 0xC0 of the inode (little-endian):
//
// | abs  | size | field             | notes                                   |
// |------|------|-------------------|-----------------------------------------|
// | 0xC0 | 2    | cl_cpg            | clusters per group                      |
// | 0xC2 | 2    | cl_bpc            | bits per cluster                        |
// | 0xC4 | 2    | cl_count          | capacity in chain records               |
// | 0xC6 | 2    | cl_next_free_rec  | chains in use                           |
// | 0xC8 | 8    | reserved          |                                         |
// | 0xD0 | 16×n | chain records     | c_free u32, c_total u32, c_blkno u64    |
//
// The inode's id1 holds i_used u32 @0xB8 and i_total u32 @0xBC (bits, summed over all groups).
//
// Group descriptor (one block):
//
// | off  | size | field               | notes                                       |
// |------|------|---------------------|---------------------------------------------|
// | 0x00 | 8    | bg_signature        | "GROUP01\0"                                 |
// | 0x08 | 2    | bg_size             | bitmap bytes                                |
// | 0x0A | 2    | bg_bits             | bits in this group                          |
// | 0x0C | 2    | bg_free_bits_count  |                                             |
// | 0x0E | 2    | bg_chain            | chain index                                 |
// | 0x10 | 4    | bg_generation       | the volume's fs generation                  |
// | 0x14 | 4    | reserved            |                                             |
// | 0x18 | 8    | bg_next_group       | next descriptor in this chain, 0 = end      |
// | 0x20 | 8    | bg_parent_dinode    | the allocator inode                         |
// | 0x28 | 8    | bg_blkno            | its own block number                        |
// | 0x30 | 8    | bg_check            | metaecc                                     |
// | 0x38 | 8    | reserved            |                                             |
// | 0x40 | size | bg_bitmap           | bit i = bit (i mod 8) of byte i/8           |

import { OCFS2_GROUP_DESC_SIGNATURE } from './constants.js';
import { formatFail, needBytes, readU64Safe, type Where } from '../where.js';

export const CHAIN_LIST_OFFSET = 0xc0;
export const CHAIN_RECS_OFFSET = 0xd0;
export const CHAIN_REC_BYTES = 16;
export const GROUP_DESC_BITMAP_OFFSET = 0x40;

export interface ChainRec {
  free: number;
  total: number;
  blkno: number;
}

export interface ChainList {
  clustersPerGroup: number;
  bitsPerCluster: number;
  count: number;
  recs: ChainRec[];
}

/** Chain records that fit in an inode: (bs − 0xD0) / 16. */
export function chainListCapacity(blockSizeBytes: number): number {
  return (blockSizeBytes - CHAIN_RECS_OFFSET) / CHAIN_REC_BYTES;
}

/** Largest bitmap a (non-discontiguous) group descriptor holds, in bytes. */
export function groupBitmapCapacityBytes(blockSizeBytes: number): number {
  return blockSizeBytes - GROUP_DESC_BITMAP_OFFSET;
}

export function parseChainList(inodeBlock: Buffer, where: Where): ChainList {
  needBytes(inodeBlock, CHAIN_RECS_OFFSET, 0, where, 'chain list');
  const count = inodeBlock.readUInt16LE(0xc4);
  const nextFree = inodeBlock.readUInt16LE(0xc6);
  const capacity = chainListCapacity(inodeBlock.length);
  if (count > capacity) formatFail(where, 0xc4, `chain list cl_count ${count} exceeds the ${capacity} records that fit`);
  if (nextFree > count) formatFail(where, 0xc6, `chain list uses ${nextFree} records but holds only ${count}`);
  const recs: ChainRec[] = [];
  for (let i = 0; i < nextFree; i++) {
    const off = CHAIN_RECS_OFFSET + i * CHAIN_REC_BYTES;
    recs.push({ free: inodeBlock.readUInt32LE(off), total: inodeBlock.readUInt32LE(off + 4), blkno: readU64Safe(inodeBlock, off + 8, where, `chain ${i} c_blkno`) });
  }
  return { clustersPerGroup: inodeBlock.readUInt16LE(0xc0), bitsPerCluster: inodeBlock.readUInt16LE(0xc2), count, recs };
}

export function encodeChainList(inodeBlock: Buffer, list: ChainList): void {
  const capacity = chainListCapacity(inodeBlock.length);
  if (list.count > capacity || list.recs.length > list.count) throw new RangeError(`chain list of ${list.recs.length}/${list.count} does not fit ${capacity}`);
  inodeBlock.fill(0, CHAIN_LIST_OFFSET, CHAIN_RECS_OFFSET + list.count * CHAIN_REC_BYTES);
  inodeBlock.writeUInt16LE(list.clustersPerGroup, 0xc0);
  inodeBlock.writeUInt16LE(list.bitsPerCluster, 0xc2);
  inodeBlock.writeUInt16LE(list.count, 0xc4);
  inodeBlock.writeUInt16LE(list.recs.length, 0xc6);
  list.recs.forEach((r, i) => {
    const off = CHAIN_RECS_OFFSET + i * CHAIN_REC_BYTES;
    inodeBlock.writeUInt32LE(r.free, off);
    inodeBlock.writeUInt32LE(r.total, off + 4);
    inodeBlock.writeBigUInt64LE(BigInt(r.blkno), off + 8);
  });
}

export interface GroupDesc {
  sizeBytes: number;
  bits: number;
  freeBits: number;
  chain: number;
  generation: number;
  nextGroup: number;
  parentDinode: number;
  blkno: number;
  bitmap: Buffer;
}

export function parseGroupDesc(block: Buffer, where: Where, expect: { blkno: number; fsGeneration: number }): GroupDesc {
  needBytes(block, 0, GROUP_DESC_BITMAP_OFFSET, where, 'group descriptor');
  const sig = block.subarray(0, 8).toString('latin1').replace(/\0+$/, '');
  if (sig !== OCFS2_GROUP_DESC_SIGNATURE) formatFail(where, 0, `group descriptor signature is '${sig.replace(/[^\x20-\x7e]/g, '?')}', expected '${OCFS2_GROUP_DESC_SIGNATURE}'`);
  const sizeBytes = block.readUInt16LE(0x08);
  const bits = block.readUInt16LE(0x0a);
  const freeBits = block.readUInt16LE(0x0c);
  if (sizeBytes > block.length - GROUP_DESC_BITMAP_OFFSET) formatFail(where, 0x08, `group bitmap of ${sizeBytes} bytes does not fit the block`);
  if (bits > sizeBytes * 8) formatFail(where, 0x0a, `group has ${bits} bits but a ${sizeBytes}-byte bitmap`);
  if (freeBits > bits) formatFail(where, 0x0c, `group has ${freeBits} free bits of ${bits}`);
  const generation = block.readUInt32LE(0x10);
  if (generation !== expect.fsGeneration) formatFail(where, 0x10, `group descriptor has fs generation 0x${generation.toString(16)}, the volume's is 0x${expect.fsGeneration.toString(16)}`);
  const blkno = readU64Safe(block, 0x28, where, 'bg_blkno');
  if (blkno !== expect.blkno) formatFail(where, 0x28, `group descriptor read from block ${expect.blkno} says it is block ${blkno}`);
  return {
    sizeBytes, bits, freeBits,
    chain: block.readUInt16LE(0x0e),
    generation,
    nextGroup: readU64Safe(block, 0x18, where, 'bg_next_group'),
    parentDinode: readU64Safe(block, 0x20, where, 'bg_parent_dinode'),
    blkno,
    bitmap: Buffer.from(block.subarray(GROUP_DESC_BITMAP_OFFSET, GROUP_DESC_BITMAP_OFFSET + sizeBytes)),
  };
}

export function encodeGroupDesc(g: GroupDesc, blockSizeBytes: number): Buffer {
  if (g.sizeBytes > groupBitmapCapacityBytes(blockSizeBytes) || g.bitmap.length > g.sizeBytes) throw new RangeError('group bitmap does not fit the block');
  const block = Buffer.alloc(blockSizeBytes);
  block.write(OCFS2_GROUP_DESC_SIGNATURE, 0, 'latin1');
  block.writeUInt16LE(g.sizeBytes, 0x08);
  block.writeUInt16LE(g.bits, 0x0a);
  block.writeUInt16LE(g.freeBits, 0x0c);
  block.writeUInt16LE(g.chain, 0x0e);
  block.writeUInt32LE(g.generation >>> 0, 0x10);
  block.writeBigUInt64LE(BigInt(g.nextGroup), 0x18);
  block.writeBigUInt64LE(BigInt(g.parentDinode), 0x20);
  block.writeBigUInt64LE(BigInt(g.blkno), 0x28);
  g.bitmap.copy(block, GROUP_DESC_BITMAP_OFFSET);
  return block;
}

/** Sets bits [first, first+count) of a little-endian bitmap. */
export function setBits(bitmap: Buffer, first: number, count: number): void {
  for (let i = first; i < first + count; i++) bitmap[i >>> 3] |= 1 << (i & 7);
}

export function countSetBits(bitmap: Buffer, bits: number): number {
  let n = 0;
  for (let i = 0; i < bits; i++) if (bitmap[i >>> 3]! & (1 << (i & 7))) n++;
  return n;
}
