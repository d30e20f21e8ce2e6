// The layout sanbox's mkfs writes: a pure plan (no I/O) of where every metadata structure goes
// and the bytes of every metadata block. mkfs.ts validates the target and writes the plan.
//
// Layout, in clusters (all allocation is linear from the first free cluster):
//   [0 .. fcg]        blocks 0-2 (block 2 = superblock) and, at block s_first_cluster_group, the
//                     descriptor of global bitmap group 0
//   global_inode_alloc's one group: its descriptor, then every system inode, the root directory
//                     and lost+found, one block each (bit k of the group = block gd + k)
//   heartbeat         256 fs blocks, one extent (o2hb needs a single extent, reference §4.1)
//   journal:0000..    one per slot, JBD2 superblock in its block 0, the rest zero
//   slot_map          one cluster
//   inode_alloc:0000  one group (its descriptor in its first block), as mkfs.ocfs2 gives slot 0;
//                     every other slot's allocators start empty, for the kernel to grow
//   directory blocks  for directories too big for inline data (the system dir at small blocks)
// Global bitmap groups i ≥ 1 keep their descriptor in their own first cluster, and backup
// superblocks (1 GiB << 2i) sit in their own cluster; the allocator steps around both.
//
// Feature set (documented in tools/commands/ocfs2.ts --help and the README section), chosen by
// mkfs-options.ts; by default mkfs.ocfs2's default level less what sanbox cannot write:
//   compat    backup-super (optional), strict-journal-super (always)
//   incompat  sparse, inline-data, extended-slotmap, local (each optional), and with
//             --cluster-stack o2cb: clusterinfo (forces extended-slotmap)
//   ro_compat unwritten (optional, needs sparse)
// Without backup-super no backup superblocks are written; without inline-data every directory
// gets extent-mapped blocks.
// No metaecc, indexed-dirs, xattr, refcount, discontig-bg or append-dio: all optional for the
// kernel, and without metaecc every block-check field stays zero (reference §7). Journals: JBD2 v2
// with no features (block64 when the volume has more than 2^32 blocks).

import {
  backupSuperblockOffsetsBytes,
  DirFileType,
  DynFeature,
  FeatureCompat,
  FeatureIncompat,
  FeatureRoCompat,
  GLOBAL_SYSTEM_FILES,
  InodeFlag,
  OCFS2_HEARTBEAT_FILE_BLOCKS,
  OCFS2_INVALID_SLOT,
  OCFS2_MAJOR_REV_LEVEL,
  OCFS2_MAX_SLOTS,
  OCFS2_MINOR_REV_LEVEL,
  OCFS2_SUPER_BLOCK_BLKNO,
  S_IFDIR,
  S_IFREG,
  SLOT_SYSTEM_FILES,
  slotFileName,
} from '../format/ocfs2/constants.js';
import { blankDinode, encodeDinodeHeader, type Dinode } from '../format/ocfs2/dinode.js';
import { dirRecLen, encodeDirEntries } from '../format/ocfs2/dir-entry.js';
import { encodeChainList, encodeGroupDesc, groupBitmapCapacityBytes, chainListCapacity, setBits, type ChainRec } from '../format/ocfs2/chain-list.js';
import { encodeExtentList, inodeExtentCapacity, type ExtentRec } from '../format/ocfs2/extent-list.js';
import { encodeSlotMap } from '../format/ocfs2/slot-map.js';
import { encodeSuperblock, type Superblock } from '../format/ocfs2/superblock.js';
import { encodeInlineData, encodeLocalAlloc, encodeTruncateLog, inlineDataCapacity, localAllocBitmapBytes, truncateLogCapacity } from '../format/ocfs2/system-payloads.js';
import { encodeJbd2Superblock, freshJbd2Superblock, Jbd2FeatureIncompat } from '../format/jbd2/superblock.js';
import { SanboxError } from '../errors.js';
import { defaultFeatures, defaultJournalSize, type FsType, type Ocfs2Features } from './mkfs-options.js';

/** Journal limits: at least 4 MiB and 1024 JBD2 blocks (reference §5.1). */
export const JOURNAL_MIN_BYTES = 4 * 1024 * 1024;
export const JOURNAL_MIN_BLOCKS = 1024;
/** Leaf extent records hold at most 65535 clusters (e_leaf_clusters is u16). */
const LEAF_CLUSTERS_MAX = 0xffff;
/** Target size of a per-slot suballocator group when the kernel grows one (cl_cpg), in bytes. */
const SUBALLOC_GROUP_TARGET_BYTES = 4 * 1024 * 1024;
/** Default s_max_mnt_count, as mkfs.ocfs2 writes it. */
const MAX_MNT_COUNT = 20;

export interface MkfsParams {
  sizeBytes: number;
  slots: number;
  blockSizeBytes: number;
  clusterSizeBytes: number;
  journalSizeBytes?: number;
  label: string;
  clusterStack?: 'o2cb' | undefined;
  clusterName?: string | undefined;
  /** Defaults to defaultFeatures(clusterStack). */
  features?: Ocfs2Features | undefined;
  /** mkfs.ocfs2's -T: only changes the default journal size here (the caller picks the cluster size). */
  fsType?: FsType | undefined;
  /** Force a 64-bit (true) or 32-bit (false) JBD2 journal; by default 64-bit only when the volume needs it. */
  journal64?: boolean | undefined;
  uuid: Buffer;
  fsGeneration: number;
  dxSeed: [number, number, number];
  nowSec: bigint;
}

export interface GroupPlan {
  index: number;
  firstCluster: number;
  bits: number;
  descBlkno: number;
  chain: number;
  nextGroup: number;
  usedBits: number;
}

export interface MkfsPlan {
  params: MkfsParams;
  clusterCount: number;
  blocksPerCluster: number;
  firstClusterGroup: number;
  journalSizeBytes: number;
  journal64: boolean;
  /** Metadata blocks other than global bitmap group descriptors, by block number. */
  blocks: Map<number, Buffer>;
  /** Global bitmap groups; their descriptors are encoded lazily by globalGroupBlock(). */
  groups: GroupPlan[];
  /** Global bitmap: used cluster runs [first, first+count) (sorted, merged). */
  usedRuns: [number, number][];
  superblock: Superblock;
  /** Backup superblock block numbers inside the volume. */
  backupBlknos: number[];
  /** Journal extents as device byte ranges (to be zeroed). */
  journalRangesBytes: [number, number][];
  /** Device byte ranges to zero besides the metadata blocks (heartbeat, slot map). */
  zeroRangesBytes: [number, number][];
  systemInodes: Map<string, number>;
  rootBlkno: number;
  systemDirBlkno: number;
}

export function tooSmall(message: string): SanboxError {
  return new SanboxError('EINVAL', message);
}

/** Default journal size: mkfs.ocfs2's (mkfs-options.ts), then halved (not below 4 MiB) while all
 *  slots' journals together would take more than a quarter of the volume, rounded up to clusters. */
export function defaultJournalBytes(sizeBytes: number, blockSizeBytes: number, clusterSizeBytes: number, slots = 1, fsType?: FsType): number {
  let j = defaultJournalSize(sizeBytes, blockSizeBytes, fsType);
  while (j > JOURNAL_MIN_BYTES && j * slots * 4 > sizeBytes) j = Math.max(JOURNAL_MIN_BYTES, j / 2);
  return Math.ceil(j / clusterSizeBytes) * clusterSizeBytes;
}

/** ocfs2's UUID hash (s_uuid_hash): rotate left 5 and xor in each byte. */
export function uuidHash(uuid: Uint8Array): number {
  let h = 0;
  for (const b of uuid) h = (((h << 5) | (h >>> 27)) ^ b) >>> 0;
  return h;
}

export function planMkfs(p: MkfsParams): MkfsPlan {
  const bs = p.blockSizeBytes;
  const cs = p.clusterSizeBytes;
  if (![512, 1024, 2048, 4096].includes(bs)) throw new SanboxError('EINVAL', `block size ${bs} must be 512, 1024, 2048 or 4096`);
  if (cs < 4096 || cs > 1024 * 1024 || (cs & (cs - 1)) !== 0) throw new SanboxError('EINVAL', `cluster size ${cs} must be a power of two from 4K to 1M`);
  if (!Number.isInteger(p.slots) || p.slots < 1 || p.slots > OCFS2_MAX_SLOTS) throw new SanboxError('EINVAL', `slots ${p.slots} must be 1..${OCFS2_MAX_SLOTS}`);
  if (p.clusterName !== undefined && p.clusterStack === undefined) throw new SanboxError('EINVAL', 'a cluster name needs --cluster-stack o2cb');
  const bpc = cs / bs;
  const clusterCount = Math.floor(p.sizeBytes / cs);
  const volumeBlocks = clusterCount * bpc;
  const features = p.features ?? defaultFeatures(p.clusterStack);
  if (p.clusterStack !== undefined && !features.extendedSlotMap) throw new SanboxError('EINVAL', 'a cluster stack needs the extended slot map');
  if (features.unwritten && !features.sparse) throw new SanboxError('EINVAL', 'feature unwritten needs sparse');
  if (p.journal64 === false && volumeBlocks > 0xffffffff) throw new SanboxError('EINVAL', `a 32-bit journal cannot address a volume of ${volumeBlocks} blocks; use block64`);
  const journal64 = p.journal64 ?? volumeBlocks > 0xffffffff;
  const journalSizeBytes = Math.ceil((p.journalSizeBytes ?? defaultJournalBytes(p.sizeBytes, bs, cs, p.slots, p.fsType)) / cs) * cs;
  if (journalSizeBytes < JOURNAL_MIN_BYTES || journalSizeBytes / bs < JOURNAL_MIN_BLOCKS) {
    throw new SanboxError('EINVAL', `journal size ${journalSizeBytes} is below the minimum of 4 MiB and ${JOURNAL_MIN_BLOCKS} blocks`);
  }
  if (clusterCount < 16) throw tooSmall(`device of ${p.sizeBytes} bytes is too small for an ocfs2 volume with ${cs}-byte clusters`);

  // Global bitmap geometry: each group's bitmap fills a descriptor block (bg_bits is u16).
  const cpg = Math.min(groupBitmapCapacityBytes(bs) * 8, 0xffff);
  const groupCount = Math.ceil(clusterCount / cpg);
  const chainCount = Math.min(groupCount, chainListCapacity(bs));
  const firstClusterGroup = Math.ceil((OCFS2_SUPER_BLOCK_BLKNO + 1) / bpc) * bpc;
  const fcgCluster = firstClusterGroup / bpc;
  const backupBlknos = (features.backupSuper ? backupSuperblockOffsetsBytes() : [])
    .filter((off) => off + bs <= clusterCount * cs)
    .map((off) => off / bs);
  const backupClusters = new Set(backupBlknos.map((b) => Math.floor(b / bpc)));
  const reserved = (c: number): boolean => c <= fcgCluster || (c % cpg === 0) || backupClusters.has(c);

  // Linear allocator.
  let cursor = fcgCluster + 1;
  const used: [number, number][] = [];
  const noSpace = (what: string): never => {
    throw tooSmall(`device of ${p.sizeBytes} bytes is too small for ${p.slots} slots with ${journalSizeBytes}-byte journals (ran out of space placing ${what})`);
  };
  const allocContig = (n: number, what: string): number => {
    for (;;) {
      if (cursor + n > clusterCount) noSpace(what);
      let bad = -1;
      for (let c = cursor; c < cursor + n; c++) if (reserved(c)) bad = c;
      if (bad < 0) break;
      cursor = bad + 1;
    }
    const start = cursor;
    cursor += n;
    used.push([start, n]);
    return start;
  };
  /** Allocates n clusters as runs that avoid reserved clusters; returns leaf extent records. */
  const allocRuns = (n: number, what: string): ExtentRec[] => {
    const recs: ExtentRec[] = [];
    let cpos = 0;
    while (n > 0) {
      while (cursor < clusterCount && reserved(cursor)) cursor++;
      let len = 0;
      while (len < n && len < LEAF_CLUSTERS_MAX && cursor + len < clusterCount && !reserved(cursor + len)) len++;
      if (len === 0) noSpace(what);
      recs.push({ cpos, clusters: len, flags: 0, blkno: cursor * bpc });
      used.push([cursor, len]);
      cursor += len;
      cpos += len;
      n -= len;
    }
    if (recs.length > inodeExtentCapacity(bs)) throw tooSmall(`${what} would need ${recs.length} extents, more than an inode holds at ${bs}-byte blocks`);
    return recs;
  };

  // --- inode numbering in the global_inode_alloc group ---
  const globalNames = [...GLOBAL_SYSTEM_FILES];
  const slotNames: string[] = [];
  for (const kind of SLOT_SYSTEM_FILES) for (let s = 0; s < p.slots; s++) slotNames.push(slotFileName(kind, s));
  const inodeNames = ['/', '//', ...globalNames, ...slotNames, '/lost+found'];
  const inodeBits = 1 + inodeNames.length; // bit 0 is the group descriptor itself
  if (inodeBits > groupBitmapCapacityBytes(bs) * 8) throw tooSmall(`${p.slots} slots need ${inodeBits} system inodes, more than one ${bs}-byte group holds`);
  const inodeGroupClusters = Math.ceil(inodeBits / bpc);
  const inodeGroupCluster = allocContig(inodeGroupClusters, 'the system inodes');
  const inodeGroupBlkno = inodeGroupCluster * bpc;
  const blknoOf = new Map<string, number>();
  inodeNames.forEach((n, i) => blknoOf.set(n, inodeGroupBlkno + 1 + i));
  const bitOf = (name: string): number => blknoOf.get(name)! - inodeGroupBlkno;

  // --- data of system files ---
  const hbClusters = Math.ceil((OCFS2_HEARTBEAT_FILE_BLOCKS * bs) / cs);
  const hbCluster = allocContig(hbClusters, 'the heartbeat file');
  const journalClusters = journalSizeBytes / cs;
  const journalExtents: ExtentRec[][] = [];
  for (let s = 0; s < p.slots; s++) journalExtents.push(allocRuns(journalClusters, `journal:${String(s).padStart(4, '0')}`));
  const extended = features.extendedSlotMap;
  const slotMapBytes = p.slots * (extended ? 8 : 2);
  const slotMapClusters = Math.max(1, Math.ceil(slotMapBytes / cs));
  const slotMapCluster = allocContig(slotMapClusters, 'the slot map');

  const blocks = new Map<number, Buffer>();
  const now = p.nowSec;
  const mkInode = (name: string, fields: Partial<Dinode>): Buffer => {
    const blkno = blknoOf.get(name)!;
    const block = Buffer.alloc(bs);
    encodeDinodeHeader(block, blankDinode({
      generation: p.fsGeneration, suballocSlot: OCFS2_INVALID_SLOT, suballocBit: bitOf(name), blkno, fsGeneration: p.fsGeneration,
      atime: now, ctime: now, mtime: now, linksCount: 1, mode: S_IFREG | 0o644,
      ...fields,
    }));
    blocks.set(blkno, block);
    return block;
  };
  const extentInode = (name: string, flags: number, recs: ExtentRec[], sizeBytes: bigint, mode = S_IFREG | 0o644, extra: Partial<Dinode> = {}): Buffer => {
    const clusters = recs.reduce((a, r) => a + r.clusters, 0);
    const block = mkInode(name, { flags: InodeFlag.VALID | InodeFlag.SYSTEM | flags, clusters, sizeBytes, mode, ...extra });
    encodeExtentList(block, 0xc0, { treeDepth: 0, count: inodeExtentCapacity(bs), nextFreeRec: recs.length, recs });
    return block;
  };

  // Directories: inline when the entries fit the inode, else extent-based blocks.
  type Ent = { inode: number; name: string; fileType: number };
  const dirAllocs: { name: string; entries: Ent[]; flags: number; links: number }[] = [];
  const rootB = blknoOf.get('/')!;
  const sysB = blknoOf.get('//')!;
  const lfB = blknoOf.get('/lost+found')!;
  const orphanNames = slotNames.filter((n) => n.startsWith('orphan_dir:'));
  const sysEntries: Ent[] = [
    { inode: sysB, name: '.', fileType: DirFileType.DIR },
    { inode: sysB, name: '..', fileType: DirFileType.DIR },
    ...[...globalNames, ...slotNames].map((n) => ({ inode: blknoOf.get(n)!, name: n, fileType: n.startsWith('orphan_dir:') ? DirFileType.DIR : DirFileType.REG })),
  ];
  dirAllocs.push({ name: '/', flags: InodeFlag.SYSTEM, links: 3, entries: [
    { inode: rootB, name: '.', fileType: DirFileType.DIR }, { inode: rootB, name: '..', fileType: DirFileType.DIR }, { inode: lfB, name: 'lost+found', fileType: DirFileType.DIR },
  ] });
  dirAllocs.push({ name: '//', flags: InodeFlag.SYSTEM, links: 2 + orphanNames.length, entries: sysEntries });
  for (const o of orphanNames) dirAllocs.push({ name: o, flags: InodeFlag.SYSTEM, links: 2, entries: [
    { inode: blknoOf.get(o)!, name: '.', fileType: DirFileType.DIR }, { inode: sysB, name: '..', fileType: DirFileType.DIR },
  ] });
  dirAllocs.push({ name: '/lost+found', flags: 0, links: 2, entries: [
    { inode: lfB, name: '.', fileType: DirFileType.DIR }, { inode: rootB, name: '..', fileType: DirFileType.DIR },
  ] });
  const inlineCap = inlineDataCapacity(bs);
  for (const d of dirAllocs) {
    const need = d.entries.reduce((a, e) => a + dirRecLen(Buffer.byteLength(e.name)), 0);
    if (features.inlineData && need <= inlineCap) {
      const block = mkInode(d.name, { flags: InodeFlag.VALID | d.flags, mode: S_IFDIR | 0o755, linksCount: d.links, sizeBytes: BigInt(inlineCap), dynFeatures: DynFeature.INLINE_DATA });
      encodeInlineData(block, encodeDirEntries(d.entries, inlineCap));
      continue;
    }
    // Pack entries into blocks; each block's last entry stretches to the block end.
    const dirBlocks: Ent[][] = [[]];
    let fill = 0;
    for (const e of d.entries) {
      const len = dirRecLen(Buffer.byteLength(e.name));
      if (fill + len > bs) {
        dirBlocks.push([]);
        fill = 0;
      }
      dirBlocks[dirBlocks.length - 1]!.push(e);
      fill += len;
    }
    const clusters = Math.ceil(dirBlocks.length / bpc);
    const recs = allocRuns(clusters, `directory ${d.name}`);
    const block = mkInode(d.name, { flags: InodeFlag.VALID | d.flags, mode: S_IFDIR | 0o755, linksCount: d.links, sizeBytes: BigInt(dirBlocks.length * bs), clusters });
    encodeExtentList(block, 0xc0, { treeDepth: 0, count: inodeExtentCapacity(bs), nextFreeRec: recs.length, recs });
    let l = 0;
    for (const r of recs) {
      for (let k = 0; k < r.clusters * bpc && l < dirBlocks.length; k++, l++) blocks.set(r.blkno + k, encodeDirEntries(dirBlocks[l]!, bs));
    }
  }

  // Global system files.
  extentInode('bad_blocks', 0, [], 0n);
  extentInode('heartbeat', InodeFlag.HEARTBEAT, [{ cpos: 0, clusters: hbClusters, flags: 0, blkno: hbCluster * bpc }], BigInt(OCFS2_HEARTBEAT_FILE_BLOCKS * bs));
  extentInode('slot_map', 0, [{ cpos: 0, clusters: slotMapClusters, flags: 0, blkno: slotMapCluster * bpc }], BigInt(slotMapClusters * cs));
  const slotMap = encodeSlotMap(Array.from({ length: p.slots }, (_, slot) => ({ slot, nodeNum: undefined })), extended, slotMapClusters * cs);
  for (let k = 0; k * bs < slotMap.length; k++) blocks.set(slotMapCluster * bpc + k, slotMap.subarray(k * bs, (k + 1) * bs));

  // Per-slot files.
  const subCpg = Math.max(1, Math.min(Math.floor((groupBitmapCapacityBytes(bs) * 8) / bpc), Math.floor(SUBALLOC_GROUP_TARGET_BYTES / cs)));
  const jbd2Incompat = journal64 ? Jbd2FeatureIncompat.BIT64 : 0;
  const journalRangesBytes: [number, number][] = [];
  for (let s = 0; s < p.slots; s++) {
    const sfx = (k: string): string => `${k}:${String(s).padStart(4, '0')}`;
    for (const k of ['extent_alloc', 'inode_alloc']) {
      if (s === 0 && k === 'inode_alloc') {
        // Slot 0's inode allocator gets one group, as mkfs.ocfs2's does (which also puts
        // lost+found there): inodes for the first files without growing an allocator. Bit 0 is
        // the group descriptor's own block.
        const groupCluster = allocContig(subCpg, 'the first inode group');
        const groupBlkno = groupCluster * bpc;
        const bits = subCpg * bpc;
        const b = mkInode(sfx(k), {
          flags: InodeFlag.VALID | InodeFlag.SYSTEM | InodeFlag.BITMAP | InodeFlag.CHAIN,
          clusters: subCpg, sizeBytes: BigInt(subCpg * cs), id1a: 1, id1b: bits,
        });
        encodeChainList(b, { clustersPerGroup: subCpg, bitsPerCluster: bpc, count: chainListCapacity(bs), recs: [{ free: bits - 1, total: bits, blkno: groupBlkno }] });
        const bitmap = Buffer.alloc(groupBitmapCapacityBytes(bs));
        setBits(bitmap, 0, 1);
        blocks.set(groupBlkno, encodeGroupDesc({
          sizeBytes: bitmap.length, bits, freeBits: bits - 1, chain: 0, generation: p.fsGeneration,
          nextGroup: 0, parentDinode: blknoOf.get(sfx(k))!, blkno: groupBlkno, bitmap,
        }, bs));
        continue;
      }
      const b = mkInode(sfx(k), { flags: InodeFlag.VALID | InodeFlag.SYSTEM | InodeFlag.BITMAP | InodeFlag.CHAIN });
      encodeChainList(b, { clustersPerGroup: subCpg, bitsPerCluster: bpc, count: chainListCapacity(bs), recs: [] });
    }
    const recs = journalExtents[s]!;
    extentInode(sfx('journal'), InodeFlag.JOURNAL, recs, BigInt(journalSizeBytes));
    const jsb = encodeJbd2Superblock(freshJbd2Superblock({ blockSize: bs, maxLen: journalSizeBytes / bs, uuid: p.uuid, incompat: jbd2Incompat }));
    // The JBD2 superblock is 1024 bytes: one block, or the first two at 512-byte blocks.
    const j0 = recs[0]!.blkno;
    for (let k = 0; k * bs < jsb.length; k++) blocks.set(j0 + k, padTo(jsb.subarray(k * bs, (k + 1) * bs), bs));
    for (const r of recs) journalRangesBytes.push([r.blkno * bs, r.clusters * cs]);
    const la = mkInode(sfx('local_alloc'), { flags: InodeFlag.VALID | InodeFlag.SYSTEM | InodeFlag.BITMAP | InodeFlag.LOCAL_ALLOC });
    encodeLocalAlloc(la, 0, localAllocBitmapBytes(bs));
    const tl = mkInode(sfx('truncate_log'), { flags: InodeFlag.VALID | InodeFlag.SYSTEM | InodeFlag.DEALLOC });
    encodeTruncateLog(tl, truncateLogCapacity(bs));
  }

  // global_inode_alloc and its group.
  const inodeGroupBitsTotal = inodeGroupClusters * bpc;
  const gia = mkInode('global_inode_alloc', {
    flags: InodeFlag.VALID | InodeFlag.SYSTEM | InodeFlag.BITMAP | InodeFlag.CHAIN,
    clusters: inodeGroupClusters, sizeBytes: BigInt(inodeGroupClusters * cs), id1a: inodeBits, id1b: inodeGroupBitsTotal,
  });
  encodeChainList(gia, { clustersPerGroup: inodeGroupClusters, bitsPerCluster: bpc, count: chainListCapacity(bs), recs: [{ free: inodeGroupBitsTotal - inodeBits, total: inodeGroupBitsTotal, blkno: inodeGroupBlkno }] });
  const inodeBitmap = Buffer.alloc(groupBitmapCapacityBytes(bs));
  setBits(inodeBitmap, 0, inodeBits);
  blocks.set(inodeGroupBlkno, encodeGroupDesc({
    sizeBytes: inodeBitmap.length, bits: inodeGroupBitsTotal, freeBits: inodeGroupBitsTotal - inodeBits, chain: 0, generation: p.fsGeneration,
    nextGroup: 0, parentDinode: blknoOf.get('global_inode_alloc')!, blkno: inodeGroupBlkno, bitmap: inodeBitmap,
  }, bs));

  // Global bitmap: everything allocated above plus the reserved clusters.
  used.push([0, fcgCluster + 1]);
  for (let i = 1; i < groupCount; i++) used.push([i * cpg, 1]);
  for (const c of backupClusters) used.push([c, 1]);
  const usedRuns = mergeRuns(used);
  const groups: GroupPlan[] = [];
  for (let i = 0; i < groupCount; i++) {
    const first = i * cpg;
    const bits = Math.min(cpg, clusterCount - first);
    groups.push({ index: i, firstCluster: first, bits, descBlkno: i === 0 ? firstClusterGroup : first * bpc, chain: i % chainCount, nextGroup: 0, usedBits: countInRuns(usedRuns, first, bits) });
  }
  const chains: ChainRec[] = [];
  const byChain: GroupPlan[][] = Array.from({ length: chainCount }, () => []);
  for (const g of groups) byChain[g.chain]!.push(g);
  for (let c = 0; c < chainCount; c++) {
    const members = byChain[c]!;
    for (let k = 0; k + 1 < members.length; k++) members[k]!.nextGroup = members[k + 1]!.descBlkno;
    chains.push({ blkno: members[0]!.descBlkno, total: members.reduce((a, g) => a + g.bits, 0), free: members.reduce((a, g) => a + g.bits - g.usedBits, 0) });
  }
  const usedClusters = groups.reduce((a, g) => a + g.usedBits, 0);
  const gb = mkInode('global_bitmap', {
    flags: InodeFlag.VALID | InodeFlag.SYSTEM | InodeFlag.BITMAP | InodeFlag.CHAIN,
    clusters: clusterCount, sizeBytes: BigInt(clusterCount) * BigInt(cs), id1a: usedClusters, id1b: clusterCount,
  });
  encodeChainList(gb, { clustersPerGroup: cpg, bitsPerCluster: 1, count: chainListCapacity(bs), recs: chains });

  // Superblock.
  const clusterInfo = p.clusterStack !== undefined;
  let incompat = 0;
  if (features.sparse) incompat |= FeatureIncompat.SPARSE_ALLOC;
  if (features.inlineData) incompat |= FeatureIncompat.INLINE_DATA;
  if (features.local) incompat |= FeatureIncompat.LOCAL_MOUNT;
  if (extended) incompat |= FeatureIncompat.EXTENDED_SLOT_MAP;
  if (clusterInfo) incompat |= FeatureIncompat.CLUSTERINFO;
  const superblock: Superblock = {
    inode: blankDinode({
      generation: p.fsGeneration, suballocSlot: OCFS2_INVALID_SLOT, suballocBit: 0xffff, clusters: clusterCount,
      flags: InodeFlag.VALID | InodeFlag.SYSTEM | InodeFlag.SUPER_BLOCK, ctime: now, mtime: now, blkno: OCFS2_SUPER_BLOCK_BLKNO, fsGeneration: p.fsGeneration,
    }),
    majorRev: OCFS2_MAJOR_REV_LEVEL, minorRev: OCFS2_MINOR_REV_LEVEL, mntCount: 0, maxMntCount: MAX_MNT_COUNT, state: 0, errors: 0,
    checkInterval: 0, lastCheck: now, creatorOs: 0,
    featureCompat: (features.backupSuper ? FeatureCompat.BACKUP_SB : 0) | FeatureCompat.JBD2_SB, featureIncompat: incompat,
    featureRoCompat: features.unwritten ? FeatureRoCompat.UNWRITTEN : 0,
    rootBlkno: rootB, systemDirBlkno: sysB, blockSizeBits: Math.log2(bs), clusterSizeBits: Math.log2(cs), maxSlots: p.slots, tunefsFlag: 0,
    uuidHash: uuidHash(p.uuid), firstClusterGroup, label: p.label, uuid: p.uuid,
    clusterStack: clusterInfo ? 'o2cb' : '', clusterStackFlags: 0, clusterName: clusterInfo ? (p.clusterName ?? '') : '',
    xattrInlineSize: 0, dxSeed: p.dxSeed,
  };
  // Encode once here so a label or name that does not fit fails before anything is written.
  encodeSuperblock(superblock, bs);

  const systemInodes = new Map<string, number>();
  for (const n of [...globalNames, ...slotNames]) systemInodes.set(n, blknoOf.get(n)!);
  return {
    params: p, clusterCount, blocksPerCluster: bpc, firstClusterGroup, journalSizeBytes, journal64,
    blocks, groups, usedRuns, superblock, backupBlknos, journalRangesBytes,
    zeroRangesBytes: [[hbCluster * cs, hbClusters * cs]],
    systemInodes, rootBlkno: rootB, systemDirBlkno: sysB,
  };
}

/** The descriptor block of global bitmap group `g`. */
export function globalGroupBlock(plan: MkfsPlan, g: GroupPlan): Buffer {
  const bs = plan.params.blockSizeBytes;
  const bitmap = Buffer.alloc(groupBitmapCapacityBytes(bs));
  forUsedIn(plan.usedRuns, g.firstCluster, g.bits, (lo, hi) => setBits(bitmap, lo - g.firstCluster, hi - lo));
  return encodeGroupDesc({
    sizeBytes: bitmap.length, bits: g.bits, freeBits: g.bits - g.usedBits, chain: g.chain, generation: plan.params.fsGeneration,
    nextGroup: g.nextGroup, parentDinode: plan.systemInodes.get('global_bitmap')!, blkno: g.descBlkno, bitmap,
  }, bs);
}

/** Superblock block (primary when blkno = 2, else a backup carrying its own block number). */
export function superblockBlock(plan: MkfsPlan, blkno: number): Buffer {
  return encodeSuperblock({ ...plan.superblock, inode: { ...plan.superblock.inode, blkno } }, plan.params.blockSizeBytes);
}

function padTo(b: Buffer, n: number): Buffer {
  if (b.length === n) return Buffer.from(b);
  const out = Buffer.alloc(n);
  b.copy(out);
  return out;
}

function mergeRuns(runs: [number, number][]): [number, number][] {
  const sorted = runs.filter(([, n]) => n > 0).sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const [s, n] of sorted) {
    const last = out[out.length - 1];
    if (last && s < last[0] + last[1]) throw new Error(`sanbox invariant violated: overlapping cluster runs at ${s}`);
    if (last && s === last[0] + last[1]) last[1] += n;
    else out.push([s, n]);
  }
  return out;
}

/** Index of the first run ending after `cluster` (runs sorted and disjoint). */
function firstRunAfter(runs: [number, number][], cluster: number): number {
  let lo = 0;
  let hi = runs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (runs[mid]![0] + runs[mid]![1] <= cluster) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Calls fn(lo, hi) for each used sub-run inside [first, first+bits). */
function forUsedIn(runs: [number, number][], first: number, bits: number, fn: (lo: number, hi: number) => void): void {
  for (let i = firstRunAfter(runs, first); i < runs.length && runs[i]![0] < first + bits; i++) {
    const lo = Math.max(runs[i]![0], first);
    const hi = Math.min(runs[i]![0] + runs[i]![1], first + bits);
    if (lo < hi) fn(lo, hi);
  }
}

function countInRuns(runs: [number, number][], first: number, bits: number): number {
  let n = 0;
  forUsedIn(runs, first, bits, (lo, hi) => (n += hi - lo));
  return n;
}
