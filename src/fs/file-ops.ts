// File operations on a mounted ocfs2 volume through the node's own slot journal (issue 17 item 2,
// the first slice): mkdir, put (create or replace a whole file), get, ls, rm.
//
// Each change is built from blocks read under the cluster locks, logged as ONE JBD2 transaction in
// the slot's journal (JournalWriter: descriptor, copies, commit, flushed — the operation is
// acknowledged only after that), then checkpointed: the same blocks written to their homes,
// flushed, and the log emptied (s_start 0, s_sequence next), as the kernel's checkpoint leaves it.
// Before a lock is released the home blocks are current, so the next holder reads them from disk.
//
// Locks, by ocfs2's names (reference/ocfs2.md §6): the META lock of every inode changed, EX (the
// directory, the new or removed inode, the inode allocator of the slot the bit belongs to), PR of
// every inode read; the global bitmap's EX while taking or freeing clusters. Order: directory,
// child, inode allocator, global bitmap — the same in every operation, so two nodes never wait on
// each other in a cycle.
//
// File data: inline when the volume has inline-data and it fits, else clusters of the global
// bitmap (src/fs/cluster-alloc.ts) in the inode's own extent list, written home and flushed
// before the commit that points at them (ordered mode). Limits of this slice, refused by name
// rather than done half: no slot local alloc (clusters come from the global bitmap, as the kernel
// does with local alloc off); at most one inode's worth of extent records per file (243 at 4K);
// directories only inline (a full inline directory is refused, ENOSPC; the kernel would expand
// it into an extent block); inode allocators are not grown (a free inode is taken from this
// slot's allocator, else stolen from another slot's, as the kernel does); rm of directories only
// inline ones, and of files only those whose extents sit in the inode.

import { randomInt } from 'node:crypto';
import { SanboxError } from '../errors.js';
import { GROUP_DESC_BITMAP_OFFSET } from '../format/ocfs2/chain-list.js';
import { encodeExtentList, inodeExtentCapacity, parseExtentList } from '../format/ocfs2/extent-list.js';
import { adjustAllocatorInode, allocatorGroups, ClusterBitmap, GROUP_FREE_BITS_OFFSET, type ClusterRun } from './cluster-alloc.js';
import { DirFileType, DynFeature, FeatureIncompat, InodeFlag, OCFS2_INVALID_SLOT, S_IFDIR, S_IFREG, slotFileName } from '../format/ocfs2/constants.js';
import { blankDinode, DINODE_ID2_OFFSET, encodeDinodeHeader } from '../format/ocfs2/dinode.js';
import { encodeDirEntries, OCFS2_MAX_FILENAME_LEN, type DirEntry } from '../format/ocfs2/dir-entry.js';
import { encodeInlineData, inlineDataArea, inlineDataCapacity } from '../format/ocfs2/system-payloads.js';
import { openJournal, writeLogStart } from './journal-reader.js';
import { JournalWriter, type LoggedBlock } from './journal-writer.js';
import { lookupPath, listPath, readFileChunks, type ListEntry } from './namespace.js';
import { LockType, ocfs2LockName, volumeLockResource } from './mount-rules.js';
import { Ocfs2Volume, type InodeBlock } from './ocfs2-volume.js';
import type { BlockDevice } from '../disk/device.js';

/** Dinode fields this module changes in place (src/format/ocfs2/dinode.ts). */
const CLUSTERS_OFFSET = 0x14;
const SIZE_OFFSET = 0x20;
const DYN_FEATURES_OFFSET = 0x76;
/** Regular files and directories this slice creates: rw-r--r-- and rwxr-xr-x, owned by root. */
const FILE_MODE = S_IFREG | 0o644;
const DIR_MODE = S_IFDIR | 0o755;

export type LockMode = 'EX' | 'PR';
/** Takes a cluster lock by resource name; resolves to its release. */
export type ClusterLocker = (resource: string, mode: LockMode) => Promise<() => Promise<void>>;

export interface FileOpResult {
  path: string;
  inode: number;
  /** The JBD2 transaction that carried the change. */
  sequence: number;
}

/** Locks held by one operation, released in reverse order. */
class Held {
  private readonly releases: (() => Promise<void>)[] = [];
  constructor(private readonly vol: Ocfs2Volume, private readonly locker: ClusterLocker) {}
  async inode(blkno: number, generation: number, mode: LockMode): Promise<void> {
    this.releases.push(await this.locker(volumeLockResource(this.vol, ocfs2LockName(LockType.META, blkno, generation)), mode));
  }
  /**
   * Locks an inode found before its lock was held, and reads it again under the lock. The lock
   * name carries the generation seen: if the inode was freed (or freed and reused) meanwhile,
   * the operation is refused (EAGAIN, nothing written) rather than done on another inode.
   */
  async lockInode(seen: InodeBlock, mode: LockMode): Promise<InodeBlock> {
    await this.inode(seen.blkno, seen.inode.generation, mode);
    const now = await this.vol.readInode(seen.blkno);
    if (now.inode.generation !== seen.inode.generation || !(now.inode.flags & InodeFlag.VALID)) {
      throw new SanboxError('EAGAIN', `${this.vol.dev.name}: inode ${seen.blkno} changed while its lock was awaited; try again`, { device: this.vol.dev.name });
    }
    return now;
  }

  /** Looks up the directory `path`, locks it EX (read again under the lock) and reads its entries. */
  async lockDirectory(path: string): Promise<{ dir: InodeBlock; entries: DirEntry[] }> {
    const dir = await this.lockInode(await lookupPath(this.vol, path), 'EX');
    if (!isDir(dir)) throw new SanboxError('EINVAL', `${this.vol.dev.name}: ${path} is not a directory`, { device: this.vol.dev.name });
    return { dir, entries: await this.vol.readDir(dir) };
  }

  /** Releases the lock taken last (an allocator found full). */
  async releaseLast(): Promise<void> {
    await this.releases.pop()?.().catch(() => undefined);
  }
  async release(): Promise<void> {
    for (const r of this.releases.reverse()) await r().catch(() => undefined);
  }
}

function splitPath(dev: string, path: string): { parent: string; name: string } {
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  const name = parts.pop();
  if (name === undefined) throw new SanboxError('EINVAL', `${dev}: '${path}' names the root directory`);
  if (name === '..' || Buffer.byteLength(name) > OCFS2_MAX_FILENAME_LEN) throw new SanboxError('EINVAL', `${dev}: '${name}' is not a name a directory entry can hold`);
  return { parent: `/${parts.join('/')}`, name };
}

const isDir = (i: InodeBlock): boolean => (i.inode.mode & 0o170000) === S_IFDIR;
const isInline = (i: InodeBlock): boolean => (i.inode.dynFeatures & DynFeature.INLINE_DATA) !== 0;

/** The operations of one node on one mounted volume, in its slot. One at a time (the caller serialises). */
export class FileOps {
  constructor(private readonly dev: BlockDevice, private readonly slot: number, private readonly locker: ClusterLocker) {}

  private async open(): Promise<Ocfs2Volume> {
    const vol = await Ocfs2Volume.open(this.dev);
    // Mount refused metaecc already; every block here is written without a block check.
    if (vol.metaEcc) throw new SanboxError('EINVAL', `${this.dev.name}: metaecc volumes are not writable by sanbox`);
    return vol;
  }

  /** Resolves `path` and runs `op` under PR of the inode found (re-read under the lock). */
  private async readLocked<T>(path: string, op: (vol: Ocfs2Volume, ino: InodeBlock) => Promise<T>): Promise<T> {
    const vol = await this.open();
    const found = await lookupPath(vol, path);
    const held = new Held(vol, this.locker);
    try {
      return await op(vol, await held.lockInode(found, 'PR'));
    } finally {
      await held.release();
    }
  }

  ls(path: string): Promise<ListEntry[]> {
    return this.readLocked(path, (vol) => listPath(vol, path));
  }

  get(path: string): Promise<Buffer> {
    return this.readLocked(path, async (vol, ino) => {
      const chunks: Buffer[] = [];
      for await (const c of readFileChunks(vol, ino)) chunks.push(c);
      return Buffer.concat(chunks);
    });
  }

  mkdir(path: string): Promise<FileOpResult> {
    return this.create(path, undefined);
  }

  /** Creates or replaces the whole file at `path` with `data`. */
  put(path: string, data: Buffer): Promise<FileOpResult> {
    return this.create(path, data);
  }

  private async create(path: string, data: Buffer | undefined): Promise<FileOpResult> {
    const vol = await this.open();
    const name = this.dev.name;
    const { parent, name: leaf } = splitPath(name, path);
    const cap = inlineDataCapacity(vol.blockSizeBytes);
    if (data === undefined && !hasInline(vol)) throw new SanboxError('EINVAL', `${name}: the volume has no inline-data feature; sanbox makes only inline directories so far`, { device: name });
    const held = new Held(vol, this.locker);
    try {
      const { dir, entries } = await held.lockDirectory(parent);
      const existing = entries.find((e) => e.name === leaf);
      const now = Date.now();
      if (existing !== undefined) {
        if (data === undefined) throw new SanboxError('EEXIST', `${name}: ${path} exists`, { device: name });
        const old = await held.lockInode(await vol.readInode(existing.inode), 'EX');
        if (isDir(old)) throw new SanboxError('EINVAL', `${name}: ${path} is a directory`, { device: name });
        const block = Buffer.from(old.block);
        const bitmapBlocks = await this.setBody(vol, held, block, data, old);
        setTimes(block, now, {});
        const seq = await this.commit(vol, [{ home: old.blkno, data: block }, ...bitmapBlocks]);
        return { path, inode: old.blkno, sequence: seq };
      }
      // A new inode: a bit of this slot's inode allocator, the entry in the (inline) directory.
      const { alloc, slot, groupBlock, bit, blkno } = await this.allocateInode(vol, held);
      const generation = randomInt(1, 0x1_0000_0000);
      await held.inode(blkno, generation, 'EX');
      const ino = Buffer.alloc(vol.blockSizeBytes);
      const sec = BigInt(Math.floor(now / 1000));
      encodeDinodeHeader(ino, blankDinode({
        generation, suballocSlot: slot, suballocBit: bit, blkno, fsGeneration: vol.sb.inode.fsGeneration,
        mode: data === undefined ? DIR_MODE : FILE_MODE, linksCount: data === undefined ? 2 : 1, flags: InodeFlag.VALID,
        sizeBytes: data === undefined ? BigInt(cap) : BigInt(data.length), dynFeatures: DynFeature.INLINE_DATA,
        atime: sec, ctime: sec, mtime: sec, atimeNsec: (now % 1000) * 1e6, ctimeNsec: (now % 1000) * 1e6, mtimeNsec: (now % 1000) * 1e6,
      }));
      let bitmapBlocks: LoggedBlock[] = [];
      if (data === undefined) encodeInlineData(ino, encodeDirEntries([{ inode: blkno, name: '.', fileType: DirFileType.DIR }, { inode: dir.blkno, name: '..', fileType: DirFileType.DIR }], cap));
      else bitmapBlocks = await this.setBody(vol, held, ino, data, undefined);
      const dirBlock = withEntries(vol, dir, [...entries, { inode: blkno, name: leaf, fileType: data === undefined ? DirFileType.DIR : DirFileType.REG, recLen: 0, offset: 0 }]);
      setTimes(dirBlock, now, data === undefined ? { links: dir.inode.linksCount + 1 } : {});
      const seq = await this.commit(vol, [{ home: blkno, data: ino }, { home: dir.blkno, data: dirBlock }, groupBlock, alloc.changed, ...bitmapBlocks]);
      return { path, inode: blkno, sequence: seq };
    } finally {
      await held.release();
    }
  }

  /** Removes a file or an empty directory (inline ones). */
  async rm(path: string): Promise<FileOpResult> {
    const vol = await this.open();
    const name = this.dev.name;
    const { parent, name: leaf } = splitPath(name, path);
    const held = new Held(vol, this.locker);
    try {
      const { dir, entries } = await held.lockDirectory(parent);
      const hit = entries.find((e) => e.name === leaf);
      if (hit === undefined || leaf === '.') throw new SanboxError('ENOENT', `${name}: ${path}: no such file or directory`, { device: name });
      const victim = await held.lockInode(await vol.readInode(hit.inode), 'EX');
      if (victim.inode.flags & InodeFlag.SYSTEM) throw new SanboxError('EINVAL', `${name}: ${path} is a system inode`, { device: name });
      if (isDir(victim) && !isInline(victim)) throw new SanboxError('EINVAL', `${name}: ${path} keeps its entries in blocks; sanbox removes only inline directories so far`, { device: name });
      if (isDir(victim) && (await vol.readDir(victim)).some((e) => e.name !== '.' && e.name !== '..')) throw new SanboxError('EINVAL', `${name}: ${path} is not empty`, { device: name });
      const alloc = await this.allocatorLocked(vol, held, victim.inode.suballocSlot);
      const groupBlock = await freeBit(vol, alloc, victim);
      const bitmapBlocks: LoggedBlock[] = [];
      if (!isInline(victim)) {
        const bitmap = await this.globalBitmapLocked(vol, held);
        for (const run of leafRuns(vol, victim)) await bitmap.free(run);
        bitmapBlocks.push(...bitmap.blocks());
      }
      const now = Date.now();
      const dirBlock = withEntries(vol, dir, entries.filter((e) => e !== hit));
      setTimes(dirBlock, now, isDir(victim) ? { links: dir.inode.linksCount - 1 } : {});
      // The freed inode as the kernel leaves it (ocfs2_remove_inode): not VALID, dtime set, no links.
      const dead = Buffer.from(victim.block);
      dead.writeUInt32LE((victim.inode.flags & ~(InodeFlag.VALID | InodeFlag.ORPHANED)) >>> 0, 0x2c);
      dead.writeUInt16LE(0, 0x2a); // i_links_count
      dead.writeBigUInt64LE(BigInt(Math.floor(now / 1000)), 0x48); // i_dtime
      const seq = await this.commit(vol, [{ home: dir.blkno, data: dirBlock }, { home: victim.blkno, data: dead }, groupBlock, alloc.changed, ...bitmapBlocks]);
      return { path, inode: victim.blkno, sequence: seq };
    } finally {
      await held.release();
    }
  }

  /** The global bitmap, read under its META lock EX (taken after any inode allocator's). */
  private async globalBitmapLocked(vol: Ocfs2Volume, held: Held): Promise<ClusterBitmap> {
    const b0 = await vol.systemInode('global_bitmap');
    return new ClusterBitmap(vol, await held.lockInode(b0, 'EX'));
  }

  /**
   * A regular file's content in its inode block `block`: inline data when the volume has the
   * feature and it fits, else clusters of the global bitmap in the inode's own extent list. The
   * clusters' data is written home and flushed here, before the transaction that points at them
   * commits (ordered mode). A replaced file's (`old`) clusters are freed in the same transaction,
   * after the new ones were taken, so no cluster is reused before the commit that frees it.
   * Returns the bitmap's changed blocks for the transaction.
   */
  private async setBody(vol: Ocfs2Volume, held: Held, block: Buffer, data: Buffer, old: InodeBlock | undefined): Promise<LoggedBlock[]> {
    const cap = inlineDataCapacity(vol.blockSizeBytes);
    const inline = hasInline(vol) && data.length <= cap;
    const oldRuns = old !== undefined && !isInline(old) ? leafRuns(vol, old) : [];
    const bitmap = !inline || oldRuns.length > 0 ? await this.globalBitmapLocked(vol, held) : undefined;
    const dyn = block.readUInt16LE(DYN_FEATURES_OFFSET);
    if (inline) {
      fillInline(block, data, cap);
      block.writeUInt16LE(dyn | DynFeature.INLINE_DATA, DYN_FEATURES_OFFSET);
      block.writeUInt32LE(0, CLUSTERS_OFFSET);
    } else {
      const cs = vol.geometry.clusterSizeBytes;
      const bpc = vol.geometry.blocksPerCluster;
      const clusters = Math.ceil(data.length / cs);
      const runs = clusters === 0 ? [] : await bitmap!.take(clusters, inodeExtentCapacity(vol.blockSizeBytes));
      // Ordered: the data reaches its home (the tail of the last cluster zeroed) before the commit.
      let cpos = 0;
      for (const r of runs) {
        const chunk = Buffer.alloc(r.clusters * cs);
        data.copy(chunk, 0, cpos * cs, Math.min(data.length, (cpos + r.clusters) * cs));
        await vol.dev.write(chunk, r.cluster * cs);
        cpos += r.clusters;
      }
      await vol.dev.flush();
      block.writeUInt16LE(dyn & ~DynFeature.INLINE_DATA, DYN_FEATURES_OFFSET);
      block.writeUInt32LE(clusters, CLUSTERS_OFFSET);
      let at = 0;
      encodeExtentList(block, DINODE_ID2_OFFSET, {
        treeDepth: 0, count: inodeExtentCapacity(vol.blockSizeBytes), nextFreeRec: runs.length,
        recs: runs.map((r) => {
          const rec = { cpos: at, clusters: r.clusters, flags: 0, blkno: r.cluster * bpc };
          at += r.clusters;
          return rec;
        }),
      });
    }
    block.writeBigUInt64LE(BigInt(data.length), SIZE_OFFSET);
    for (const r of oldRuns) await bitmap!.free(r);
    return bitmap?.blocks() ?? [];
  }

  /**
   * A free inode: from this slot's inode allocator, else — as the kernel's inode stealing does —
   * from the other slots' in turn (mkfs.ocfs2 gives only slot 0 a group; growing an allocator with
   * a group from the global bitmap is not done here). A full allocator's lock is released before
   * the next is taken, so two nodes never hold one each while waiting for the other's.
   */
  private async allocateInode(vol: Ocfs2Volume, held: Held): Promise<{ alloc: Allocator; slot: number } & Awaited<ReturnType<typeof takeBit>>> {
    const slots = vol.sb.maxSlots;
    for (let k = 0; k < slots; k++) {
      const slot = (this.slot + k) % slots;
      const alloc = await this.allocatorLocked(vol, held, slot);
      const total = alloc.ino.inode.id1b;
      const used = alloc.ino.inode.id1a;
      if (used < total) return { alloc, slot, ...(await takeBit(vol, alloc)) };
      await held.releaseLast();
    }
    throw new SanboxError('ENOSPC', `${vol.dev.name}: no slot's inode allocator has a free inode (growing one from the global bitmap is not done by sanbox yet)`, { device: vol.dev.name });
  }

  /** The inode allocator of `slot` (the global one for OCFS2_INVALID_SLOT), read under its META lock EX. */
  private async allocatorLocked(vol: Ocfs2Volume, held: Held, slot: number): Promise<Allocator> {
    const sysName = slot === OCFS2_INVALID_SLOT ? 'global_inode_alloc' : slotFileName('inode_alloc', slot);
    const a0 = await vol.systemInode(sysName);
    const a = await held.lockInode(a0, 'EX');
    return { ino: a, changed: { home: a.blkno, data: Buffer.from(a.block) } };
  }

  /** One transaction, durable, then checkpointed to the home blocks and the log emptied. */
  private async commit(vol: Ocfs2Volume, blocks: LoggedBlock[]): Promise<number> {
    const homes = new Set(blocks.map((b) => b.home));
    if (homes.size !== blocks.length) throw new Error(`internal: a block is logged twice in one transaction`);
    const writer = await JournalWriter.open(vol, this.slot);
    const tx = await writer.append(blocks);
    const bs = vol.blockSizeBytes;
    for (const b of blocks) await vol.dev.write(b.data, b.home * bs);
    await vol.dev.flush();
    await writeLogStart(vol, await openJournal(vol, this.slot), 0, (tx.sequence + 1) >>> 0);
    return tx.sequence;
  }
}

interface Allocator {
  ino: InodeBlock;
  /** The allocator inode's block with the changes made so far. */
  changed: LoggedBlock;
}



/** Sets the first clear bit of the allocator; the inode block it stands for. */
async function takeBit(vol: Ocfs2Volume, alloc: Allocator): Promise<{ groupBlock: LoggedBlock; bit: number; blkno: number }> {
  for await (const g of allocatorGroups(vol, alloc.ino)) {
    const bits = g.bits;
    if (g.block.readUInt16LE(GROUP_FREE_BITS_OFFSET) === 0) continue;
    for (let bit = 0; bit < bits; bit++) {
      const at = GROUP_DESC_BITMAP_OFFSET + (bit >>> 3);
      if (g.block[at]! & (1 << (bit & 7))) continue;
      g.block[at]! |= 1 << (bit & 7);
      g.block.writeUInt16LE(g.block.readUInt16LE(GROUP_FREE_BITS_OFFSET) - 1, GROUP_FREE_BITS_OFFSET);
      adjustAllocatorInode(alloc.changed.data, g.chain, 1);
      // An inode allocator's bit is one block, counted from the group descriptor's own block.
      return { groupBlock: { home: g.blkno, data: g.block }, bit, blkno: g.blkno + bit };
    }
  }
  throw new SanboxError('ENOSPC', `${vol.dev.name}: inode allocator ${alloc.ino.blkno} has no free inode (growing it is not done by sanbox yet)`, { device: vol.dev.name });
}

/** Clears the bit of `victim` in the allocator that holds it. */
async function freeBit(vol: Ocfs2Volume, alloc: Allocator, victim: InodeBlock): Promise<LoggedBlock> {
  for await (const g of allocatorGroups(vol, alloc.ino)) {
    const bit = victim.blkno - g.blkno;
    if (bit < 0 || bit >= g.bits) continue;
    if (bit !== victim.inode.suballocBit) break;
    const at = GROUP_DESC_BITMAP_OFFSET + (bit >>> 3);
    if (!(g.block[at]! & (1 << (bit & 7)))) break;
    g.block[at]! &= ~(1 << (bit & 7));
    g.block.writeUInt16LE(g.block.readUInt16LE(GROUP_FREE_BITS_OFFSET) + 1, GROUP_FREE_BITS_OFFSET);
    adjustAllocatorInode(alloc.changed.data, g.chain, -1);
    return { home: g.blkno, data: g.block };
  }
  throw new SanboxError('EFORMAT', `${vol.dev.name}: inode ${victim.blkno} (suballoc slot ${victim.inode.suballocSlot} bit ${victim.inode.suballocBit}) has no set bit in allocator ${alloc.ino.blkno}`, { device: vol.dev.name, offsetBytes: vol.where(victim.blkno).offsetBytes });
}

/** The clusters of a file whose extents all sit in its inode (tree depth 0). */
function leafRuns(vol: Ocfs2Volume, ino: InodeBlock): ClusterRun[] {
  const list = parseExtentList(ino.block, DINODE_ID2_OFFSET, vol.where(ino.blkno));
  if (list.treeDepth !== 0) throw new SanboxError('EINVAL', `${vol.dev.name}: inode ${ino.blkno} has an extent tree of depth ${list.treeDepth}; sanbox frees only extents kept in the inode so far`, { device: vol.dev.name });
  const bpc = vol.geometry.blocksPerCluster;
  return list.recs.filter((r) => r.clusters > 0).map((r) => ({ cluster: r.blkno / bpc, clusters: r.clusters }));
}

const hasInline = (vol: Ocfs2Volume): boolean => (vol.sb.featureIncompat & FeatureIncompat.INLINE_DATA) !== 0;

/** Inline data of a regular file: id_count is the whole area, the bytes past the data zero. */
function fillInline(block: Buffer, data: Buffer, cap: number): void {
  block.fill(0, DINODE_ID2_OFFSET);
  const area = Buffer.alloc(cap);
  data.copy(area);
  encodeInlineData(block, area);
}

/** A copy of an inline directory's block with exactly these entries, repacked. */
function withEntries(vol: Ocfs2Volume, dir: InodeBlock, entries: { inode: number; name: string; fileType: number }[]): Buffer {
  if (!isInline(dir)) throw new SanboxError('EINVAL', `${vol.dev.name}: directory ${dir.blkno} keeps its entries in blocks; sanbox changes only inline directories so far`, { device: vol.dev.name });
  const area = inlineDataArea(dir.block, vol.where(dir.blkno));
  let packed: Buffer;
  try {
    packed = encodeDirEntries(entries, area.end - area.start);
  } catch (err) {
    if (err instanceof RangeError) throw new SanboxError('ENOSPC', `${vol.dev.name}: directory ${dir.blkno} is full (its inline area holds no more entries; expanding it is not done by sanbox yet)`, { device: vol.dev.name });
    throw err;
  }
  const block = Buffer.from(dir.block);
  packed.copy(block, area.start);
  return block;
}

/** ctime/mtime now; optionally i_size and i_links_count. */
function setTimes(block: Buffer, nowMs: number, change: { size?: bigint; links?: number }): void {
  const sec = BigInt(Math.floor(nowMs / 1000));
  const nsec = (nowMs % 1000) * 1e6;
  block.writeBigUInt64LE(sec, 0x38); // i_ctime
  block.writeBigUInt64LE(sec, 0x40); // i_mtime
  block.writeUInt32LE(nsec, 0x68); // i_ctime_nsec
  block.writeUInt32LE(nsec, 0x6c); // i_mtime_nsec
  if (change.size !== undefined) block.writeBigUInt64LE(change.size, 0x20); // i_size
  if (change.links !== undefined) block.writeUInt16LE(change.links, 0x2a); // i_links_count
}
