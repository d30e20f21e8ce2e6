// Small id2 payloads of system inodes. Facts: reference/ocfs2.md §2.3 and mkfs.ocfs2 1.8.7 hexdumps.
//
// Local alloc (local_alloc:N): la_bm_off u32 @0xC0, la_size u16 @0xC4 (bitmap bytes), reserved,
//   la_bitmap @0xD0 (la_size = bs − 0xD0). id1 i_used/i_total count its bits.
// Truncate log (truncate_log:N): tl_count u16 @0xC0 (capacity), tl_used u16 @0xC2, reserved,
//   records @0xC8 of {t_start u32, t_clusters u32} in clusters (tl_count = (bs − 0xC8) / 8).
// Inline data (dyn feature INLINE_DATA): id_count u16 @0xC0 (usable bytes), reserved 6,
//   data @0xC8 (id_count = bs − 0xC8).

import { formatFail, type Where } from '../where.js';

export const LOCAL_ALLOC_BITMAP_OFFSET = 0xd0;
export const TRUNCATE_LOG_RECS_OFFSET = 0xc8;
export const TRUNCATE_REC_BYTES = 8;
export const INLINE_DATA_OFFSET = 0xc8;

export function localAllocBitmapBytes(blockSizeBytes: number): number {
  return blockSizeBytes - LOCAL_ALLOC_BITMAP_OFFSET;
}

export function truncateLogCapacity(blockSizeBytes: number): number {
  return (blockSizeBytes - TRUNCATE_LOG_RECS_OFFSET) / TRUNCATE_REC_BYTES;
}

export function inlineDataCapacity(blockSizeBytes: number): number {
  return blockSizeBytes - INLINE_DATA_OFFSET;
}

export function encodeLocalAlloc(inodeBlock: Buffer, bitmapOffset: number, sizeBytes: number): void {
  inodeBlock.writeUInt32LE(bitmapOffset, 0xc0);
  inodeBlock.writeUInt16LE(sizeBytes, 0xc4);
}

export function encodeTruncateLog(inodeBlock: Buffer, count: number): void {
  inodeBlock.writeUInt16LE(count, 0xc0);
  inodeBlock.writeUInt16LE(0, 0xc2);
}

/** Inline data area of an inode: validates id_count against the block. */
export function inlineDataArea(inodeBlock: Buffer, where: Where): { start: number; end: number } {
  const count = inodeBlock.readUInt16LE(0xc0);
  if (INLINE_DATA_OFFSET + count > inodeBlock.length) formatFail(where, 0xc0, `inline data id_count ${count} exceeds the block`);
  return { start: INLINE_DATA_OFFSET, end: INLINE_DATA_OFFSET + count };
}

export function encodeInlineData(inodeBlock: Buffer, data: Buffer): void {
  inodeBlock.writeUInt16LE(data.length, 0xc0);
  data.copy(inodeBlock, INLINE_DATA_OFFSET);
}
