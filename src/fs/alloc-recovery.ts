// Recovering a dead slot's cluster allocators, as ocfs2 does after replaying its journal
// (fs/ocfs2/localalloc.c, alloc.c; reference/ocfs2.md §6):
//
// - Local alloc (local_alloc:N): a window of i_total clusters starting at la_bm_off, all marked
//   used in the global bitmap; bits set in la_bitmap went to files. Recovery frees the window's
//   unused clusters in the global bitmap and empties the local alloc (i_used = i_total = 0,
//   la_bm_off = 0, bitmap zero). A clean journal beside a non-empty local alloc makes the kernel
//   refuse to mount that slot ("unrecovered local alloc, please run fsck.ocfs2"), so this is not
//   optional once the journal is marked clean.
// - Truncate log (truncate_log:N): tl_used records {t_start, t_clusters} of clusters a truncate
//   released but did not yet return; recovery frees them and sets tl_used = 0.
//
// The global bitmap update is idempotent so an interrupted recovery can simply be rerun: a bit is
// cleared only if set, and every group's bg_free_bits_count, every chain's c_free and the
// allocator's i_used are recomputed from the bitmaps rather than adjusted by deltas.

import { FormatError } from '../errors.js';
import { BlockCheckOffset, writeBlockCheck } from '../format/ocfs2/block-check.js';
import { CHAIN_RECS_OFFSET, CHAIN_REC_BYTES, GROUP_DESC_BITMAP_OFFSET, countSetBits, parseChainList, parseGroupDesc, type GroupDesc } from '../format/ocfs2/chain-list.js';
import { slotFileName } from '../format/ocfs2/constants.js';
import { DINODE_ID1_OFFSET } from '../format/ocfs2/dinode.js';
import { LOCAL_ALLOC_BITMAP_OFFSET, TRUNCATE_LOG_RECS_OFFSET, TRUNCATE_REC_BYTES, truncateLogCapacity } from '../format/ocfs2/system-payloads.js';
import type { Ocfs2Volume } from './ocfs2-volume.js';

/** Bound on group descriptors followed in the global bitmap's chains (a loop cannot spin). */
const GROUPS_VISITED_MAX = 1_000_000;
/** Group descriptor field bg_free_bits_count (le16). */
const BG_FREE_BITS_OFFSET = 0x0c;
/** Local alloc la_bm_off (le32) and la_size (le16) in id2. */
const LA_BM_OFF_OFFSET = 0xc0;
const LA_SIZE_OFFSET = 0xc4;
/** Truncate log tl_used (le16). */
const TL_USED_OFFSET = 0xc2;

export interface ClusterRange {
  startCluster: number;
  clusters: number;
}

export interface AllocRecovery {
  /** The local alloc window that was emptied (undefined: it was empty). */
  localAlloc?: { windowStartCluster: number; windowClusters: number; usedClusters: number; freedClusters: number };
  /** Truncate log records replayed. */
  truncateLog: ClusterRange[];
  /** Clusters whose global-bitmap bit went from set to clear. */
  clustersFreed: number;
}

/** Recovers slot `slot`'s local alloc and truncate log into the global bitmap. */
export async function recoverAllocators(vol: Ocfs2Volume, slot: number, opts: { dryRun?: boolean } = {}): Promise<AllocRecovery> {
  const la = await vol.systemInode(slotFileName('local_alloc', slot));
  const tl = await vol.systemInode(slotFileName('truncate_log', slot));
  const bs = vol.blockSizeBytes;
  const ranges: ClusterRange[] = [];
  const out: AllocRecovery = { truncateLog: [], clustersFreed: 0 };

  const laTotal = la.block.readUInt32LE(DINODE_ID1_OFFSET + 4);
  const laOff = la.block.readUInt32LE(LA_BM_OFF_OFFSET);
  const laSize = la.block.readUInt16LE(LA_SIZE_OFFSET);
  if (LOCAL_ALLOC_BITMAP_OFFSET + laSize > bs || laTotal > laSize * 8) {
    const off = vol.where(la.blkno, LA_SIZE_OFFSET).offsetBytes!;
    throw new FormatError(`${vol.dev.name}: local_alloc:${slot} has ${laTotal} bits in a ${laSize}-byte bitmap (at byte offset ${off})`, { device: vol.dev.name, offsetBytes: off });
  }
  if (laTotal > 0 && laOff + laTotal > vol.geometry.clusterCount) {
    const off = vol.where(la.blkno, LA_BM_OFF_OFFSET).offsetBytes!;
    throw new FormatError(`${vol.dev.name}: local_alloc:${slot} window [${laOff}, +${laTotal}) runs past the ${vol.geometry.clusterCount} clusters (at byte offset ${off})`, { device: vol.dev.name, offsetBytes: off });
  }
  if (laTotal > 0) {
    const bitmap = la.block.subarray(LOCAL_ALLOC_BITMAP_OFFSET, LOCAL_ALLOC_BITMAP_OFFSET + laSize);
    let used = 0;
    for (let i = 0; i < laTotal; i++) {
      if (bitmap[i >>> 3]! & (1 << (i & 7))) used++;
      else ranges.push({ startCluster: laOff + i, clusters: 1 });
    }
    out.localAlloc = { windowStartCluster: laOff, windowClusters: laTotal, usedClusters: used, freedClusters: laTotal - used };
  }

  const tlUsed = tl.block.readUInt16LE(TL_USED_OFFSET);
  if (tlUsed > truncateLogCapacity(bs)) {
    const off = vol.where(tl.blkno, TL_USED_OFFSET).offsetBytes!;
    throw new FormatError(`${vol.dev.name}: truncate_log:${slot} tl_used ${tlUsed} exceeds its ${truncateLogCapacity(bs)} records (at byte offset ${off})`, { device: vol.dev.name, offsetBytes: off });
  }
  for (let i = 0; i < tlUsed; i++) {
    const rec = TRUNCATE_LOG_RECS_OFFSET + i * TRUNCATE_REC_BYTES;
    const r = { startCluster: tl.block.readUInt32LE(rec), clusters: tl.block.readUInt32LE(rec + 4) };
    if (r.startCluster + r.clusters > vol.geometry.clusterCount) {
      const off = vol.where(tl.blkno, rec).offsetBytes!;
      throw new FormatError(`${vol.dev.name}: truncate_log:${slot} record ${i} [${r.startCluster}, +${r.clusters}) runs past the ${vol.geometry.clusterCount} clusters (at byte offset ${off})`, { device: vol.dev.name, offsetBytes: off });
    }
    out.truncateLog.push(r);
    ranges.push(r);
  }
  if (ranges.length === 0) return out;

  out.clustersFreed = await freeGlobalClusters(vol, ranges, opts.dryRun ?? false);
  if (opts.dryRun) return out;
  // The bitmap is durable before the records that led to it are dropped (a rerun frees nothing twice).
  if (laTotal > 0) {
    const b = Buffer.from(la.block);
    b.writeUInt32LE(0, DINODE_ID1_OFFSET);
    b.writeUInt32LE(0, DINODE_ID1_OFFSET + 4);
    b.writeUInt32LE(0, LA_BM_OFF_OFFSET);
    b.fill(0, LOCAL_ALLOC_BITMAP_OFFSET, LOCAL_ALLOC_BITMAP_OFFSET + laSize);
    await writeInode(vol, la.blkno, b);
  }
  if (tlUsed > 0) {
    const b = Buffer.from(tl.block);
    b.writeUInt16LE(0, TL_USED_OFFSET);
    b.fill(0, TRUNCATE_LOG_RECS_OFFSET, TRUNCATE_LOG_RECS_OFFSET + tlUsed * TRUNCATE_REC_BYTES);
    await writeInode(vol, tl.blkno, b);
  }
  await vol.dev.flush();
  return out;
}

async function writeInode(vol: Ocfs2Volume, blkno: number, block: Buffer): Promise<void> {
  if (vol.metaEcc) writeBlockCheck(block, BlockCheckOffset.DINODE);
  await vol.dev.write(block, blkno * vol.blockSizeBytes);
}

/**
 * Clears the ranges' bits in the global bitmap (only bits that are set) and recomputes the
 * counters. Returns how many bits changed.
 */
async function freeGlobalClusters(vol: Ocfs2Volume, ranges: ClusterRange[], dryRun: boolean): Promise<number> {
  const gb = await vol.systemInode('global_bitmap');
  const bs = vol.blockSizeBytes;
  const list = parseChainList(gb.block, vol.where(gb.blkno));
  const cpg = list.clustersPerGroup;
  const bpc = vol.geometry.blocksPerCluster;
  // Every group, by chain: group g covers clusters [g·cpg, g·cpg + bits); group 0's descriptor
  // sits at s_first_cluster_group, the others at the first block of their first cluster.
  const groups = new Map<number, { desc: GroupDesc; raw: Buffer; chain: number }>();
  let visited = 0;
  for (const [chain, rec] of list.recs.entries()) {
    let blkno = rec.blkno;
    while (blkno !== 0) {
      if (++visited > GROUPS_VISITED_MAX || [...groups.values()].some((g) => g.desc.blkno === blkno)) {
        throw new FormatError(`${vol.dev.name}: global bitmap chain ${chain} loops at group ${blkno}`, { device: vol.dev.name, offsetBytes: blkno * bs });
      }
      const raw = await vol.readBlocks(blkno, 1, `global bitmap chain ${chain}`);
      const desc = parseGroupDesc(raw, vol.where(blkno), { blkno, fsGeneration: vol.sb.inode.fsGeneration });
      const index = blkno === vol.sb.firstClusterGroup ? 0 : blkno / bpc / cpg;
      if (!Number.isInteger(index)) throw new FormatError(`${vol.dev.name}: global bitmap group at block ${blkno} is not at a group boundary`, { device: vol.dev.name, offsetBytes: blkno * bs });
      groups.set(index, { desc, raw, chain });
      blkno = desc.nextGroup;
    }
  }
  const changed = new Set<number>();
  let freed = 0;
  for (const r of ranges) {
    for (let c = r.startCluster; c < r.startCluster + r.clusters; c++) {
      const index = Math.floor(c / cpg);
      const g = groups.get(index);
      const bit = c - index * cpg;
      if (!g || bit >= g.desc.bits) throw new FormatError(`${vol.dev.name}: cluster ${c} is in no group of the global bitmap`, { device: vol.dev.name, offsetBytes: gb.blkno * bs });
      const mask = 1 << (bit & 7);
      if (!(g.desc.bitmap[bit >>> 3]! & mask)) continue;
      g.desc.bitmap[bit >>> 3]! &= ~mask;
      freed++;
      changed.add(index);
    }
  }
  if (dryRun || freed === 0) return freed;
  const chainFree = new Map<number, number>();
  let totalFree = 0;
  for (const [index, g] of groups) {
    const free = g.desc.bits - countSetBits(g.desc.bitmap, g.desc.bits);
    chainFree.set(g.chain, (chainFree.get(g.chain) ?? 0) + free);
    totalFree += free;
    if (!changed.has(index)) continue;
    g.desc.bitmap.copy(g.raw, GROUP_DESC_BITMAP_OFFSET);
    g.raw.writeUInt16LE(free, BG_FREE_BITS_OFFSET);
    if (vol.metaEcc) writeBlockCheck(g.raw, BlockCheckOffset.GROUP_DESC);
    await vol.dev.write(g.raw, g.desc.blkno * bs);
  }
  await vol.dev.flush();
  const b = Buffer.from(gb.block);
  for (const [chain, free] of chainFree) b.writeUInt32LE(free, CHAIN_RECS_OFFSET + chain * CHAIN_REC_BYTES);
  const total = b.readUInt32LE(DINODE_ID1_OFFSET + 4);
  b.writeUInt32LE(total - totalFree, DINODE_ID1_OFFSET);
  await writeInode(vol, gb.blkno, b);
  await vol.dev.flush();
  return freed;
}
