// A file's extent tree as ocfs2 writes it (reference/ocfs2.md §2.3): the leaf records in the
// inode's own list while they fit (tree depth 0), else tree depth 1 — the inode's list points at
// leaf extent blocks (`EXBLK01`, each from a bit of the slot's extent_alloc), filled in logical
// order with h_next_leaf_blk linking them left to right and i_last_eb_blk naming the rightmost,
// as the kernel leaves a tree after ocfs2_shift_tree_depth and ocfs2_add_branch. Deeper trees
// (more leaves than the inode's list holds) are refused by name. Nothing is written here: the
// caller logs the blocks handed back in its transaction.

import { SanboxError } from '../errors.js';
import { DINODE_ID2_OFFSET, DINODE_LAST_EB_BLK_OFFSET } from '../format/ocfs2/dinode.js';
import { encodeExtentBlock, encodeExtentList, EXTENT_BLOCK_LIST_OFFSET, extentBlockCapacity, inodeExtentCapacity, parseExtentBlock, parseExtentList, type ExtentRec } from '../format/ocfs2/extent-list.js';
import type { Where } from '../format/where.js';
import type { LoggedBlock } from './journal-writer.js';
import type { InodeBlock, Ocfs2Volume } from './ocfs2-volume.js';
import type { TakenBit } from './suballoc.js';

/** Trees sanbox writes: the inode's list, or one level of leaf blocks below it. */
const WRITTEN_TREE_DEPTH_MAX = 1;

export interface ExtentBlockRef {
  blkno: number;
  /** h_suballoc_slot and h_suballoc_bit: where the block's bit is. */
  slot: number;
  bit: number;
}

/** Most leaf records a file written by sanbox can have (a depth-1 tree). */
export function maxLeafRecords(blockSizeBytes: number): number {
  return inodeExtentCapacity(blockSizeBytes) * extentBlockCapacity(blockSizeBytes);
}

/** Every extent block of an inode's tree (all levels), validated, in tree order. */
export async function treeBlocks(vol: Ocfs2Volume, ino: InodeBlock): Promise<ExtentBlockRef[]> {
  const out: ExtentBlockRef[] = [];
  const walk = async (buf: Buffer, listOffset: number, where: Where): Promise<void> => {
    const list = parseExtentList(buf, listOffset, where);
    if (list.treeDepth === 0) return;
    for (const rec of list.recs) {
      if (out.some((b) => b.blkno === rec.blkno)) throw new SanboxError('EFORMAT', `${vol.dev.name}: extent tree of inode ${ino.blkno} loops back to block ${rec.blkno}`, { device: vol.dev.name, offsetBytes: where.offsetBytes });
      const block = await vol.readBlocks(rec.blkno, 1, `extent block of inode ${ino.blkno}`, where);
      const eb = parseExtentBlock(block, vol.where(rec.blkno), { blkno: rec.blkno, fsGeneration: vol.sb.inode.fsGeneration });
      out.push({ blkno: rec.blkno, slot: eb.suballocSlot, bit: eb.suballocBit });
      await walk(block, EXTENT_BLOCK_LIST_OFFSET, vol.where(rec.blkno));
    }
  };
  await walk(ino.block, DINODE_ID2_OFFSET, vol.where(ino.blkno));
  return out;
}

/**
 * Sets the inode block's extent tree to the leaf records `recs` (logical order, no overlaps).
 * `newBlock` gives a block's bit of this slot's extent allocator for each leaf block needed.
 * Returns the new extent blocks for the transaction.
 */
export async function writeExtentTree(vol: Ocfs2Volume, inode: Buffer, slot: number, recs: ExtentRec[], newBlock: () => Promise<TakenBit>): Promise<LoggedBlock[]> {
  const bs = vol.blockSizeBytes;
  const inodeCap = inodeExtentCapacity(bs);
  if (recs.length <= inodeCap) {
    encodeExtentList(inode, DINODE_ID2_OFFSET, { treeDepth: 0, count: inodeCap, nextFreeRec: recs.length, recs });
    inode.writeBigUInt64LE(0n, DINODE_LAST_EB_BLK_OFFSET);
    return [];
  }
  const leafCap = extentBlockCapacity(bs);
  const leaves: ExtentRec[][] = [];
  for (let i = 0; i < recs.length; i += leafCap) leaves.push(recs.slice(i, i + leafCap));
  if (leaves.length > inodeCap) {
    throw new SanboxError('ENOSPC', `${vol.dev.name}: ${recs.length} extents need a tree deeper than ${WRITTEN_TREE_DEPTH_MAX} (more than ${inodeCap} leaf blocks of ${leafCap}); sanbox writes trees of depth ${WRITTEN_TREE_DEPTH_MAX} at most`, { device: vol.dev.name });
  }
  const bits: TakenBit[] = [];
  for (let i = 0; i < leaves.length; i++) bits.push(await newBlock());
  const blocks = leaves.map((leaf, i) => ({
    home: bits[i]!.blkno,
    data: encodeExtentBlock({
      suballocSlot: slot, suballocBit: bits[i]!.bit, suballocLoc: bits[i]!.groupBlkno, fsGeneration: vol.sb.inode.fsGeneration,
      blkno: bits[i]!.blkno, nextLeafBlk: bits[i + 1]?.blkno ?? 0,
      list: { treeDepth: 0, count: leafCap, nextFreeRec: leaf.length, recs: leaf },
    }, bs),
  }));
  // Interior records: a leaf's first cpos and the clusters up to its end (no holes in what sanbox writes).
  const interior = leaves.map((leaf, i) => {
    const last = leaf[leaf.length - 1]!;
    return { cpos: leaf[0]!.cpos, clusters: last.cpos + last.clusters - leaf[0]!.cpos, flags: 0, blkno: bits[i]!.blkno };
  });
  encodeExtentList(inode, DINODE_ID2_OFFSET, { treeDepth: 1, count: inodeCap, nextFreeRec: interior.length, recs: interior });
  inode.writeBigUInt64LE(BigInt(bits[bits.length - 1]!.blkno), DINODE_LAST_EB_BLK_OFFSET);
  return blocks;
}
