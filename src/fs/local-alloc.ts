// A mounted node's local alloc (local_alloc:N), as ocfs2's fs/ocfs2/localalloc.c keeps it
// (reference/ocfs2.md §2.3, §6): a window of contiguous clusters taken from the global bitmap
// under its lock once (all of them marked used there), then handed out to this node's files from
// the window's own bitmap without the global lock. i_total is the window's size in clusters,
// i_used the bits set, la_bm_off its first cluster; bit i stands for cluster la_bm_off + i.
// Clusters a file frees go back to the global bitmap directly (the kernel does the same through
// its truncate log); their window bit stays set, so releasing the window — when it is used up,
// at umount, or by the recovery of a dead slot (src/fs/alloc-recovery.ts) — returns exactly the
// bits never handed out. Nothing is written here: the caller logs blocks() in its transaction.
//
// Only the slot's own node uses its local alloc, so no cluster lock guards it (the kernel takes
// only the inode's local mutex); a dead slot's window is recovered after the node is fenced.

import { SanboxError } from '../errors.js';
import { DINODE_ID1_OFFSET } from '../format/ocfs2/dinode.js';
import { InodeFlag, slotFileName } from '../format/ocfs2/constants.js';
import { LOCAL_ALLOC_BITMAP_OFFSET } from '../format/ocfs2/system-payloads.js';
import type { ClusterBitmap, ClusterRun } from './cluster-alloc.js';
import type { LoggedBlock } from './journal-writer.js';
import type { InodeBlock, Ocfs2Volume } from './ocfs2-volume.js';

/** la_bm_off (le32) and la_size (le16, bitmap bytes) in id2 of the local alloc inode. */
const LA_BM_OFF_OFFSET = 0xc0;
const LA_SIZE_OFFSET = 0xc4;
/** i_used and i_total (le32) in id1. */
const I_USED_OFFSET = DINODE_ID1_OFFSET;
const I_TOTAL_OFFSET = DINODE_ID1_OFFSET + 4;
/** The kernel's default window (OCFS2_LA_OLD_DEFAULT, ocfs2_la_default_mb): 8 MiB of clusters. */
const WINDOW_BYTES_DEFAULT = 8 * 1024 * 1024;
/** A leaf extent's e_leaf_clusters is a u16. */
const LEAF_EXTENT_CLUSTERS_MAX = 0xffff;

const bitSet = (b: Buffer, bit: number): boolean => (b[LOCAL_ALLOC_BITMAP_OFFSET + (bit >>> 3)]! & (1 << (bit & 7))) !== 0;

export class LocalAlloc {
  /** The local alloc inode's block with the changes made so far. */
  readonly block: Buffer;
  private changed = false;

  private constructor(private readonly vol: Ocfs2Volume, readonly ino: InodeBlock) {
    this.block = Buffer.from(ino.block);
  }

  /** Reads and validates slot `slot`'s local_alloc inode. */
  static async open(vol: Ocfs2Volume, slot: number): Promise<LocalAlloc> {
    const ino = await vol.systemInode(slotFileName('local_alloc', slot));
    const la = new LocalAlloc(vol, ino);
    const fail = (rel: number, what: string): never => {
      throw new SanboxError('EFORMAT', `${vol.dev.name}: local_alloc of slot ${slot} (inode ${ino.blkno}): ${what} (at byte offset ${vol.where(ino.blkno, rel).offsetBytes})`, { device: vol.dev.name, offsetBytes: vol.where(ino.blkno, rel).offsetBytes });
    };
    if (!(ino.inode.flags & InodeFlag.LOCAL_ALLOC)) fail(0x2c, 'not flagged LOCAL_ALLOC');
    if (LOCAL_ALLOC_BITMAP_OFFSET + la.sizeBytes > vol.blockSizeBytes) fail(LA_SIZE_OFFSET, `la_size ${la.sizeBytes} does not fit the block`);
    if (la.total > la.sizeBytes * 8) fail(I_TOTAL_OFFSET, `i_total ${la.total} exceeds the ${la.sizeBytes * 8}-bit bitmap`);
    if (la.used > la.total) fail(I_USED_OFFSET, `i_used ${la.used} exceeds i_total ${la.total}`);
    if (la.total > 0 && la.offCluster + la.total > vol.geometry.clusterCount) fail(LA_BM_OFF_OFFSET, `window ${la.offCluster}+${la.total} lies past the volume's ${vol.geometry.clusterCount} clusters`);
    return la;
  }

  get sizeBytes(): number {
    return this.block.readUInt16LE(LA_SIZE_OFFSET);
  }
  get total(): number {
    return this.block.readUInt32LE(I_TOTAL_OFFSET);
  }
  get used(): number {
    return this.block.readUInt32LE(I_USED_OFFSET);
  }
  get offCluster(): number {
    return this.block.readUInt32LE(LA_BM_OFF_OFFSET);
  }

  /** The window a new one is taken at: the kernel's default, at most what the bitmap holds. */
  windowClusters(): number {
    return Math.min(Math.floor(WINDOW_BYTES_DEFAULT / this.vol.geometry.clusterSizeBytes), this.sizeBytes * 8);
  }

  /** `clusters` clusters from the window in at most `maxRuns` runs, first fit; undefined when it cannot (nothing changed then). */
  take(clusters: number, maxRuns: number): ClusterRun[] | undefined {
    const runs: { bit: number; n: number }[] = [];
    let left = clusters;
    for (let bit = 0; bit < this.total && left > 0; ) {
      if (bitSet(this.block, bit)) {
        bit++;
        continue;
      }
      let end = bit;
      while (end < this.total && !bitSet(this.block, end) && end - bit < Math.min(left, LEAF_EXTENT_CLUSTERS_MAX)) end++;
      if (runs.length === maxRuns) return undefined;
      runs.push({ bit, n: end - bit });
      left -= end - bit;
      bit = end;
    }
    if (left > 0) return undefined;
    for (const r of runs) for (let b = r.bit; b < r.bit + r.n; b++) this.block[LOCAL_ALLOC_BITMAP_OFFSET + (b >>> 3)]! |= 1 << (b & 7);
    this.block.writeUInt32LE(this.used + clusters, I_USED_OFFSET);
    this.changed = true;
    return runs.map((r) => ({ cluster: this.offCluster + r.bit, clusters: r.n }));
  }

  /** Returns the window's bits never handed out to the global bitmap and empties it (ocfs2_sync_local_to_main). */
  async release(bitmap: ClusterBitmap): Promise<number> {
    let freed = 0;
    for (let bit = 0; bit < this.total; ) {
      if (bitSet(this.block, bit)) {
        bit++;
        continue;
      }
      let end = bit;
      while (end < this.total && !bitSet(this.block, end)) end++;
      await bitmap.free({ cluster: this.offCluster + bit, clusters: end - bit });
      freed += end - bit;
      bit = end;
    }
    this.block.fill(0, LOCAL_ALLOC_BITMAP_OFFSET, LOCAL_ALLOC_BITMAP_OFFSET + this.sizeBytes);
    this.block.writeUInt32LE(0, LA_BM_OFF_OFFSET);
    this.block.writeUInt32LE(0, I_USED_OFFSET);
    this.block.writeUInt32LE(0, I_TOTAL_OFFSET);
    this.changed = true;
    return freed;
  }

  /**
   * A new window (the current one released first) of at least `need` clusters: the default size,
   * halved while the global bitmap has no run that long (the kernel shrinks it on ENOSPC too).
   * False when not even `need` contiguous clusters are free: the caller takes from the global bitmap.
   */
  async slide(bitmap: ClusterBitmap, need: number): Promise<boolean> {
    if (this.total > 0) await this.release(bitmap);
    for (let want = this.windowClusters(); want >= need; want = Math.floor(want / 2)) {
      try {
        const run = await bitmap.takeContiguous(want);
        this.block.writeUInt32LE(run.cluster, LA_BM_OFF_OFFSET);
        this.block.writeUInt32LE(run.clusters, I_TOTAL_OFFSET);
        this.changed = true;
        return true;
      } catch (err) {
        if (!(err instanceof SanboxError && err.code === 'ENOSPC')) throw err;
      }
    }
    return false;
  }

  blocks(): LoggedBlock[] {
    return this.changed ? [{ home: this.ino.blkno, data: this.block }] : [];
  }
}
