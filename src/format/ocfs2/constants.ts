// ocfs2 on-disk constants: signatures, inode flags, feature bits, system inode names and limits.
// Facts: reference/ocfs2.md §1-§2 (values checked with mkfs.ocfs2 1.8.7 images and debugfs.ocfs2).

import { O2NM_MAX_NODES } from '../o2hb-block.js';

/** The superblock is the dinode at block 2 at every block size (§1.1). */
export const OCFS2_SUPER_BLOCK_BLKNO = 2;
export const OCFS2_SUPER_SIGNATURE = 'OCFSV2';
export const OCFS2_INODE_SIGNATURE = 'INODE01';
export const OCFS2_EXTENT_BLOCK_SIGNATURE = 'EXBLK01';
export const OCFS2_GROUP_DESC_SIGNATURE = 'GROUP01';
export const OCFS2_DIR_TRAILER_SIGNATURE = 'DIRTRL1';

/** Revision 0.90 is the only ocfs2 revision (§1.4). */
export const OCFS2_MAJOR_REV_LEVEL = 0;
export const OCFS2_MINOR_REV_LEVEL = 90;

/** Block sizes 512..4096 (bits 9..12), cluster sizes 4 KiB..1 MiB (bits 12..20) (§1.1). */
export const OCFS2_MIN_BLOCKSIZE_BITS = 9;
export const OCFS2_MAX_BLOCKSIZE_BITS = 12;
export const OCFS2_MIN_CLUSTERSIZE_BITS = 12;
export const OCFS2_MAX_CLUSTERSIZE_BITS = 20;
/** At most one node slot per o2hb node number: 255 (O2NM_MAX_NODES) (§1.1). */
export const OCFS2_MAX_SLOTS = O2NM_MAX_NODES;
export const OCFS2_MAX_VOL_LABEL_LEN = 64;
export const OCFS2_VOL_UUID_LEN = 16;
export const OCFS2_STACK_LABEL_LEN = 4;
export const OCFS2_CLUSTER_NAME_LEN = 16;
/** statfs magic (§1.1). */
export const OCFS2_SUPER_MAGIC = 0x7461636f;

/** i_suballoc_slot for inodes not taken from a per-slot allocator (§1.2). */
export const OCFS2_INVALID_SLOT = 0xffff;

/** i_flags (§1.3). */
export const InodeFlag = {
  VALID: 0x0001,
  UNUSED2: 0x0002,
  ORPHANED: 0x0004,
  SYSTEM: 0x0010,
  SUPER_BLOCK: 0x0020,
  LOCAL_ALLOC: 0x0040,
  BITMAP: 0x0080,
  JOURNAL: 0x0100,
  HEARTBEAT: 0x0200,
  CHAIN: 0x0400,
  DEALLOC: 0x0800,
  QUOTA: 0x1000,
  DIO_ORPHANED: 0x2000,
} as const;

/** i_dyn_features (§1.2). */
export const DynFeature = {
  INLINE_DATA: 0x1,
  HAS_XATTR: 0x2,
  INLINE_XATTR: 0x4,
  INDEXED_DIR: 0x8,
  HAS_REFCOUNT: 0x10,
} as const;

/** Journal inode ij_flags bit: log in use or not cleanly shut down (§5.1). */
export const OCFS2_JOURNAL_DIRTY_FL = 0x1;

/** Feature bits (§1.5), with the names debugfs.ocfs2 -R stats prints. */
export const FeatureCompat = { BACKUP_SB: 0x1, JBD2_SB: 0x2 } as const;
export const FeatureIncompat = {
  HEARTBEAT_DEV: 0x2,
  RESIZE_INPROG: 0x4,
  LOCAL_MOUNT: 0x8,
  SPARSE_ALLOC: 0x10,
  TUNEFS_INPROG: 0x20,
  INLINE_DATA: 0x40,
  USERSPACE_STACK: 0x80,
  EXTENDED_SLOT_MAP: 0x100,
  XATTR: 0x200,
  INDEXED_DIRS: 0x400,
  META_ECC: 0x800,
  REFCOUNT_TREE: 0x1000,
  DISCONTIG_BG: 0x2000,
  CLUSTERINFO: 0x4000,
  APPEND_DIO: 0x8000,
} as const;
export const FeatureRoCompat = { UNWRITTEN: 0x1, USRQUOTA: 0x2, GRPQUOTA: 0x4 } as const;

export const COMPAT_NAMES: [number, string][] = [
  [0x1, 'backup-super'],
  [0x2, 'strict-journal-super'],
];
export const INCOMPAT_NAMES: [number, string][] = [
  [0x2, 'heartbeat-device'],
  [0x4, 'resize-in-progress'],
  [0x8, 'local'],
  [0x10, 'sparse'],
  [0x20, 'tunefs-in-progress'],
  [0x100, 'extended-slotmap'],
  [0x40, 'inline-data'],
  [0x80, 'userspace-stack'],
  [0x200, 'xattr'],
  [0x400, 'indexed-dirs'],
  [0x800, 'metaecc'],
  [0x1000, 'refcount'],
  [0x2000, 'discontig-bg'],
  [0x4000, 'clusterinfo'],
  [0x8000, 'append-dio'],
];
export const RO_COMPAT_NAMES: [number, string][] = [
  [0x1, 'unwritten'],
  [0x2, 'usrquota'],
  [0x4, 'grpquota'],
];

export function featureNames(bits: number, table: [number, string][]): string[] {
  const names: string[] = [];
  for (const [bit, name] of table) if (bits & bit) names.push(name);
  let rest = bits;
  for (const [bit] of table) rest &= ~bit;
  if (rest >>> 0) names.push(`unknown(0x${(rest >>> 0).toString(16)})`);
  return names;
}

/** Global system inodes (one copy each), in system-inode index order (§2.1). */
export const GLOBAL_SYSTEM_FILES = ['bad_blocks', 'global_inode_alloc', 'slot_map', 'heartbeat', 'global_bitmap'] as const;
/** Per-slot system inodes, named `<name>:%04d` (§2.1). Quota files only with quota features. */
export const SLOT_SYSTEM_FILES = ['orphan_dir', 'extent_alloc', 'inode_alloc', 'journal', 'local_alloc', 'truncate_log'] as const;
export type GlobalSystemFile = (typeof GLOBAL_SYSTEM_FILES)[number];
export type SlotSystemFile = (typeof SLOT_SYSTEM_FILES)[number];

export function slotFileName(name: SlotSystemFile, slot: number): string {
  return `${name}:${String(slot).padStart(4, '0')}`;
}

/** Heartbeat file: (O2NM_MAX_NODES + 1) fs blocks (§2.3). */
export const OCFS2_HEARTBEAT_FILE_BLOCKS = O2NM_MAX_NODES + 1;

/** Backup superblocks at 1 GiB << 2i, i = 0..5 (§1.6). */
export const OCFS2_MAX_BACKUP_SUPERBLOCKS = 6;
export function backupSuperblockOffsetsBytes(): number[] {
  const out: number[] = [];
  for (let i = 0; i < OCFS2_MAX_BACKUP_SUPERBLOCKS; i++) out.push(2 ** 30 * 4 ** i);
  return out;
}

/** Directory entry file types (§2.2). */
export const DirFileType = { UNKNOWN: 0, REG: 1, DIR: 2, CHR: 3, BLK: 4, FIFO: 5, SOCK: 6, SYMLINK: 7 } as const;

/** POSIX mode bits for the inodes mkfs writes. */
export const S_IFDIR = 0o040000;
export const S_IFREG = 0o100000;
