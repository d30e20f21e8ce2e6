// The ocfs2 inode block (`ocfs2_dinode`) header. Every inode, including the superblock, is one
// block: this fixed header, then the `id2` union from 0xC0 (superblock, extent list, chain list,
// local-alloc bitmap, truncate log, inline data). Facts: reference/ocfs2.md §1.2-1.3.
//
// Layout (little-endian), the one place it is written down in sanbox:
//
// | off  | size | field                | notes                                                      |
// |------|------|----------------------|------------------------------------------------------------|
// | 0x00 | 8    | i_signature          | "INODE01\0"; the superblock has "OCFSV2\0\0"               |
// | 0x08 | 4    | i_generation         |                                                            |
// | 0x0C | 2    | i_suballoc_slot      | 0xFFFF = global allocator                                  |
// | 0x0E | 2    | i_suballoc_bit       |                                                            |
// | 0x10 | 2    | i_links_count_hi     |                                                            |
// | 0x12 | 2    | i_xattr_inline_size  |                                                            |
// | 0x14 | 4    | i_clusters           | superblock: volume size in clusters                        |
// | 0x18 | 4    | i_uid                |                                                            |
// | 0x1C | 4    | i_gid                |                                                            |
// | 0x20 | 8    | i_size               | bytes                                                      |
// | 0x28 | 2    | i_mode               |                                                            |
// | 0x2A | 2    | i_links_count        |                                                            |
// | 0x2C | 4    | i_flags              | InodeFlag                                                  |
// | 0x30 | 8×4  | i_atime/ctime/mtime/dtime | Unix seconds                                          |
// | 0x50 | 8    | i_blkno              | must equal the block's own number                          |
// | 0x58 | 8    | i_last_eb_blk        |                                                            |
// | 0x60 | 4    | i_fs_generation      | must equal the superblock's                                |
// | 0x64 | 4×3  | i_atime/ctime/mtime_nsec |                                                        |
// | 0x70 | 4    | i_attr               |                                                            |
// | 0x74 | 2    | i_orphaned_slot      |                                                            |
// | 0x76 | 2    | i_dyn_features       | DynFeature                                                 |
// | 0x78 | 8    | i_xattr_loc          |                                                            |
// | 0x80 | 8    | i_check              | metaecc block check; zero when META_ECC is off             |
// | 0x88 | 8    | i_dx_root            |                                                            |
// | 0x90 | 8    | i_refcount_loc       |                                                            |
// | 0x98 | 8    | i_suballoc_loc       |                                                            |
// | 0xA0 | 2    | i_dio_orphaned_slot  | 0xA2..0xB7 reserved                                        |
// | 0xB8 | 8    | id1                  | journal: ij_flags u32, ij_recovery_generation u32;         |
// |      |      |                      | bitmaps: i_used u32, i_total u32                           |
// | 0xC0 | rest | id2                  | see superblock.ts, extent-list.ts, chain-list.ts, …        |

import { InodeFlag, OCFS2_INODE_SIGNATURE } from './constants.js';
import { formatFail, hex32, needBytes, readU64Safe, type Where } from '../where.js';

/** i_flags (le32): InodeFlag bits; readers name this offset when a required flag is missing. */
export const DINODE_FLAGS_OFFSET = 0x2c;
/** i_clusters (le32), i_size (le64), i_last_eb_blk (le64: the rightmost leaf extent block, 0 at
 *  depth 0), i_dyn_features (le16): the fields the fs operations change in place. */
export const DINODE_CLUSTERS_OFFSET = 0x14;
export const DINODE_SIZE_OFFSET = 0x20;
export const DINODE_LAST_EB_BLK_OFFSET = 0x58;
export const DINODE_DYN_FEATURES_OFFSET = 0x76;
export const DINODE_ID1_OFFSET = 0xb8;
export const DINODE_ID2_OFFSET = 0xc0;
export const DINODE_CHECK_OFFSET = 0x80;
/** The smallest block (512) must hold the header plus the superblock payload (ends at 0x200). */
export const DINODE_MIN_BYTES = 0x200;

export interface Dinode {
  signature: string;
  generation: number;
  suballocSlot: number;
  suballocBit: number;
  linksCountHi: number;
  xattrInlineSize: number;
  clusters: number;
  uid: number;
  gid: number;
  sizeBytes: bigint;
  mode: number;
  linksCount: number;
  flags: number;
  atime: bigint;
  ctime: bigint;
  mtime: bigint;
  dtime: bigint;
  blkno: number;
  lastExtentBlock: number;
  fsGeneration: number;
  atimeNsec: number;
  ctimeNsec: number;
  mtimeNsec: number;
  attr: number;
  orphanedSlot: number;
  dynFeatures: number;
  xattrLoc: bigint;
  /** i_check: crc32e u32 and ecc u16. */
  checkCrc32: number;
  checkEcc: number;
  dxRoot: bigint;
  refcountLoc: bigint;
  suballocLoc: bigint;
  dioOrphanedSlot: number;
  /** id1 as two u32s: (ij_flags, ij_recovery_generation) or (i_used, i_total). */
  id1a: number;
  id1b: number;
}

export interface DinodeCheck {
  /** The block number the inode was read from; i_blkno must match. */
  blkno?: number;
  /** The superblock's fs generation; i_fs_generation must match. */
  fsGeneration?: number;
  /** Signature to require (default INODE01). */
  signature?: string;
}

/** Decodes the header without judging it. */
export function decodeDinodeHeader(block: Buffer, where: Where = {}): Dinode {
  needBytes(block, 0, DINODE_MIN_BYTES, where, 'inode block');
  return {
    signature: block.subarray(0, 8).toString('latin1').replace(/\0+$/, ''),
    generation: block.readUInt32LE(0x08),
    suballocSlot: block.readUInt16LE(0x0c),
    suballocBit: block.readUInt16LE(0x0e),
    linksCountHi: block.readUInt16LE(0x10),
    xattrInlineSize: block.readUInt16LE(0x12),
    clusters: block.readUInt32LE(0x14),
    uid: block.readUInt32LE(0x18),
    gid: block.readUInt32LE(0x1c),
    sizeBytes: block.readBigUInt64LE(0x20),
    mode: block.readUInt16LE(0x28),
    linksCount: block.readUInt16LE(0x2a),
    flags: block.readUInt32LE(DINODE_FLAGS_OFFSET),
    atime: block.readBigUInt64LE(0x30),
    ctime: block.readBigUInt64LE(0x38),
    mtime: block.readBigUInt64LE(0x40),
    dtime: block.readBigUInt64LE(0x48),
    blkno: readU64Safe(block, 0x50, where, 'i_blkno'),
    lastExtentBlock: readU64Safe(block, 0x58, where, 'i_last_eb_blk'),
    fsGeneration: block.readUInt32LE(0x60),
    atimeNsec: block.readUInt32LE(0x64),
    ctimeNsec: block.readUInt32LE(0x68),
    mtimeNsec: block.readUInt32LE(0x6c),
    attr: block.readUInt32LE(0x70),
    orphanedSlot: block.readUInt16LE(0x74),
    dynFeatures: block.readUInt16LE(0x76),
    xattrLoc: block.readBigUInt64LE(0x78),
    checkCrc32: block.readUInt32LE(0x80),
    checkEcc: block.readUInt16LE(0x84),
    dxRoot: block.readBigUInt64LE(0x88),
    refcountLoc: block.readBigUInt64LE(0x90),
    suballocLoc: block.readBigUInt64LE(0x98),
    dioOrphanedSlot: block.readUInt16LE(0xa0),
    id1a: block.readUInt32LE(0xb8),
    id1b: block.readUInt32LE(0xbc),
  };
}

/**
 * Decodes and validates an inode block the way the kernel does before trusting it (§1.2):
 * signature, VALID flag, i_blkno equal to the block's number, i_fs_generation equal to the volume's.
 */
export function parseDinode(block: Buffer, where: Where, check: DinodeCheck = {}): Dinode {
  const d = decodeDinodeHeader(block, where);
  const sig = check.signature ?? OCFS2_INODE_SIGNATURE;
  if (d.signature !== sig) formatFail(where, 0, `inode signature is '${printable(d.signature)}', expected '${sig}'`);
  if (!(d.flags & InodeFlag.VALID)) formatFail(where, DINODE_FLAGS_OFFSET, `inode ${d.blkno} is not marked valid (i_flags 0x${d.flags.toString(16)})`);
  if (check.blkno !== undefined && d.blkno !== check.blkno) {
    formatFail(where, 0x50, `inode read from block ${check.blkno} says it is block ${d.blkno}`);
  }
  if (check.fsGeneration !== undefined && d.fsGeneration !== check.fsGeneration) {
    formatFail(where, 0x60, `inode ${d.blkno} has fs generation 0x${hex32(d.fsGeneration)}, the volume's is 0x${hex32(check.fsGeneration)}`);
  }
  return d;
}

/** Encodes the header into `block` (which the caller has zeroed and sized to the block size). */
export function encodeDinodeHeader(block: Buffer, d: Dinode): void {
  block.fill(0, 0, DINODE_ID2_OFFSET);
  block.write(d.signature, 0, 8, 'latin1');
  block.writeUInt32LE(d.generation >>> 0, 0x08);
  block.writeUInt16LE(d.suballocSlot, 0x0c);
  block.writeUInt16LE(d.suballocBit, 0x0e);
  block.writeUInt16LE(d.linksCountHi, 0x10);
  block.writeUInt16LE(d.xattrInlineSize, 0x12);
  block.writeUInt32LE(d.clusters >>> 0, 0x14);
  block.writeUInt32LE(d.uid, 0x18);
  block.writeUInt32LE(d.gid, 0x1c);
  block.writeBigUInt64LE(d.sizeBytes, 0x20);
  block.writeUInt16LE(d.mode, 0x28);
  block.writeUInt16LE(d.linksCount, 0x2a);
  block.writeUInt32LE(d.flags >>> 0, DINODE_FLAGS_OFFSET);
  block.writeBigUInt64LE(d.atime, 0x30);
  block.writeBigUInt64LE(d.ctime, 0x38);
  block.writeBigUInt64LE(d.mtime, 0x40);
  block.writeBigUInt64LE(d.dtime, 0x48);
  block.writeBigUInt64LE(BigInt(d.blkno), 0x50);
  block.writeBigUInt64LE(BigInt(d.lastExtentBlock), 0x58);
  block.writeUInt32LE(d.fsGeneration >>> 0, 0x60);
  block.writeUInt32LE(d.atimeNsec, 0x64);
  block.writeUInt32LE(d.ctimeNsec, 0x68);
  block.writeUInt32LE(d.mtimeNsec, 0x6c);
  block.writeUInt32LE(d.attr, 0x70);
  block.writeUInt16LE(d.orphanedSlot, 0x74);
  block.writeUInt16LE(d.dynFeatures, 0x76);
  block.writeBigUInt64LE(d.xattrLoc, 0x78);
  block.writeUInt32LE(d.checkCrc32 >>> 0, 0x80);
  block.writeUInt16LE(d.checkEcc, 0x84);
  block.writeBigUInt64LE(d.dxRoot, 0x88);
  block.writeBigUInt64LE(d.refcountLoc, 0x90);
  block.writeBigUInt64LE(d.suballocLoc, 0x98);
  block.writeUInt16LE(d.dioOrphanedSlot, 0xa0);
  block.writeUInt32LE(d.id1a >>> 0, 0xb8);
  block.writeUInt32LE(d.id1b >>> 0, 0xbc);
}

/** A dinode with every field zero except the ones given. */
export function blankDinode(fields: Partial<Dinode>): Dinode {
  return {
    signature: OCFS2_INODE_SIGNATURE,
    generation: 0, suballocSlot: 0, suballocBit: 0, linksCountHi: 0, xattrInlineSize: 0, clusters: 0,
    uid: 0, gid: 0, sizeBytes: 0n, mode: 0, linksCount: 0, flags: 0,
    atime: 0n, ctime: 0n, mtime: 0n, dtime: 0n, blkno: 0, lastExtentBlock: 0, fsGeneration: 0,
    atimeNsec: 0, ctimeNsec: 0, mtimeNsec: 0, attr: 0, orphanedSlot: 0, dynFeatures: 0, xattrLoc: 0n,
    checkCrc32: 0, checkEcc: 0, dxRoot: 0n, refcountLoc: 0n, suballocLoc: 0n, dioOrphanedSlot: 0, id1a: 0, id1b: 0,
    ...fields,
  };
}

export function inodeFlagNames(flags: number): string[] {
  const names: [number, string][] = [
    [InodeFlag.VALID, 'Valid'], [InodeFlag.ORPHANED, 'Orphan'], [InodeFlag.SYSTEM, 'System'],
    [InodeFlag.SUPER_BLOCK, 'Superblock'], [InodeFlag.LOCAL_ALLOC, 'Localalloc'], [InodeFlag.BITMAP, 'Allocbitmap'],
    [InodeFlag.JOURNAL, 'Journal'], [InodeFlag.HEARTBEAT, 'Heartbeat'], [InodeFlag.CHAIN, 'Chain'],
    [InodeFlag.DEALLOC, 'Dealloc'], [InodeFlag.QUOTA, 'Quota'], [InodeFlag.DIO_ORPHANED, 'DioOrphanedFile'],
  ];
  return names.filter(([bit]) => flags & bit).map(([, n]) => n);
}


function printable(s: string): string {
  return s.replace(/[^\x20-\x7e]/g, '?');
}
