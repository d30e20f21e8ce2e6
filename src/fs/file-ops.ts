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
// directory, the new or removed inode, the inode allocator of the slot the bit belongs to, the
// extent allocators of the extent blocks taken or freed), PR of every inode read; the global
// bitmap's EX while taking or freeing clusters. A path is resolved with each directory on the way
// searched under its META lock PR, taken and released in turn (ocfs2's lookup). Order:
// directory, child, inode allocator, extent allocators (ascending slot), global bitmap — the
// same in every operation, so two nodes never wait on each other in a cycle.
//
// File data: inline when the volume has inline-data and it fits, else clusters of the global
// bitmap (src/fs/cluster-alloc.ts) written home and flushed before the commit that points at
// them (ordered mode), in the inode's extent list or, past its 243 records (4K), leaf extent
// blocks from this slot's extent_alloc under a depth-1 list (src/fs/extent-tree.ts). Directories:
// inline while their entries fit the inode, then expanded into directory blocks that grow one
// block at a time, in the same transaction as the entry that needed the room (src/fs/dir-ops.ts);
// without inline-data a new directory starts as one block. A new inode comes from this slot's
// inode allocator, else another slot's (the kernel's stealing), else this slot's allocator grows
// by a group (src/fs/suballoc.ts). Orphan recovery of a dead slot frees the inodes of its
// orphan_dir (recoverOrphans). A mounted node ({ localAlloc: true }) takes file clusters from its
// slot's local alloc window (src/fs/local-alloc.ts: taken from the global bitmap under its lock
// once, then used without it; returned at umount by releaseLocalAlloc); offline tools and
// in-process users take them from the global bitmap, as the kernel does with local alloc off.
// Limits of this slice, refused by name rather than done half: extent trees deeper than 1 (more
// than 243 × 252 runs at 4K); growing a directory whose own extents need an extent block (more
// than 243 runs).

import { randomInt } from 'node:crypto';
import { SanboxError } from '../errors.js';
import { ClusterBitmap, type ClusterRun } from './cluster-alloc.js';
import { LocalAlloc } from './local-alloc.js';
import { DirFileType, DynFeature, InodeFlag, OCFS2_INVALID_SLOT, S_IFDIR, S_IFREG, slotFileName } from '../format/ocfs2/constants.js';
import { blankDinode, decodeDinodeHeader, DINODE_ID2_OFFSET, encodeDinodeHeader, DINODE_CLUSTERS_OFFSET, DINODE_SIZE_OFFSET, DINODE_DYN_FEATURES_OFFSET, DINODE_LAST_EB_BLK_OFFSET } from '../format/ocfs2/dinode.js';
import { OCFS2_MAX_FILENAME_LEN } from '../format/ocfs2/dir-entry.js';
import { encodeInlineData, inlineDataCapacity } from '../format/ocfs2/system-payloads.js';
import { addEntry, hasInlineFeature, isInlineInode, newDirBody, readDirView, removeEntry, type BitmapSource, type DirView } from './dir-ops.js';
import { openJournal, writeLogStart } from './journal-reader.js';
import { maxLeafRecords, treeBlocks, writeExtentTree, type ExtentBlockRef } from './extent-tree.js';
import { Suballocator, type TakenBit } from './suballoc.js';
import { JournalWriter, type LoggedBlock } from './journal-writer.js';
import { lookupPath, listInode, readFileChunks, type ListEntry } from './namespace.js';
import { LockType, ocfs2LockName, volumeLockResource } from './mount-rules.js';
import { Ocfs2Volume, type InodeBlock } from './ocfs2-volume.js';
import type { BlockDevice } from '../disk/device.js';

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
    // Freed (not VALID) or reused meanwhile: refused before the full parse, which rejects a freed inode as corrupt.
    const raw = decodeDinodeHeader(await this.vol.readBlocks(seen.blkno, 1, 'inode reference'));
    if (raw.generation !== seen.inode.generation || !(raw.flags & InodeFlag.VALID)) {
      throw new SanboxError('EAGAIN', `${this.vol.dev.name}: inode ${seen.blkno} changed while its lock was awaited; try again`, { device: this.vol.dev.name });
    }
    return this.vol.readInode(seen.blkno);
  }

  /** Resolves `path` with every directory on the way searched under its META lock PR (taken and released in turn). */
  lookup(path: string): Promise<InodeBlock> {
    return lookupPath(this.vol, path, async (dir) => {
      const one = new Held(this.vol, this.locker);
      try {
        return { dir: await one.lockInode(dir, 'PR'), release: () => one.release() };
      } catch (err) {
        await one.release();
        throw err;
      }
    });
  }

  /** Looks up the directory `path`, locks it EX (read again under the lock) and reads its entries. */
  async lockDirectory(path: string): Promise<DirView> {
    return this.lockDirectoryInode(await this.lookup(path), path);
  }
  async lockDirectoryInode(seen: InodeBlock, path: string): Promise<DirView> {
    const dir = await this.lockInode(seen, 'EX');
    if (!isDir(dir)) throw new SanboxError('EINVAL', `${this.vol.dev.name}: ${path} is not a directory`, { device: this.vol.dev.name });
    return readDirView(this.vol, dir);
  }

  private bitmapHeld: Promise<ClusterBitmap> | undefined;
  /**
   * The global bitmap, read under its META lock EX on first use (after any inode allocator's),
   * one instance for the whole operation so every change to it lands in one set of blocks.
   */
  readonly bitmap: BitmapSource = () => {
    this.bitmapHeld ??= (async () => new ClusterBitmap(this.vol, await this.lockInode(await this.vol.systemInode('global_bitmap'), 'EX')))();
    return this.bitmapHeld;
  };

  private readonly subs = new Map<string, Suballocator>();
  /** A block suballocator by system file name, read under its META lock EX on first use. */
  async suballocator(sysName: string, slot: number): Promise<Suballocator> {
    const had = this.subs.get(sysName);
    if (had !== undefined) return had;
    const sub = new Suballocator(this.vol, await this.lockInode(await this.vol.systemInode(sysName), 'EX'), slot);
    this.subs.set(sysName, sub);
    return sub;
  }
  /** The inode allocator of `slot` (the global one for OCFS2_INVALID_SLOT). */
  inodeAllocator(slot: number): Promise<Suballocator> {
    return this.suballocator(slot === OCFS2_INVALID_SLOT ? 'global_inode_alloc' : slotFileName('inode_alloc', slot), slot);
  }
  /** The extent allocators of `slots`, locked in ascending slot order (after any inode allocator's, before the bitmap). */
  async extentAllocators(slots: Iterable<number>): Promise<void> {
    for (const slot of [...new Set(slots)].sort((a, b) => a - b)) {
      if (slot >= this.vol.sb.maxSlots) throw new SanboxError('EFORMAT', `${this.vol.dev.name}: an extent block names suballoc slot ${slot} of ${this.vol.sb.maxSlots}`, { device: this.vol.dev.name });
      await this.suballocator(slotFileName('extent_alloc', slot), slot);
    }
  }
  extentAllocator(slot: number): Promise<Suballocator> {
    return this.suballocator(slotFileName('extent_alloc', slot), slot);
  }
  private local: Promise<LocalAlloc> | undefined;
  /** The slot's local alloc (no cluster lock: only its own node uses it). */
  localAlloc(slot: number): Promise<LocalAlloc> {
    this.local ??= LocalAlloc.open(this.vol, slot);
    return this.local;
  }

  /** Every allocator block the operation changed: local alloc, suballocators' groups and inodes, the global bitmap's. */
  async allocatorBlocks(): Promise<LoggedBlock[]> {
    const out = [...(this.local === undefined ? [] : (await this.local).blocks()), ...[...this.subs.values()].flatMap((a) => a.blocks())];
    return this.bitmapHeld === undefined ? out : [...out, ...(await this.bitmapHeld).blocks()];
  }

  /** Releases the inode allocator locked last (found full). */
  async releaseAllocator(sysName: string): Promise<void> {
    this.subs.delete(sysName);
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
const isInline = isInlineInode;

export interface FileOpsOptions {
  /** Take file clusters from the slot's local alloc window (a mounted node does; offline tools and recovery do not). */
  localAlloc?: boolean;
}

/** The operations of one node on one mounted volume, in its slot. One at a time (the caller serialises). */
export class FileOps {
  constructor(private readonly dev: BlockDevice, private readonly slot: number, private readonly locker: ClusterLocker, private readonly opts: FileOpsOptions = {}) {}

  private async open(): Promise<Ocfs2Volume> {
    const vol = await Ocfs2Volume.open(this.dev);
    // Mount refused metaecc already; every block here is written without a block check.
    if (vol.metaEcc) throw new SanboxError('EINVAL', `${this.dev.name}: metaecc volumes are not writable by sanbox`);
    return vol;
  }

  /** Resolves `path` and runs `op` under PR of the inode found (re-read under the lock). */
  private async readLocked<T>(path: string, op: (vol: Ocfs2Volume, ino: InodeBlock) => Promise<T>): Promise<T> {
    const vol = await this.open();
    const held = new Held(vol, this.locker);
    try {
      return await op(vol, await held.lockInode(await held.lookup(path), 'PR'));
    } finally {
      await held.release();
    }
  }

  ls(path: string): Promise<ListEntry[]> {
    return this.readLocked(path, (vol, ino) => listInode(vol, ino, path));
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

  /**
   * Runs `fn` with `path`'s parent directory locked EX (and the path to it PR), every lock this
   * operation took released afterwards: the common frame of create and rm.
   */
  private async inParent<T>(path: string, fn: (o: { vol: Ocfs2Volume; name: string; leaf: string; held: Held; view: DirView }) => Promise<T>): Promise<T> {
    const vol = await this.open();
    const name = this.dev.name;
    const { parent, name: leaf } = splitPath(name, path);
    const held = new Held(vol, this.locker);
    try {
      return await fn({ vol, name, leaf, held, view: await held.lockDirectory(parent) });
    } finally {
      await held.release();
    }
  }

  private create(path: string, data: Buffer | undefined): Promise<FileOpResult> {
    return this.inParent(path, async ({ vol, name, leaf, held, view }) => {
      const { dir } = view;
      const existing = view.entries.find((e) => e.name === leaf);
      const now = Date.now();
      if (existing !== undefined) {
        if (data === undefined) throw new SanboxError('EEXIST', `${name}: ${path} exists`, { device: name });
        const old = await held.lockInode(await vol.readInode(existing.inode), 'EX');
        if (isDir(old)) throw new SanboxError('EINVAL', `${name}: ${path} is a directory`, { device: name });
        const block = Buffer.from(old.block);
        const ebs = await this.setBody(vol, held, block, data, old);
        setTimes(block, now, {});
        const seq = await this.commit(vol, [{ home: old.blkno, data: block }, ...ebs, ...(await held.allocatorBlocks())]);
        return { path, inode: old.blkno, sequence: seq };
      }
      // A new inode: a bit of this slot's inode allocator, the entry in the directory.
      const { slot, bit, blkno, groupBlkno } = await this.allocateInode(vol, held);
      const generation = randomInt(1, 0x1_0000_0000);
      await held.inode(blkno, generation, 'EX');
      const ino = Buffer.alloc(vol.blockSizeBytes);
      const sec = BigInt(Math.floor(now / 1000));
      encodeDinodeHeader(ino, blankDinode({
        generation, suballocSlot: slot, suballocBit: bit, suballocLoc: BigInt(groupBlkno), blkno, fsGeneration: vol.sb.inode.fsGeneration,
        mode: data === undefined ? DIR_MODE : FILE_MODE, linksCount: data === undefined ? 2 : 1, flags: InodeFlag.VALID,
        sizeBytes: data === undefined ? 0n : BigInt(data.length),
        atime: sec, ctime: sec, mtime: sec, atimeNsec: (now % 1000) * 1e6, ctimeNsec: (now % 1000) * 1e6, mtimeNsec: (now % 1000) * 1e6,
      }));
      const bodyBlocks = data === undefined ? await newDirBody(vol, ino, blkno, dir.blkno, held.bitmap) : [];
      if (data !== undefined) bodyBlocks.push(...(await this.setBody(vol, held, ino, data, undefined)));
      const change = await addEntry(vol, view, { inode: blkno, name: leaf, fileType: data === undefined ? DirFileType.DIR : DirFileType.REG }, held.bitmap);
      setTimes(change.inode, now, data === undefined ? { links: dir.inode.linksCount + 1 } : {});
      const seq = await this.commit(vol, [{ home: blkno, data: ino }, ...bodyBlocks, { home: dir.blkno, data: change.inode }, ...change.blocks, ...(await held.allocatorBlocks())]);
      return { path, inode: blkno, sequence: seq };
    });
  }

  /** Removes a file or an empty directory. */
  rm(path: string): Promise<FileOpResult> {
    return this.inParent(path, async ({ vol, name, leaf, held, view }) => {
      const { dir } = view;
      const hit = view.entries.find((e) => e.name === leaf);
      if (hit === undefined || leaf === '.') throw new SanboxError('ENOENT', `${name}: ${path}: no such file or directory`, { device: name });
      const victim = await held.lockInode(await vol.readInode(hit.inode), 'EX');
      if (victim.inode.flags & InodeFlag.SYSTEM) throw new SanboxError('EINVAL', `${name}: ${path} is a system inode`, { device: name });
      if (isDir(victim) && (await readDirView(vol, victim)).entries.some((e) => e.name !== '.' && e.name !== '..')) throw new SanboxError('EINVAL', `${name}: ${path} is not empty`, { device: name });
      // Locks in order: the victim's inode allocator, its extent blocks' allocators, the global bitmap.
      await (await held.inodeAllocator(victim.inode.suballocSlot)).free(victim.blkno, victim.inode.suballocBit, 'inode');
      if (!isInline(victim)) await this.freeTree(vol, held, victim);
      const now = Date.now();
      const change = removeEntry(vol, view, hit);
      setTimes(change.inode, now, isDir(victim) ? { links: dir.inode.linksCount - 1 } : {});
      const seq = await this.commit(vol, [{ home: dir.blkno, data: change.inode }, ...change.blocks, { home: victim.blkno, data: freedInode(victim, now) }, ...(await held.allocatorBlocks())]);
      return { path, inode: victim.blkno, sequence: seq };
    });
  }

  /**
   * Orphan recovery of slot `slot` (ocfs2_recover_orphans, reference/ocfs2.md §6): every inode
   * named in orphan_dir:N — unlinked while open on the node that died — is freed as rm frees
   * one (its clusters and extent blocks back, its allocator bit cleared, the inode not VALID) and
   * its entry removed, one journal transaction per inode. Locks as rm: the orphan directory EX,
   * the inode EX, its allocators, the global bitmap. Returns the inodes freed.
   */
  async recoverOrphans(slot: number): Promise<number[]> {
    const vol = await this.open();
    const orphanDir = slotFileName('orphan_dir', slot);
    const first = await readDirView(vol, await vol.systemInode(orphanDir));
    const freed: number[] = [];
    for (const name of first.entries.map((e) => e.name).filter((n) => n !== '.' && n !== '..')) {
      const held = new Held(vol, this.locker);
      try {
        const view = await held.lockDirectoryInode(await vol.systemInode(orphanDir), `//${orphanDir}`);
        const hit = view.entries.find((e) => e.name === name);
        if (hit === undefined) continue; // another node's orphan scan freed it meanwhile
        const seen = await vol.readInode(hit.inode);
        const now = Date.now();
        const blocks: LoggedBlock[] = [];
        let dirLinks = view.dir.inode.linksCount;
        if (seen.inode.flags & InodeFlag.VALID) {
          const victim = await held.lockInode(seen, 'EX');
          if (victim.inode.linksCount !== 0 && !isDir(victim)) throw new SanboxError('EFORMAT', `${vol.dev.name}: orphan inode ${victim.blkno} in ${orphanDir} still has ${victim.inode.linksCount} links`, { device: vol.dev.name, offsetBytes: vol.where(victim.blkno, 0x2a).offsetBytes });
          await (await held.inodeAllocator(victim.inode.suballocSlot)).free(victim.blkno, victim.inode.suballocBit, 'inode');
          if (!isInline(victim)) await this.freeTree(vol, held, victim);
          // An orphaned directory counted as a link of the orphan directory (ocfs2_orphan_add).
          if (isDir(victim)) dirLinks--;
          blocks.push({ home: victim.blkno, data: freedInode(victim, now) });
        } else {
          await held.inode(seen.blkno, seen.inode.generation, 'EX');
        }
        const change = removeEntry(vol, view, hit);
        setTimes(change.inode, now, { links: dirLinks });
        await this.commit(vol, [{ home: view.dir.blkno, data: change.inode }, ...change.blocks, ...blocks, ...(await held.allocatorBlocks())]);
        freed.push(hit.inode);
      } finally {
        await held.release();
      }
    }
    return freed;
  }

  /**
   * A regular file's content in its inode block `block`: inline data when the volume has the
   * feature and it fits, else clusters of the global bitmap in the inode's extent tree (in the
   * inode, or leaf extent blocks of this slot's extent_alloc when the runs do not fit it:
   * src/fs/extent-tree.ts). The clusters' data is written home and flushed here, before the
   * transaction that points at them commits (ordered mode). A replaced file's (`old`) clusters
   * and extent blocks are freed in the same transaction, after the new ones were taken, so none
   * is reused before the commit that frees it. Returns the new extent blocks; the allocators'
   * changed blocks are the operation's (Held.allocatorBlocks).
   */
  private async setBody(vol: Ocfs2Volume, held: Held, block: Buffer, data: Buffer, old: InodeBlock | undefined): Promise<LoggedBlock[]> {
    const cap = inlineDataCapacity(vol.blockSizeBytes);
    const inline = hasInlineFeature(vol) && data.length <= cap;
    const oldTree = old !== undefined && !isInline(old) ? await treeBlocks(vol, old) : [];
    // Locks in order: extent allocators (ours when the data takes clusters, those of the old tree's blocks), then the bitmap.
    await held.extentAllocators([...oldTree.map((b) => b.slot), ...(inline ? [] : [this.slot])]);
    const dyn = block.readUInt16LE(DINODE_DYN_FEATURES_OFFSET);
    let ebs: LoggedBlock[] = [];
    if (inline) {
      fillInline(block, data, cap);
      block.writeUInt16LE(dyn | DynFeature.INLINE_DATA, DINODE_DYN_FEATURES_OFFSET);
      block.writeUInt32LE(0, DINODE_CLUSTERS_OFFSET);
      block.writeBigUInt64LE(0n, DINODE_LAST_EB_BLK_OFFSET); // 0: the extents sit in the inode again
    } else {
      const cs = vol.geometry.clusterSizeBytes;
      const bpc = vol.geometry.blocksPerCluster;
      const clusters = Math.ceil(data.length / cs);
      const runs = clusters === 0 ? [] : await this.takeClusters(vol, held, clusters);
      // Ordered: the data reaches its home (the tail of the last cluster zeroed) before the commit.
      let cpos = 0;
      const recs = runs.map((r) => {
        const rec = { cpos, clusters: r.clusters, flags: 0, blkno: r.cluster * bpc };
        cpos += r.clusters;
        return rec;
      });
      for (const r of recs) {
        const chunk = Buffer.alloc(r.clusters * cs);
        data.copy(chunk, 0, r.cpos * cs, Math.min(data.length, (r.cpos + r.clusters) * cs));
        await vol.dev.write(chunk, (r.blkno / bpc) * cs);
      }
      await vol.dev.flush();
      block.writeUInt16LE(dyn & ~DynFeature.INLINE_DATA, DINODE_DYN_FEATURES_OFFSET);
      block.writeUInt32LE(clusters, DINODE_CLUSTERS_OFFSET);
      block.fill(0, DINODE_ID2_OFFSET);
      const ext = await held.extentAllocator(this.slot);
      ebs = await writeExtentTree(vol, block, this.slot, recs, () => ext.takeOrGrow(held.bitmap));
    }
    block.writeBigUInt64LE(BigInt(data.length), DINODE_SIZE_OFFSET);
    if (old !== undefined && !isInline(old)) await this.freeTree(vol, held, old, oldTree);
    return ebs;
  }

  /**
   * `clusters` clusters for a file: from this node's local alloc window when it is on (a window
   * of the global bitmap taken under its lock once, src/fs/local-alloc.ts), sliding the window
   * when it has too few; else, or for more than a window holds, from the global bitmap.
   */
  private async takeClusters(vol: Ocfs2Volume, held: Held, clusters: number): Promise<ClusterRun[]> {
    const maxRuns = maxLeafRecords(vol.blockSizeBytes);
    if (this.opts.localAlloc) {
      const la = await held.localAlloc(this.slot);
      if (clusters <= la.windowClusters()) {
        const fromWindow = la.take(clusters, maxRuns) ?? ((await la.slide(await held.bitmap(), clusters)) ? la.take(clusters, maxRuns) : undefined);
        if (fromWindow !== undefined) return fromWindow;
      }
    }
    return (await held.bitmap()).take(clusters, maxRuns);
  }

  /**
   * Returns this slot's local alloc window to the global bitmap (its bits never handed out) and
   * empties it, in one transaction: what the kernel does at umount (ocfs2_shutdown_local_alloc).
   * Returns the clusters given back (0: the window was empty, nothing written).
   */
  async releaseLocalAlloc(): Promise<number> {
    const vol = await this.open();
    const held = new Held(vol, this.locker);
    try {
      const la = await held.localAlloc(this.slot);
      if (la.total === 0) return 0;
      const freed = await la.release(await held.bitmap());
      await this.commit(vol, await held.allocatorBlocks());
      return freed;
    } finally {
      await held.release();
    }
  }

  /** Frees an inode's clusters and extent blocks (locking the blocks' extent allocators, then the bitmap). */
  private async freeTree(vol: Ocfs2Volume, held: Held, ino: InodeBlock, tree?: ExtentBlockRef[]): Promise<void> {
    const blocks = tree ?? (await treeBlocks(vol, ino));
    await held.extentAllocators(blocks.map((b) => b.slot));
    const bitmap = await held.bitmap();
    const bpc = vol.geometry.blocksPerCluster;
    for (const e of await vol.extents(ino)) await bitmap.free({ cluster: e.blkno / bpc, clusters: e.clusters });
    for (const b of blocks) await (await held.extentAllocator(b.slot)).free(b.blkno, b.bit, 'extent block');
  }

  /**
   * A free inode: from this slot's inode allocator, else — as the kernel's inode stealing does —
   * from the other slots' in turn (mkfs.ocfs2 gives only slot 0 a group), else this slot's
   * allocator grows by a group of the global bitmap. A full allocator's lock is released before
   * the next is taken, so two nodes never hold one each while waiting for the other's.
   */
  private async allocateInode(vol: Ocfs2Volume, held: Held): Promise<TakenBit & { slot: number }> {
    const slots = vol.sb.maxSlots;
    for (let k = 0; k < slots; k++) {
      const slot = (this.slot + k) % slots;
      const hit = await (await held.inodeAllocator(slot)).take();
      if (hit !== undefined) return { ...hit, slot };
      await held.releaseAllocator(slotFileName('inode_alloc', slot));
    }
    const own = await held.inodeAllocator(this.slot);
    // The bitmap comes last: a file's extent blocks may need our extent allocator after it.
    await held.extentAllocators([this.slot]);
    return { ...(await own.takeOrGrow(held.bitmap)), slot: this.slot };
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

/** The freed inode as the kernel leaves it (ocfs2_remove_inode): not VALID nor ORPHANED, dtime set, no links. */
function freedInode(victim: InodeBlock, nowMs: number): Buffer {
  const dead = Buffer.from(victim.block);
  dead.writeUInt32LE((victim.inode.flags & ~(InodeFlag.VALID | InodeFlag.ORPHANED)) >>> 0, 0x2c);
  dead.writeUInt16LE(0, 0x2a); // i_links_count
  dead.writeBigUInt64LE(BigInt(Math.floor(nowMs / 1000)), 0x48); // i_dtime
  return dead;
}

/** Inline data of a regular file: id_count is the whole area, the bytes past the data zero. */
function fillInline(block: Buffer, data: Buffer, cap: number): void {
  block.fill(0, DINODE_ID2_OFFSET);
  const area = Buffer.alloc(cap);
  data.copy(area);
  encodeInlineData(block, area);
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
