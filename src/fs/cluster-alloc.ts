// Clusters of the global bitmap for one operation's transaction: take runs of free bits, free the
// bits of a file's extents, and hand back every changed block (group descriptors and the
// global_bitmap inode: i_used, its chains' c_free) for the journal. The caller holds the
// global_bitmap's META lock EX and read the inode under it.
//
// Bit b of a group is cluster start + b, where start is the group descriptor's own cluster —
// except the first group, whose descriptor sits past the superblock yet whose bit 0 is cluster 0
// (s_first_cluster_group, reference/ocfs2.md §2).

import { SanboxError } from '../errors.js';
import { CHAIN_REC_BYTES, CHAIN_RECS_OFFSET, GROUP_DESC_BITMAP_OFFSET, parseChainList, parseGroupDesc } from '../format/ocfs2/chain-list.js';
import type { LoggedBlock } from './journal-writer.js';
import type { InodeBlock, Ocfs2Volume } from './ocfs2-volume.js';

/** i_used (u32) of an allocator inode's id1.bitmap1. */
export const ALLOC_I_USED_OFFSET = 0xb8;
/** bg_free_bits_count (u16) in a group descriptor. */
export const GROUP_FREE_BITS_OFFSET = 0x0c;
/** A leaf extent's e_leaf_clusters is a u16. */
const LEAF_EXTENT_CLUSTERS_MAX = 0xffff;

export interface ClusterRun {
  /** First cluster on the volume. */
  cluster: number;
  clusters: number;
}

interface Group {
  chain: number;
  blkno: number;
  block: Buffer;
  startCluster: number;
  bits: number;
}

const bitSet = (b: Buffer, bit: number): boolean => (b[GROUP_DESC_BITMAP_OFFSET + (bit >>> 3)]! & (1 << (bit & 7))) !== 0;

/** Adds `delta` to an allocator inode's i_used and takes it from chain `chain`'s c_free. */
export function adjustAllocatorInode(block: Buffer, chain: number, delta: number): void {
  block.writeUInt32LE((block.readUInt32LE(ALLOC_I_USED_OFFSET) + delta) >>> 0, ALLOC_I_USED_OFFSET);
  const freeAt = CHAIN_RECS_OFFSET + chain * CHAIN_REC_BYTES;
  block.writeUInt32LE((block.readUInt32LE(freeAt) - delta) >>> 0, freeAt);
}

/** The groups of an allocator inode, chain by chain (a chain longer than its c_total is a loop). */
export async function* allocatorGroups(vol: Ocfs2Volume, ino: InodeBlock): AsyncGenerator<{ chain: number; block: Buffer; blkno: number; bits: number }> {
  const list = parseChainList(ino.block, vol.where(ino.blkno));
  for (const [chain, rec] of list.recs.entries()) {
    let blkno = rec.blkno;
    for (let hops = 0; blkno !== 0; hops++) {
      if (hops > rec.total) throw new SanboxError('EFORMAT', `${vol.dev.name}: chain ${chain} of inode ${ino.blkno} loops`, { device: vol.dev.name, offsetBytes: vol.where(ino.blkno).offsetBytes });
      const block = Buffer.from(await vol.readBlocks(blkno, 1));
      const g = parseGroupDesc(block, vol.where(blkno), { blkno, fsGeneration: vol.sb.inode.fsGeneration });
      yield { chain, block, blkno, bits: g.bits };
      blkno = g.nextGroup;
    }
  }
}

export class ClusterBitmap {
  private groups: Group[] | undefined;
  private readonly inodeBlock: Buffer;
  private readonly changed = new Set<number>();

  constructor(private readonly vol: Ocfs2Volume, private readonly ino: InodeBlock) {
    this.inodeBlock = Buffer.from(ino.block);
  }

  private async load(): Promise<Group[]> {
    if (this.groups) return this.groups;
    const vol = this.vol;
    const bpc = vol.geometry.blocksPerCluster;
    const out: Group[] = [];
    for await (const g of allocatorGroups(vol, this.ino)) {
      out.push({ ...g, startCluster: g.blkno === vol.sb.firstClusterGroup ? 0 : Math.floor(g.blkno / bpc) });
    }
    out.sort((a, b) => a.startCluster - b.startCluster);
    this.groups = out;
    return out;
  }

  private mark(g: Group, first: number, count: number, used: boolean): void {
    for (let bit = first; bit < first + count; bit++) {
      if (bitSet(g.block, bit) === used) throw new SanboxError('EFORMAT', `${this.vol.dev.name}: cluster ${g.startCluster + bit} is already ${used ? 'in use' : 'free'} in the global bitmap`, { device: this.vol.dev.name, offsetBytes: this.vol.where(g.blkno).offsetBytes });
      const at = GROUP_DESC_BITMAP_OFFSET + (bit >>> 3);
      g.block[at] = used ? g.block[at]! | (1 << (bit & 7)) : g.block[at]! & ~(1 << (bit & 7));
    }
    g.block.writeUInt16LE(g.block.readUInt16LE(GROUP_FREE_BITS_OFFSET) + (used ? -count : count), GROUP_FREE_BITS_OFFSET);
    adjustAllocatorInode(this.inodeBlock, g.chain, used ? count : -count);
    this.changed.add(g.blkno);
  }

  /** `clusters` clusters in at most `maxRuns` runs, first fit from the volume's start. */
  async take(clusters: number, maxRuns: number): Promise<ClusterRun[]> {
    const runs: ClusterRun[] = [];
    let left = clusters;
    for (const g of await this.load()) {
      if (g.block.readUInt16LE(GROUP_FREE_BITS_OFFSET) === 0) continue;
      let bit = 0;
      while (left > 0 && bit < g.bits) {
        if (bitSet(g.block, bit)) {
          bit++;
          continue;
        }
        let end = bit;
        while (end < g.bits && !bitSet(g.block, end) && end - bit < Math.min(left, LEAF_EXTENT_CLUSTERS_MAX)) end++;
        if (runs.length === maxRuns) throw new SanboxError('ENOSPC', `${this.vol.dev.name}: ${clusters} clusters need more than ${maxRuns} runs (free space too fragmented for an inode's own extent list)`, { device: this.vol.dev.name });
        this.mark(g, bit, end - bit, true);
        runs.push({ cluster: g.startCluster + bit, clusters: end - bit });
        left -= end - bit;
        bit = end;
      }
      if (left === 0) return runs;
    }
    throw new SanboxError('ENOSPC', `${this.vol.dev.name}: the global bitmap has fewer than ${clusters} free clusters`, { device: this.vol.dev.name });
  }

  /** `clusters` contiguous clusters inside one group, first fit (a suballocator's new group). */
  async takeContiguous(clusters: number): Promise<ClusterRun> {
    for (const g of await this.load()) {
      if (g.block.readUInt16LE(GROUP_FREE_BITS_OFFSET) < clusters) continue;
      let start = 0;
      for (let bit = 0; bit < g.bits; bit++) {
        if (bitSet(g.block, bit)) {
          start = bit + 1;
          continue;
        }
        if (bit - start + 1 === clusters) {
          this.mark(g, start, clusters, true);
          return { cluster: g.startCluster + start, clusters };
        }
      }
    }
    throw new SanboxError('ENOSPC', `${this.vol.dev.name}: the global bitmap has no ${clusters} contiguous free clusters (for an allocator's new group)`, { device: this.vol.dev.name });
  }

  /** Frees a run taken earlier (by any node). */
  async free(run: ClusterRun): Promise<void> {
    let c = run.cluster;
    const end = run.cluster + run.clusters;
    for (const g of await this.load()) {
      if (c >= end) break;
      if (c < g.startCluster || c >= g.startCluster + g.bits) continue;
      const n = Math.min(end, g.startCluster + g.bits) - c;
      this.mark(g, c - g.startCluster, n, false);
      c += n;
    }
    if (c < end) throw new SanboxError('EFORMAT', `${this.vol.dev.name}: clusters ${c}..${end - 1} lie in no group of the global bitmap`, { device: this.vol.dev.name });
  }

  /** The changed group descriptors and the bitmap inode, for the transaction. */
  blocks(): LoggedBlock[] {
    if (this.changed.size === 0) return [];
    const out = (this.groups ?? []).filter((g) => this.changed.has(g.blkno)).map((g) => ({ home: g.blkno, data: g.block }));
    return [...out, { home: this.ino.blkno, data: this.inodeBlock }];
  }
}

