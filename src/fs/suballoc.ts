// Block suballocators (inode_alloc:N, extent_alloc:N, global_inode_alloc) for one operation's
// transaction: take and free bits, and grow the allocator by one group from the global bitmap
// when it has no free bit, as ocfs2_block_group_alloc does. Every changed block (group
// descriptors, the allocator inode) is handed back for the caller's transaction; nothing is
// written here. The caller holds the allocator's META lock EX and read its inode under it.
//
// A bit of a block suballocator is one block: bit b of the group whose descriptor is block G is
// block G + b, and bit 0 is the descriptor itself (reference/ocfs2.md §2.3). A new group is
// cl_cpg contiguous clusters; its descriptor goes at the head of a chain (a new chain while the
// chain list has room, else the chain with the fewest bits — ocfs2_find_smallest_chain).

import { SanboxError } from '../errors.js';
import { encodeGroupDesc, GROUP_DESC_BITMAP_OFFSET, groupBitmapCapacityBytes, parseChainList, encodeChainList } from '../format/ocfs2/chain-list.js';
import { adjustAllocatorInode, allocatorGroups, GROUP_FREE_BITS_OFFSET, type ClusterBitmap } from './cluster-alloc.js';
import type { LoggedBlock } from './journal-writer.js';
import type { InodeBlock, Ocfs2Volume } from './ocfs2-volume.js';
import { DINODE_CLUSTERS_OFFSET, DINODE_SIZE_OFFSET } from '../format/ocfs2/dinode.js';

/** Allocator inode fields changed by a new group (src/format/ocfs2/dinode.ts): i_clusters, i_size, i_total. */
const ALLOC_I_TOTAL_OFFSET = 0xbc;

interface Group {
  chain: number;
  blkno: number;
  block: Buffer;
  bits: number;
}

export interface TakenBit {
  /** The block the bit stands for. */
  blkno: number;
  bit: number;
  /** The group descriptor holding the bit (h_suballoc_loc / i_suballoc_loc). */
  groupBlkno: number;
}

const isSet = (b: Buffer, bit: number): boolean => (b[GROUP_DESC_BITMAP_OFFSET + (bit >>> 3)]! & (1 << (bit & 7))) !== 0;

export class Suballocator {
  private groups: Group[] | undefined;
  /** The allocator inode's block with the changes made so far. */
  readonly inodeBlock: Buffer;
  private readonly changed = new Set<number>();

  constructor(private readonly vol: Ocfs2Volume, readonly ino: InodeBlock, readonly slot: number) {
    this.inodeBlock = Buffer.from(ino.block);
  }

  private async load(): Promise<Group[]> {
    if (this.groups) return this.groups;
    const out: Group[] = [];
    for await (const g of allocatorGroups(this.vol, this.ino)) out.push(g);
    this.groups = out;
    return out;
  }

  private flip(g: Group, bit: number, used: boolean): void {
    const at = GROUP_DESC_BITMAP_OFFSET + (bit >>> 3);
    g.block[at] = used ? g.block[at]! | (1 << (bit & 7)) : g.block[at]! & ~(1 << (bit & 7));
    g.block.writeUInt16LE(g.block.readUInt16LE(GROUP_FREE_BITS_OFFSET) + (used ? -1 : 1), GROUP_FREE_BITS_OFFSET);
    adjustAllocatorInode(this.inodeBlock, g.chain, used ? 1 : -1);
    this.changed.add(g.blkno);
  }

  /** The first clear bit, set; undefined when every group is full. */
  async take(): Promise<TakenBit | undefined> {
    for (const g of await this.load()) {
      if (g.block.readUInt16LE(GROUP_FREE_BITS_OFFSET) === 0) continue;
      for (let bit = 0; bit < g.bits; bit++) {
        if (isSet(g.block, bit)) continue;
        this.flip(g, bit, true);
        return { blkno: g.blkno + bit, bit, groupBlkno: g.blkno };
      }
    }
    return undefined;
  }

  /** A bit, growing the allocator by one group of the global bitmap when it is full. */
  async takeOrGrow(bitmap: () => Promise<ClusterBitmap>): Promise<TakenBit> {
    const hit = await this.take();
    if (hit !== undefined) return hit;
    await this.grow(await bitmap());
    const again = await this.take();
    if (again === undefined) throw new Error(`internal: allocator ${this.ino.blkno} has no free bit right after it grew`);
    return again;
  }

  /** Clears the bit of block `blkno`, which the block's own header says is bit `bit`. */
  async free(blkno: number, bit: number, what: string): Promise<void> {
    for (const g of await this.load()) {
      const b = blkno - g.blkno;
      if (b < 0 || b >= g.bits) continue;
      if (b === bit && isSet(g.block, b)) {
        this.flip(g, b, false);
        return;
      }
      break;
    }
    throw new SanboxError('EFORMAT', `${this.vol.dev.name}: ${what} ${blkno} (suballoc slot ${this.slot} bit ${bit}) has no set bit in allocator ${this.ino.blkno}`, { device: this.vol.dev.name, offsetBytes: this.vol.where(blkno).offsetBytes });
  }

  /** One more group: cl_cpg contiguous clusters of the global bitmap, its descriptor at a chain's head. */
  async grow(bitmap: ClusterBitmap): Promise<void> {
    const vol = this.vol;
    const groups = await this.load();
    const list = parseChainList(this.inodeBlock, vol.where(this.ino.blkno));
    const cpg = list.clustersPerGroup;
    const bits = cpg * list.bitsPerCluster;
    const bitmapBytes = groupBitmapCapacityBytes(vol.blockSizeBytes);
    if (bits === 0 || bits > bitmapBytes * 8) throw new SanboxError('EFORMAT', `${vol.dev.name}: allocator ${this.ino.blkno} asks for groups of ${bits} bits`, { device: vol.dev.name, offsetBytes: vol.where(this.ino.blkno, 0xc0).offsetBytes });
    const run = await bitmap.takeContiguous(cpg);
    const blkno = run.cluster * vol.geometry.blocksPerCluster;
    let chain: number;
    if (list.recs.length < list.count) {
      chain = list.recs.length;
      list.recs.push({ free: 0, total: 0, blkno: 0 });
    } else {
      chain = list.recs.reduce((best, r, i) => (r.total < list.recs[best]!.total ? i : best), 0);
    }
    const rec = list.recs[chain]!;
    const map = Buffer.alloc(bitmapBytes);
    map[0] = 1; // bit 0: the descriptor's own block
    const block = encodeGroupDesc({ sizeBytes: bitmapBytes, bits, freeBits: bits - 1, chain, generation: vol.sb.inode.fsGeneration, nextGroup: rec.blkno, parentDinode: this.ino.blkno, blkno, bitmap: map }, vol.blockSizeBytes);
    rec.blkno = blkno;
    rec.total += bits;
    rec.free += bits - 1;
    encodeChainList(this.inodeBlock, list);
    const ib = this.inodeBlock;
    ib.writeUInt32LE(ib.readUInt32LE(0xb8) + 1, 0xb8); // i_used: the descriptor
    ib.writeUInt32LE(ib.readUInt32LE(ALLOC_I_TOTAL_OFFSET) + bits, ALLOC_I_TOTAL_OFFSET);
    const clusters = ib.readUInt32LE(DINODE_CLUSTERS_OFFSET) + cpg;
    ib.writeUInt32LE(clusters, DINODE_CLUSTERS_OFFSET);
    ib.writeBigUInt64LE(BigInt(clusters) * BigInt(vol.geometry.clusterSizeBytes), DINODE_SIZE_OFFSET);
    groups.unshift({ chain, blkno, block, bits });
    this.changed.add(blkno);
  }

  /** The changed group descriptors and the allocator inode, for the transaction. */
  blocks(): LoggedBlock[] {
    if (this.changed.size === 0) return [];
    const out = (this.groups ?? []).filter((g) => this.changed.has(g.blkno)).map((g) => ({ home: g.blkno, data: g.block }));
    return [...out, { home: this.ino.blkno, data: this.inodeBlock }];
  }
}
