// Extent lists (in inodes at 0xC0 and in extent blocks at 0x30) and extent blocks (`EXBLK01`).
// Facts: reference/ocfs2.md §2.3.
//
// Extent list header (16 bytes) then records (16 bytes each), little-endian:
//
// | off  | size | field            | notes                                          |
// |------|------|------------------|------------------------------------------------|
// | 0x00 | 2    | l_tree_depth     | 0 = records point at data                      |
// | 0x02 | 2    | l_count          | capacity in records                            |
// | 0x04 | 2    | l_next_free_rec  | records in use                                 |
// | 0x06 | 10   | reserved         |                                                |
// | 0x10 | 16×n | records          |                                                |
//
// Extent record: e_cpos u32 @0 (clusters); e_int_clusters u32 @4 (interior) or
// e_leaf_clusters u16 @4, reserved u8 @6, e_flags u8 @7 (leaf); e_blkno u64 @8 (blocks).
//
// Extent block: signature "EXBLK01" @0, check @8, suballoc slot u16 @0x10, suballoc bit u16 @0x12,
// fs generation u32 @0x14, h_blkno u64 @0x18, suballoc loc u64 @0x20, next leaf u64 @0x28, list @0x30.

import { OCFS2_EXTENT_BLOCK_SIGNATURE } from './constants.js';
import { DINODE_ID2_OFFSET } from './dinode.js';
import { formatFail, needBytes, readU64Safe, type Where } from '../where.js';

export const EXTENT_LIST_HEADER_BYTES = 16;
export const EXTENT_REC_BYTES = 16;
export const EXTENT_BLOCK_LIST_OFFSET = 0x30;
/** Deepest tree we follow: ocfs2 trees stay far shallower; this bounds a corrupt loop (kernel limit). */
export const OCFS2_MAX_PATH_DEPTH = 5;

export const ExtentFlag = { UNWRITTEN: 0x1, REFCOUNTED: 0x2 } as const;

export interface ExtentRec {
  cpos: number;
  /** Clusters covered: e_leaf_clusters in a leaf, e_int_clusters in an interior node. */
  clusters: number;
  flags: number;
  blkno: number;
}

export interface ExtentList {
  treeDepth: number;
  count: number;
  nextFreeRec: number;
  recs: ExtentRec[];
}

/** Records that fit in an inode's list at this block size: (bs − 0xD0) / 16. */
export function inodeExtentCapacity(blockSizeBytes: number): number {
  return (blockSizeBytes - DINODE_ID2_OFFSET - EXTENT_LIST_HEADER_BYTES) / EXTENT_REC_BYTES;
}

/** Records that fit in an extent block: (bs − 0x40) / 16. */
export function extentBlockCapacity(blockSizeBytes: number): number {
  return (blockSizeBytes - EXTENT_BLOCK_LIST_OFFSET - EXTENT_LIST_HEADER_BYTES) / EXTENT_REC_BYTES;
}

/** Decodes and validates the list at `listOffset` of `buf`; the list runs to the end of `buf`. */
export function parseExtentList(buf: Buffer, listOffset: number, where: Where): ExtentList {
  needBytes(buf, listOffset, EXTENT_LIST_HEADER_BYTES, where, 'extent list');
  const treeDepth = buf.readUInt16LE(listOffset);
  const count = buf.readUInt16LE(listOffset + 2);
  const nextFreeRec = buf.readUInt16LE(listOffset + 4);
  const capacity = Math.floor((buf.length - listOffset - EXTENT_LIST_HEADER_BYTES) / EXTENT_REC_BYTES);
  if (treeDepth > OCFS2_MAX_PATH_DEPTH) formatFail(where, listOffset, `extent tree depth ${treeDepth} exceeds ${OCFS2_MAX_PATH_DEPTH}`);
  if (count > capacity) formatFail(where, listOffset + 2, `extent list l_count ${count} exceeds the ${capacity} records that fit`);
  if (nextFreeRec > count) formatFail(where, listOffset + 4, `extent list uses ${nextFreeRec} records but holds only ${count}`);
  const recs: ExtentRec[] = [];
  for (let i = 0; i < nextFreeRec; i++) {
    const off = listOffset + EXTENT_LIST_HEADER_BYTES + i * EXTENT_REC_BYTES;
    const leaf = treeDepth === 0;
    recs.push({
      cpos: buf.readUInt32LE(off),
      clusters: leaf ? buf.readUInt16LE(off + 4) : buf.readUInt32LE(off + 4),
      flags: leaf ? buf.readUInt8(off + 7) : 0,
      blkno: readU64Safe(buf, off + 8, where, `extent record ${i} e_blkno`),
    });
  }
  return { treeDepth, count, nextFreeRec, recs };
}

export function encodeExtentList(buf: Buffer, listOffset: number, list: ExtentList): void {
  const capacity = Math.floor((buf.length - listOffset - EXTENT_LIST_HEADER_BYTES) / EXTENT_REC_BYTES);
  if (list.count > capacity || list.recs.length > list.count) throw new RangeError(`extent list of ${list.recs.length}/${list.count} records does not fit ${capacity}`);
  buf.fill(0, listOffset, listOffset + EXTENT_LIST_HEADER_BYTES + list.count * EXTENT_REC_BYTES);
  buf.writeUInt16LE(list.treeDepth, listOffset);
  buf.writeUInt16LE(list.count, listOffset + 2);
  buf.writeUInt16LE(list.recs.length, listOffset + 4);
  list.recs.forEach((r, i) => {
    const off = listOffset + EXTENT_LIST_HEADER_BYTES + i * EXTENT_REC_BYTES;
    buf.writeUInt32LE(r.cpos, off);
    if (list.treeDepth === 0) {
      if (r.clusters > 0xffff) throw new RangeError(`leaf extent of ${r.clusters} clusters exceeds 65535`);
      buf.writeUInt16LE(r.clusters, off + 4);
      buf.writeUInt8(r.flags, off + 7);
    } else {
      buf.writeUInt32LE(r.clusters, off + 4);
    }
    buf.writeBigUInt64LE(BigInt(r.blkno), off + 8);
  });
}

export interface ExtentBlock {
  suballocSlot: number;
  suballocBit: number;
  fsGeneration: number;
  blkno: number;
  nextLeafBlk: number;
  list: ExtentList;
}

/** Decodes and validates an extent block read from block `blkno`. */
export function parseExtentBlock(block: Buffer, where: Where, expect: { blkno: number; fsGeneration: number }): ExtentBlock {
  needBytes(block, 0, EXTENT_BLOCK_LIST_OFFSET + EXTENT_LIST_HEADER_BYTES, where, 'extent block');
  const sig = block.subarray(0, 8).toString('latin1').replace(/\0+$/, '');
  if (sig !== OCFS2_EXTENT_BLOCK_SIGNATURE) formatFail(where, 0, `extent block signature is '${sig.replace(/[^\x20-\x7e]/g, '?')}', expected '${OCFS2_EXTENT_BLOCK_SIGNATURE}'`);
  const fsGeneration = block.readUInt32LE(0x14);
  if (fsGeneration !== expect.fsGeneration) formatFail(where, 0x14, `extent block has fs generation 0x${fsGeneration.toString(16)}, the volume's is 0x${expect.fsGeneration.toString(16)}`);
  const blkno = readU64Safe(block, 0x18, where, 'h_blkno');
  if (blkno !== expect.blkno) formatFail(where, 0x18, `extent block read from block ${expect.blkno} says it is block ${blkno}`);
  return {
    suballocSlot: block.readUInt16LE(0x10),
    suballocBit: block.readUInt16LE(0x12),
    fsGeneration,
    blkno,
    nextLeafBlk: readU64Safe(block, 0x28, where, 'h_next_leaf_blk'),
    list: parseExtentList(block, EXTENT_BLOCK_LIST_OFFSET, where),
  };
}

/** An extent block (`EXBLK01`) of `blockSizeBytes` holding `list`; the block check stays zero (no metaecc). */
export function encodeExtentBlock(eb: ExtentBlock & { suballocLoc: number }, blockSizeBytes: number): Buffer {
  const block = Buffer.alloc(blockSizeBytes);
  block.write(OCFS2_EXTENT_BLOCK_SIGNATURE, 0, 'latin1');
  block.writeUInt16LE(eb.suballocSlot, 0x10);
  block.writeUInt16LE(eb.suballocBit, 0x12);
  block.writeUInt32LE(eb.fsGeneration >>> 0, 0x14);
  block.writeBigUInt64LE(BigInt(eb.blkno), 0x18);
  block.writeBigUInt64LE(BigInt(eb.suballocLoc), 0x20);
  block.writeBigUInt64LE(BigInt(eb.nextLeafBlk), 0x28);
  encodeExtentList(block, EXTENT_BLOCK_LIST_OFFSET, eb.list);
  return block;
}
