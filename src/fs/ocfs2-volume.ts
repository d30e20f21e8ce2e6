// Reading an ocfs2 volume through a BlockDevice: find the superblock at any block size, read
// inodes, map a file's extents to device blocks, read directories and look system files up by
// name. Every on-disk value that steers a read (block numbers, extents, sizes) is range-checked
// before it is followed, and every failure is a FormatError naming the device and byte offset.
// Facts: reference/ocfs2.md §1-§2.

import { formatFail } from '../format/where.js';
import type { BlockDevice } from '../disk/device.js';
import { FormatError } from '../errors.js';
import { describeDevice } from '../disk/signature-probe.js';
import { BlockCheckOffset, verifyBlockCheck } from '../format/ocfs2/block-check.js';
import {
  DynFeature,
  GLOBAL_SYSTEM_FILES,
  SLOT_SYSTEM_FILES,
  slotFileName,
  FeatureIncompat,
  InodeFlag,
  OCFS2_MAX_BLOCKSIZE_BITS,
  OCFS2_MIN_BLOCKSIZE_BITS,
  OCFS2_SUPER_BLOCK_BLKNO,
  S_IFDIR,
} from '../format/ocfs2/constants.js';
import { DINODE_FLAGS_OFFSET, DINODE_ID2_OFFSET, parseDinode, type Dinode } from '../format/ocfs2/dinode.js';
import { parseDirEntries, type DirEntry } from '../format/ocfs2/dir-entry.js';
import { EXTENT_BLOCK_LIST_OFFSET, OCFS2_MAX_PATH_DEPTH, parseExtentBlock, parseExtentList, type ExtentRec } from '../format/ocfs2/extent-list.js';
import { geometryOf, hasSuperSignature, parseSuperblock, type Geometry, type Superblock } from '../format/ocfs2/superblock.js';
import { inlineDataArea } from '../format/ocfs2/system-payloads.js';
import { parseChainList, parseGroupDesc } from '../format/ocfs2/chain-list.js';
import type { Where } from '../format/where.js';

/** Bound on extent blocks visited while mapping one file: a corrupt tree cannot spin forever. */
const EXTENT_BLOCKS_VISITED_MAX = 100_000;
/** Bound on the bytes a directory or small system file read pulls into memory. */
export const SMALL_FILE_BYTES_MAX = 64 * 1024 * 1024;

export interface InodeBlock {
  blkno: number;
  inode: Dinode;
  block: Buffer;
}

/** A leaf extent mapped to the device: logical clusters [cpos, cpos+clusters) at block `blkno`. */
export interface MappedExtent extends ExtentRec {
  /** Device byte offset of the extent's first block. */
  offsetBytes: number;
}

/** Finds the block size whose block 2 holds the ocfs2 signature, or undefined. */
export async function probeOcfs2BlockSize(dev: BlockDevice): Promise<number | undefined> {
  for (let bits = OCFS2_MIN_BLOCKSIZE_BITS; bits <= OCFS2_MAX_BLOCKSIZE_BITS; bits++) {
    const bs = 1 << bits;
    const off = OCFS2_SUPER_BLOCK_BLKNO * bs;
    if (off + bs > dev.sizeBytes) break;
    const buf = Buffer.alloc(bs);
    await dev.read(buf, off);
    if (hasSuperSignature(buf)) return bs;
  }
  return undefined;
}

export class Ocfs2Volume {
  readonly geometry: Geometry;
  /** Blocks that are both inside the volume and on the device. */
  readonly blockCount: number;
  private systemDirCache: Map<string, number> | undefined;

  private constructor(
    readonly dev: BlockDevice,
    readonly sb: Superblock,
  ) {
    this.geometry = geometryOf(sb);
    const volumeBlocks = this.geometry.volumeSizeBytes / this.geometry.blockSizeBytes;
    this.blockCount = Math.min(volumeBlocks, Math.floor(dev.sizeBytes / this.geometry.blockSizeBytes));
  }

  /** Probes and validates the superblock. A truncated device is refused with the offset it lacks. */
  static async open(dev: BlockDevice): Promise<Ocfs2Volume> {
    if (dev.sizeBytes < 3 * 512) {
      throw new FormatError(`${dev.name}: device of ${dev.sizeBytes} bytes is too small to hold an ocfs2 superblock (needs block 2)`, { device: dev.name, offsetBytes: dev.sizeBytes });
    }
    const bs = await probeOcfs2BlockSize(dev);
    if (bs === undefined) {
      const what = await describeDevice(dev, 'an ocfs2 volume');
      throw new FormatError(`${what}: no ocfs2 superblock ("OCFSV2" at block 2 for block sizes 512..4096)`, { device: dev.name, offsetBytes: 1024 });
    }
    const buf = Buffer.alloc(bs);
    const where: Where = { device: dev.name, offsetBytes: OCFS2_SUPER_BLOCK_BLKNO * bs };
    await dev.read(buf, where.offsetBytes!);
    let sb = parseSuperblock(buf, where, bs);
    if (sb.featureIncompat & FeatureIncompat.META_ECC) {
      // With metaecc every metadata block carries a CRC32 + Hamming check (§7); a single flipped
      // bit is repaired in memory, anything worse is a FormatError at the check's offset.
      const checked = verifyBlockCheck(buf, BlockCheckOffset.DINODE, where);
      if (checked.repairedBit !== undefined) sb = parseSuperblock(checked.block, where, bs);
    }
    // A truncated volume (the superblock promises more than the device holds) is refused, as
    // fsck.ocfs2 refuses it (exit 8): a reader must not report it and a node must not heartbeat into it.
    const volumeBytes = geometryOf(sb).volumeSizeBytes;
    if (volumeBytes > dev.sizeBytes) {
      throw new FormatError(`${dev.name}: device is ${dev.sizeBytes} bytes, shorter than the ${volumeBytes} bytes its ocfs2 superblock says (superblock at offset ${where.offsetBytes})`, where);
    }
    return new Ocfs2Volume(dev, sb);
  }

  get blockSizeBytes(): number {
    return this.geometry.blockSizeBytes;
  }

  where(blkno: number, rel = 0): Where {
    return { device: this.dev.name, offsetBytes: blkno * this.geometry.blockSizeBytes + rel };
  }

  private checkBlkno(blkno: number, what: string, from: Where): void {
    if (!Number.isSafeInteger(blkno) || blkno < 0 || blkno >= this.blockCount) {
      const device = this.dev.name;
      throw new FormatError(
        `${device}: ${what} points to block ${blkno}, past the end of the volume (${this.blockCount} blocks) (at byte offset ${from.offsetBytes ?? 0})`,
        { device, offsetBytes: from.offsetBytes ?? 0 },
      );
    }
  }

  async readBlocks(blkno: number, count: number, what = 'read', from: Where = this.where(blkno)): Promise<Buffer> {
    this.checkBlkno(blkno, what, from);
    this.checkBlkno(blkno + count - 1, what, from);
    const buf = Buffer.alloc(count * this.geometry.blockSizeBytes);
    await this.dev.read(buf, blkno * this.geometry.blockSizeBytes);
    return buf;
  }

  get metaEcc(): boolean {
    return (this.sb.featureIncompat & FeatureIncompat.META_ECC) !== 0;
  }

  /** Verifies (and repairs a single-bit error of) a metadata block's check when metaecc is on. */
  private checked(block: Buffer, checkOffset: number, blkno: number): Buffer {
    return this.metaEcc ? verifyBlockCheck(block, checkOffset, this.where(blkno)).block : block;
  }

  async readInode(blkno: number, from: Where = this.where(blkno)): Promise<InodeBlock> {
    const block = this.checked(await this.readBlocks(blkno, 1, 'inode reference', from), BlockCheckOffset.DINODE, blkno);
    const inode = parseDinode(block, this.where(blkno), { blkno, fsGeneration: this.sb.inode.fsGeneration });
    return { blkno, inode, block };
  }

  /**
   * The leaf extents of an inode, in logical order, following extent blocks for trees deeper
   * than 0. Refuses extents past the device, an extent block visited twice (a loop) and trees
   * deeper than the kernel allows.
   */
  async extents(ino: InodeBlock): Promise<MappedExtent[]> {
    const out: MappedExtent[] = [];
    const visited = new Set<number>();
    const bpc = this.geometry.blocksPerCluster;
    const walk = async (buf: Buffer, listOffset: number, where: Where, depthAbove: number): Promise<void> => {
      const list = parseExtentList(buf, listOffset, where);
      if (depthAbove !== -1 && list.treeDepth !== depthAbove - 1) {
        formatFail({ device: this.dev.name }, where.offsetBytes ?? 0, `extent block at depth ${list.treeDepth} under a node of depth ${depthAbove}`);
      }
      for (const rec of list.recs) {
        if (list.treeDepth === 0) {
          if (rec.clusters === 0) continue;
          const blocks = rec.clusters * bpc;
          this.checkBlkno(rec.blkno, `extent of inode ${ino.blkno}`, where);
          this.checkBlkno(rec.blkno + blocks - 1, `extent of inode ${ino.blkno}`, where);
          out.push({ ...rec, offsetBytes: rec.blkno * this.geometry.blockSizeBytes });
        } else {
          this.checkBlkno(rec.blkno, `extent tree node of inode ${ino.blkno}`, where);
          if (visited.has(rec.blkno)) {
            formatFail({ device: this.dev.name }, where.offsetBytes ?? 0, `extent tree of inode ${ino.blkno} loops back to block ${rec.blkno}`);
          }
          if (visited.size >= EXTENT_BLOCKS_VISITED_MAX) throw new FormatError(`${this.dev.name}: extent tree of inode ${ino.blkno} has more than ${EXTENT_BLOCKS_VISITED_MAX} blocks`, { device: this.dev.name, offsetBytes: where.offsetBytes ?? 0 });
          visited.add(rec.blkno);
          const ebWhere = this.where(rec.blkno);
          const ebBuf = this.checked(await this.readBlocks(rec.blkno, 1, `extent tree node of inode ${ino.blkno}`, where), BlockCheckOffset.EXTENT_BLOCK, rec.blkno);
          parseExtentBlock(ebBuf, ebWhere, { blkno: rec.blkno, fsGeneration: this.sb.inode.fsGeneration });
          await walk(ebBuf, EXTENT_BLOCK_LIST_OFFSET, ebWhere, list.treeDepth);
        }
      }
    };
    const rootWhere = this.where(ino.blkno);
    const rootDepth = ino.block.readUInt16LE(DINODE_ID2_OFFSET);
    if (rootDepth > OCFS2_MAX_PATH_DEPTH) {
      formatFail({ device: this.dev.name }, (rootWhere.offsetBytes ?? 0) + DINODE_ID2_OFFSET, `inode ${ino.blkno} has extent tree depth ${rootDepth}`);
    }
    await walk(ino.block, DINODE_ID2_OFFSET, rootWhere, -1);
    out.sort((a, b) => a.cpos - b.cpos);
    return out;
  }

  /** Device block holding logical block `lblk` of a file, or undefined for a hole. */
  mapBlock(extents: MappedExtent[], lblk: number): number | undefined {
    const bpc = this.geometry.blocksPerCluster;
    for (const e of extents) {
      const first = e.cpos * bpc;
      if (lblk >= first && lblk < first + e.clusters * bpc) return e.blkno + (lblk - first);
    }
    return undefined;
  }

  /** Reads a whole (small) file: inline data or extents up to i_size; holes read as zeros. */
  async readFile(ino: InodeBlock, maxBytes = SMALL_FILE_BYTES_MAX): Promise<Buffer> {
    const size = ino.inode.sizeBytes;
    const where = this.where(ino.blkno, 0x20);
    if (size > BigInt(maxBytes)) formatFail(where, 0, `inode ${ino.blkno} i_size ${size} exceeds the ${maxBytes}-byte read limit`);
    const sizeBytes = Number(size);
    if (ino.inode.dynFeatures & DynFeature.INLINE_DATA) {
      const area = inlineDataArea(ino.block, this.where(ino.blkno));
      if (sizeBytes > area.end - area.start) formatFail(where, 0, `inline inode ${ino.blkno} i_size ${sizeBytes} exceeds its ${area.end - area.start}-byte inline area`);
      return Buffer.from(ino.block.subarray(area.start, area.start + sizeBytes));
    }
    const extents = await this.extents(ino);
    const bs = this.geometry.blockSizeBytes;
    const out = Buffer.alloc(sizeBytes);
    const blocks = Math.ceil(sizeBytes / bs);
    for (let l = 0; l < blocks; l++) {
      const p = this.mapBlock(extents, l);
      if (p === undefined) continue;
      const b = await this.readBlocks(p, 1);
      b.copy(out, l * bs, 0, Math.min(bs, sizeBytes - l * bs));
    }
    return out;
  }

  /** Directory entries of a directory inode (inline or extent-based; every block is scanned). */
  async readDir(ino: InodeBlock): Promise<DirEntry[]> {
    if ((ino.inode.mode & 0o170000) !== S_IFDIR) {
      formatFail(this.where(ino.blkno, 0x28), 0, `inode ${ino.blkno} is not a directory (mode 0${ino.inode.mode.toString(8)})`);
    }
    if (ino.inode.dynFeatures & DynFeature.INLINE_DATA) {
      const area = inlineDataArea(ino.block, this.where(ino.blkno));
      const end = Math.min(area.end, area.start + Number(ino.inode.sizeBytes));
      return parseDirEntries(ino.block, area.start, end, this.where(ino.blkno));
    }
    const extents = await this.extents(ino);
    const bs = this.geometry.blockSizeBytes;
    const size = ino.inode.sizeBytes;
    if (size > BigInt(SMALL_FILE_BYTES_MAX)) formatFail(this.where(ino.blkno, 0x20), 0, `directory ${ino.blkno} i_size ${size} is too large`);
    const blocks = Math.ceil(Number(size) / bs);
    const entries: DirEntry[] = [];
    for (let l = 0; l < blocks; l++) {
      const p = this.mapBlock(extents, l);
      if (p === undefined) continue;
      const b = await this.readBlocks(p, 1);
      entries.push(...parseDirEntries(b, 0, bs, this.where(p)));
    }
    return entries;
  }

  /** The system directory's entries by name (cached). Refuses a system dir that names itself as a child. */
  async systemDir(): Promise<Map<string, number>> {
    if (this.systemDirCache) return this.systemDirCache;
    const dir = await this.readInode(this.sb.systemDirBlkno, this.where(OCFS2_SUPER_BLOCK_BLKNO, 0xf0));
    if (!(dir.inode.flags & InodeFlag.SYSTEM)) {
      formatFail(this.where(dir.blkno, DINODE_FLAGS_OFFSET), 0, `system directory inode ${dir.blkno} lacks the SYSTEM flag`);
    }
    const map = new Map<string, number>();
    for (const e of await this.readDir(dir)) {
      if (e.name === '.' || e.name === '..') continue;
      if (e.inode === dir.blkno) {
        throw new FormatError(`${this.dev.name}: directory loop: system directory entry '${e.name}' points back to the system directory (inode ${dir.blkno})`, { device: this.dev.name, offsetBytes: this.where(dir.blkno).offsetBytes! });
      }
      map.set(e.name, e.inode);
    }
    this.systemDirCache = map;
    return map;
  }

  /**
   * What fsck.ocfs2 reads before anything else (its pass 0 and journal lookup): the root and
   * system directories, every system inode, and the first group descriptor of every chain of the
   * chain allocators. A volume failing here is one fsck refuses outright (exit 8), so a reader
   * must not present it as healthy (issue 15). Reads only; bounded by the system directory's size.
   */
  async checkSystemFiles(): Promise<void> {
    const knownIncompat = Object.values(FeatureIncompat).reduce((m: number, bit: number) => m | bit, 0);
    const unknown = (this.sb.featureIncompat & ~knownIncompat) >>> 0;
    if (unknown !== 0) formatFail(this.where(OCFS2_SUPER_BLOCK_BLKNO, 0xe0), 0, `s_feature_incompat has feature bits this reader does not know: 0x${unknown.toString(16)} (fsck.ocfs2 refuses them too)`);
    await this.readInode(this.sb.rootBlkno, this.where(OCFS2_SUPER_BLOCK_BLKNO));
    const dir = await this.systemDir();
    // Every system file the kernel and fsck look up by name must be there (a flipped bit in a
    // directory entry's name hides one: fsck then stops in pass 0).
    const slots = Array.from({ length: this.sb.maxSlots }, (_, i) => i);
    for (const name of [...GLOBAL_SYSTEM_FILES, ...SLOT_SYSTEM_FILES.flatMap((n) => slots.map((i) => slotFileName(n, i)))]) {
      if (!dir.has(name)) {
        throw new FormatError(`${this.dev.name}: system file '${name}' is missing from the system directory (inode ${this.sb.systemDirBlkno})`, { device: this.dev.name, offsetBytes: this.where(this.sb.systemDirBlkno).offsetBytes! });
      }
    }
    for (const blkno of dir.values()) {
      const ino = await this.readInode(blkno, this.where(this.sb.systemDirBlkno));
      if (!(ino.inode.flags & InodeFlag.CHAIN)) continue;
      for (const rec of parseChainList(ino.block, this.where(blkno)).recs) {
        if (rec.blkno === 0) continue;
        const block = await this.readBlocks(rec.blkno, 1, 'group descriptor', this.where(blkno));
        const g = parseGroupDesc(this.checked(block, BlockCheckOffset.GROUP_DESC, rec.blkno), this.where(rec.blkno), { blkno: rec.blkno, fsGeneration: this.sb.inode.fsGeneration });
        // The links fsck follows first: the group's owner and the next group of the chain.
        if (g.parentDinode !== blkno) formatFail(this.where(rec.blkno, 0x20), 0, `group descriptor ${rec.blkno} names inode ${g.parentDinode} as its allocator, not ${blkno}`);
        if (g.nextGroup !== 0) this.checkBlkno(g.nextGroup, `group descriptor ${rec.blkno}'s next group`, this.where(rec.blkno, 0x18));
      }
    }
  }

  /** A system inode by name (`heartbeat`, `journal:0003`, …). */
  async systemInode(name: string): Promise<InodeBlock> {
    const blkno = (await this.systemDir()).get(name);
    if (blkno === undefined) {
      throw new FormatError(`${this.dev.name}: system file '${name}' is missing from the system directory (inode ${this.sb.systemDirBlkno})`, { device: this.dev.name, offsetBytes: this.where(this.sb.systemDirBlkno).offsetBytes! });
    }
    return this.readInode(blkno);
  }

  /**
   * Walks a directory tree from `rootBlkno` breadth-first, refusing a directory reached twice
   * (a loop): used by fsinfo to count the tree and by tests. Bounded by `maxDirs`.
   */
  async walkDirs(rootBlkno: number, maxDirs = 10_000): Promise<{ dirs: number; entries: number }> {
    const seen = new Set<number>();
    const queue = [rootBlkno];
    let entries = 0;
    while (queue.length > 0) {
      const blkno = queue.shift()!;
      if (seen.has(blkno)) {
        throw new FormatError(`${this.dev.name}: directory loop: directory inode ${blkno} is reachable twice`, { device: this.dev.name, offsetBytes: this.where(blkno).offsetBytes! });
      }
      if (seen.size >= maxDirs) break;
      seen.add(blkno);
      const dir = await this.readInode(blkno);
      for (const e of await this.readDir(dir)) {
        if (e.name === '.' || e.name === '..') continue;
        entries++;
        if (e.fileType === 2) queue.push(e.inode);
      }
    }
    return { dirs: seen.size, entries };
  }
}
