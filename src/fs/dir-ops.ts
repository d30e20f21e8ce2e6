// Changing a directory's entries for one operation's transaction: inline directories (entries in
// the inode's inline area) and block directories (entries in directory blocks reached through
// the inode's extent list), as the kernel keeps them (reference/ocfs2.md §2.2).
//
// An entry is added to the first place it fits: the inline area, else — when that is full — the
// directory is expanded as ocfs2_expand_inline_dir does: one cluster from the global bitmap, the
// inline entries moved into its first block, the inode loses INLINE_DATA and gets an extent list
// (i_size one block, i_clusters 1). A block directory whose blocks are all full grows by one block:
// the next block of its last cluster if i_size has not reached it, else a new cluster. Every block
// changed is handed back for the caller's ONE transaction; nothing is written here.
//
// Blocks are repacked (each entry at its minimum rec_len, the last one stretched to the end), the
// first block keeps '.' and '..' first. Volumes whose directory blocks carry a trailer (metaecc,
// indexed-dirs) are not changed: a node refuses to mount them (src/fs/mount-rules.ts).

import { SanboxError } from '../errors.js';
import { DirFileType, DynFeature, FeatureIncompat } from '../format/ocfs2/constants.js';
import { DINODE_ID2_OFFSET, DINODE_CLUSTERS_OFFSET, DINODE_SIZE_OFFSET, DINODE_DYN_FEATURES_OFFSET } from '../format/ocfs2/dinode.js';
import { encodeDirEntries, parseDirEntries, type DirEntry } from '../format/ocfs2/dir-entry.js';
import { encodeExtentList, inodeExtentCapacity, parseExtentList, type ExtentRec } from '../format/ocfs2/extent-list.js';
import { encodeInlineData, inlineDataArea, inlineDataCapacity } from '../format/ocfs2/system-payloads.js';
import { formatFail } from '../format/where.js';
import type { ClusterBitmap } from './cluster-alloc.js';
import type { LoggedBlock } from './journal-writer.js';
import { SMALL_FILE_BYTES_MAX, type InodeBlock, type Ocfs2Volume } from './ocfs2-volume.js';

/** A leaf extent's e_leaf_clusters is a u16: a directory's run is extended only below it. */
const LEAF_EXTENT_CLUSTERS_MAX = 0xffff;

export interface NewEntry {
  inode: number;
  name: string;
  fileType: number;
}

interface DirBlock {
  lblk: number;
  pblk: number;
  entries: DirEntry[];
}

/** A directory as read under its lock: its inode, entries in on-disk order, and (block dirs) its blocks. */
export interface DirView {
  dir: InodeBlock;
  entries: DirEntry[];
  /** Empty for an inline directory. */
  blocks: DirBlock[];
}

/** Gives the operation's global bitmap (locked EX on first use, one instance per operation). */
export type BitmapSource = () => Promise<ClusterBitmap>;

/** The directory's new inode block and the directory blocks changed, for the transaction. */
export interface DirChange {
  inode: Buffer;
  blocks: LoggedBlock[];
}

export const isInlineInode = (i: InodeBlock): boolean => (i.inode.dynFeatures & DynFeature.INLINE_DATA) !== 0;
export const hasInlineFeature = (vol: Ocfs2Volume): boolean => (vol.sb.featureIncompat & FeatureIncompat.INLINE_DATA) !== 0;

/** Reads every entry of a directory, block by block (a hole inside i_size is a FormatError). */
export async function readDirView(vol: Ocfs2Volume, dir: InodeBlock): Promise<DirView> {
  if (isInlineInode(dir)) return { dir, entries: await vol.readDir(dir), blocks: [] };
  const bs = vol.blockSizeBytes;
  const extents = await vol.extents(dir);
  const size = Number(dir.inode.sizeBytes);
  if (size % bs !== 0) formatFail(vol.where(dir.blkno, DINODE_SIZE_OFFSET), 0, `directory ${dir.blkno} i_size ${size} is not a whole number of ${bs}-byte blocks`);
  if (size > SMALL_FILE_BYTES_MAX) formatFail(vol.where(dir.blkno, DINODE_SIZE_OFFSET), 0, `directory ${dir.blkno} i_size ${size} is too large`);
  const blocks: DirBlock[] = [];
  for (let lblk = 0; lblk < size / bs; lblk++) {
    const pblk = vol.mapBlock(extents, lblk);
    if (pblk === undefined) formatFail(vol.where(dir.blkno, DINODE_SIZE_OFFSET), 0, `directory ${dir.blkno} has a hole at block ${lblk} inside its i_size`);
    const b = await vol.readBlocks(pblk, 1, `block ${lblk} of directory ${dir.blkno}`);
    blocks.push({ lblk, pblk, entries: parseDirEntries(b, 0, bs, vol.where(pblk)) });
  }
  return { dir, entries: blocks.flatMap((b) => b.entries), blocks };
}

const packed = (entries: NewEntry[], bytes: number): Buffer | undefined => {
  try {
    return encodeDirEntries(entries, bytes);
  } catch (err) {
    if (err instanceof RangeError) return undefined;
    throw err;
  }
};

/** The inline area of `block` set to exactly `entries`; false when they do not fit. */
function writeInline(vol: Ocfs2Volume, dir: InodeBlock, block: Buffer, entries: NewEntry[]): boolean {
  const area = inlineDataArea(dir.block, vol.where(dir.blkno));
  const bytes = packed(entries, area.end - area.start);
  if (bytes === undefined) return false;
  bytes.copy(block, area.start);
  return true;
}

/** The leaf records of a block directory kept in its inode (tree depth 0). */
function inodeLeafRecs(vol: Ocfs2Volume, dir: InodeBlock, block: Buffer): ExtentRec[] {
  const list = parseExtentList(block, DINODE_ID2_OFFSET, vol.where(dir.blkno));
  if (list.treeDepth !== 0) throw new SanboxError('EINVAL', `${vol.dev.name}: directory ${dir.blkno} has an extent tree of depth ${list.treeDepth}; sanbox grows only directories whose extents sit in the inode`, { device: vol.dev.name });
  return list.recs;
}

/** Appends one cluster at logical cluster `cpos` to the inode's own extent list, merging with a contiguous last run. */
function appendCluster(vol: Ocfs2Volume, dir: InodeBlock, block: Buffer, recs: ExtentRec[], cpos: number, blkno: number): void {
  const bpc = vol.geometry.blocksPerCluster;
  const last = recs[recs.length - 1];
  const out = recs.map((r) => ({ ...r }));
  if (last !== undefined && last.cpos + last.clusters === cpos && last.blkno + last.clusters * bpc === blkno && last.clusters < LEAF_EXTENT_CLUSTERS_MAX) out[out.length - 1]!.clusters++;
  else out.push({ cpos, clusters: 1, flags: 0, blkno });
  const cap = inodeExtentCapacity(vol.blockSizeBytes);
  if (out.length > cap) throw new SanboxError('ENOSPC', `${vol.dev.name}: directory ${dir.blkno} would need more than the ${cap} extents its inode holds`, { device: vol.dev.name });
  encodeExtentList(block, DINODE_ID2_OFFSET, { treeDepth: 0, count: cap, nextFreeRec: out.length, recs: out });
}

/** A new, empty directory's body in its inode block `ino`: inline when the volume has inline data, else one directory block. */
export async function newDirBody(vol: Ocfs2Volume, ino: Buffer, self: number, parent: number, bitmap: BitmapSource): Promise<LoggedBlock[]> {
  const dots: NewEntry[] = [{ inode: self, name: '.', fileType: DirFileType.DIR }, { inode: parent, name: '..', fileType: DirFileType.DIR }];
  const bs = vol.blockSizeBytes;
  if (hasInlineFeature(vol)) {
    const cap = inlineDataCapacity(bs);
    encodeInlineData(ino, encodeDirEntries(dots, cap));
    ino.writeUInt16LE(ino.readUInt16LE(DINODE_DYN_FEATURES_OFFSET) | DynFeature.INLINE_DATA, DINODE_DYN_FEATURES_OFFSET);
    ino.writeBigUInt64LE(BigInt(cap), DINODE_SIZE_OFFSET);
    return [];
  }
  const [run] = await (await bitmap()).take(1, 1);
  const pblk = run!.cluster * vol.geometry.blocksPerCluster;
  ino.fill(0, DINODE_ID2_OFFSET);
  const cap = inodeExtentCapacity(bs);
  encodeExtentList(ino, DINODE_ID2_OFFSET, { treeDepth: 0, count: cap, nextFreeRec: 1, recs: [{ cpos: 0, clusters: 1, flags: 0, blkno: pblk }] });
  ino.writeUInt16LE(ino.readUInt16LE(DINODE_DYN_FEATURES_OFFSET) & ~DynFeature.INLINE_DATA, DINODE_DYN_FEATURES_OFFSET);
  ino.writeUInt32LE(1, DINODE_CLUSTERS_OFFSET);
  ino.writeBigUInt64LE(BigInt(bs), DINODE_SIZE_OFFSET);
  return [{ home: pblk, data: encodeDirEntries(dots, bs) }];
}

/**
 * Adds `entry` (its name not yet in the directory): into the inline area, else into the first
 * directory block with room, else into a new block; an inline directory that is full is expanded
 * into a block first.
 */
export async function addEntry(vol: Ocfs2Volume, view: DirView, entry: NewEntry, bitmap: BitmapSource): Promise<DirChange> {
  const { dir } = view;
  const bs = vol.blockSizeBytes;
  const bpc = vol.geometry.blocksPerCluster;
  const inode = Buffer.from(dir.block);
  if (isInlineInode(dir) && writeInline(vol, dir, inode, [...view.entries, entry])) return { inode, blocks: [] };

  const changed = new Map<number, Buffer>();
  let blocks = view.blocks;
  let recs: ExtentRec[];
  if (isInlineInode(dir)) {
    // Expand: one cluster, the inline entries moved into its first block (ocfs2_expand_inline_dir).
    const [run] = await (await bitmap()).take(1, 1);
    const pblk = run!.cluster * bpc;
    const first = packed(view.entries, bs);
    if (first === undefined) throw new Error(`internal: the entries of inline directory ${dir.blkno} do not fit one ${bs}-byte block`);
    changed.set(pblk, first);
    blocks = [{ lblk: 0, pblk, entries: view.entries }];
    inode.fill(0, DINODE_ID2_OFFSET);
    inode.writeUInt16LE(inode.readUInt16LE(DINODE_DYN_FEATURES_OFFSET) & ~DynFeature.INLINE_DATA, DINODE_DYN_FEATURES_OFFSET);
    inode.writeUInt32LE(1, DINODE_CLUSTERS_OFFSET);
    inode.writeBigUInt64LE(BigInt(bs), DINODE_SIZE_OFFSET);
    recs = [{ cpos: 0, clusters: 1, flags: 0, blkno: pblk }];
    encodeExtentList(inode, DINODE_ID2_OFFSET, { treeDepth: 0, count: inodeExtentCapacity(bs), nextFreeRec: 1, recs });
  } else {
    recs = inodeLeafRecs(vol, dir, inode);
  }
  for (const b of blocks) {
    const data = packed([...b.entries, entry], bs);
    if (data === undefined) continue;
    changed.set(b.pblk, data);
    return { inode, blocks: [...changed].map(([home, d]) => ({ home, data: d })) };
  }
  // Every block is full: one more block, inside the last cluster while i_size has not reached its end.
  const sizeBytes = Number(inode.readBigUInt64LE(DINODE_SIZE_OFFSET));
  const clusters = inode.readUInt32LE(DINODE_CLUSTERS_OFFSET);
  const lblk = sizeBytes / bs;
  let pblk: number;
  if (lblk < clusters * bpc) {
    const r = recs.find((e) => lblk >= e.cpos * bpc && lblk < (e.cpos + e.clusters) * bpc);
    if (r === undefined) formatFail(vol.where(dir.blkno, DINODE_ID2_OFFSET), 0, `directory ${dir.blkno} has no extent for block ${lblk} inside its ${clusters} clusters`);
    pblk = r.blkno + (lblk - r.cpos * bpc);
  } else {
    const [run] = await (await bitmap()).take(1, 1);
    pblk = run!.cluster * bpc;
    appendCluster(vol, dir, inode, recs, clusters, pblk);
    inode.writeUInt32LE(clusters + 1, DINODE_CLUSTERS_OFFSET);
  }
  inode.writeBigUInt64LE(BigInt(sizeBytes + bs), DINODE_SIZE_OFFSET);
  changed.set(pblk, encodeDirEntries([entry], bs));
  return { inode, blocks: [...changed].map(([home, d]) => ({ home, data: d })) };
}

/** Removes entry `hit` (one of view.entries): its inline area or its block repacked without it. */
export function removeEntry(vol: Ocfs2Volume, view: DirView, hit: DirEntry): DirChange {
  const { dir } = view;
  const inode = Buffer.from(dir.block);
  if (isInlineInode(dir)) {
    if (!writeInline(vol, dir, inode, view.entries.filter((e) => e !== hit))) throw new Error('internal: fewer entries no longer fit');
    return { inode, blocks: [] };
  }
  const b = view.blocks.find((x) => x.entries.includes(hit));
  if (b === undefined) throw new Error(`internal: entry '${hit.name}' is in no block of directory ${dir.blkno}`);
  return { inode, blocks: [{ home: b.pblk, data: encodeDirEntries(b.entries.filter((e) => e !== hit), vol.blockSizeBytes) }] };
}
