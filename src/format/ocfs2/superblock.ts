// The ocfs2 superblock: the dinode at block 2 whose id2 holds `ocfs2_super_block`.
// Facts: reference/ocfs2.md §1.1, §1.4-1.6.
//
// Payload layout (little-endian; absolute offsets in the block, id2 starts at 0xC0):
//
// | abs   | size | field                  | notes                                              |
// |-------|------|------------------------|----------------------------------------------------|
// | 0xC0  | 2    | s_major_rev_level      | 0                                                  |
// | 0xC2  | 2    | s_minor_rev_level      | 90                                                 |
// | 0xC4  | 2    | s_mnt_count            |                                                    |
// | 0xC6  | 2    | s_max_mnt_count        |                                                    |
// | 0xC8  | 2    | s_state                | 0x1 = error                                        |
// | 0xCA  | 2    | s_errors               |                                                    |
// | 0xCC  | 4    | s_checkinterval        |                                                    |
// | 0xD0  | 8    | s_lastcheck            | Unix seconds                                       |
// | 0xD8  | 4    | s_creator_os           | 0 = Linux                                          |
// | 0xDC  | 4    | s_feature_compat       |                                                    |
// | 0xE0  | 4    | s_feature_incompat     |                                                    |
// | 0xE4  | 4    | s_feature_ro_compat    |                                                    |
// | 0xE8  | 8    | s_root_blkno           |                                                    |
// | 0xF0  | 8    | s_system_dir_blkno     |                                                    |
// | 0xF8  | 4    | s_blocksize_bits       | 9..12                                              |
// | 0xFC  | 4    | s_clustersize_bits     | 12..20                                             |
// | 0x100 | 2    | s_max_slots            | ≤ 255                                              |
// | 0x102 | 2    | s_tunefs_flag          |                                                    |
// | 0x104 | 4    | s_uuid_hash            |                                                    |
// | 0x108 | 8    | s_first_cluster_group  | blkno of the first global bitmap group descriptor  |
// | 0x110 | 64   | s_label                | NUL-padded                                         |
// | 0x150 | 16   | s_uuid                 |                                                    |
// | 0x160 | 4    | ci_stack               | "o2cb", not NUL-terminated                         |
// | 0x164 | 1    | ci_stackflags          | 0x1 = global heartbeat                             |
// | 0x168 | 16   | ci_cluster             | NUL-padded                                         |
// | 0x178 | 2    | s_xattr_inline_size    |                                                    |
// | 0x17A | 2    | s_reserved0            |                                                    |
// | 0x17C | 12   | s_dx_seed[3]           |                                                    |
// | 0x188 | 120  | s_reserved2            | the struct ends at 0x200                           |
//
// The superblock's dinode header carries i_clusters = volume size in clusters and the volume's
// fs generation (i_fs_generation), which every other metadata block must repeat.

import {
  FeatureCompat,
  FeatureIncompat,
  FeatureRoCompat,
  OCFS2_CLUSTER_NAME_LEN,
  OCFS2_MAJOR_REV_LEVEL,
  OCFS2_MAX_BLOCKSIZE_BITS,
  OCFS2_MAX_CLUSTERSIZE_BITS,
  OCFS2_MAX_SLOTS,
  OCFS2_MAX_VOL_LABEL_LEN,
  OCFS2_MIN_BLOCKSIZE_BITS,
  OCFS2_MIN_CLUSTERSIZE_BITS,
  OCFS2_MINOR_REV_LEVEL,
  OCFS2_STACK_LABEL_LEN,
  OCFS2_SUPER_BLOCK_BLKNO,
  OCFS2_SUPER_SIGNATURE,
  OCFS2_VOL_UUID_LEN,
} from './constants.js';
import { decodeDinodeHeader, encodeDinodeHeader, parseDinode, type Dinode } from './dinode.js';
import { formatFail, readPaddedString, readU64Safe, writePaddedString, type Where } from '../where.js';

export interface Superblock {
  /** The dinode header of block 2 (i_clusters, i_fs_generation, times, …). */
  inode: Dinode;
  majorRev: number;
  minorRev: number;
  mntCount: number;
  maxMntCount: number;
  state: number;
  errors: number;
  checkInterval: number;
  lastCheck: bigint;
  creatorOs: number;
  featureCompat: number;
  featureIncompat: number;
  featureRoCompat: number;
  rootBlkno: number;
  systemDirBlkno: number;
  blockSizeBits: number;
  clusterSizeBits: number;
  maxSlots: number;
  tunefsFlag: number;
  uuidHash: number;
  firstClusterGroup: number;
  label: string;
  uuid: Buffer;
  clusterStack: string;
  clusterStackFlags: number;
  clusterName: string;
  xattrInlineSize: number;
  dxSeed: [number, number, number];
}

/** Derived geometry every reader needs. */
export interface Geometry {
  blockSizeBytes: number;
  clusterSizeBytes: number;
  blocksPerCluster: number;
  clusterCount: number;
  /** Volume size in bytes as the superblock states it (i_clusters << clustersize_bits). */
  volumeSizeBytes: number;
}

export function geometryOf(sb: Superblock): Geometry {
  const blockSizeBytes = 1 << sb.blockSizeBits;
  const clusterSizeBytes = 1 << sb.clusterSizeBits;
  return {
    blockSizeBytes,
    clusterSizeBytes,
    blocksPerCluster: clusterSizeBytes / blockSizeBytes,
    clusterCount: sb.inode.clusters,
    volumeSizeBytes: sb.inode.clusters * clusterSizeBytes,
  };
}

/** True when ci_stack/ci_cluster are meaningful (§1.5). */
export function hasClusterInfo(sb: Pick<Superblock, 'featureIncompat'>): boolean {
  return (sb.featureIncompat & (FeatureIncompat.CLUSTERINFO | FeatureIncompat.USERSPACE_STACK)) !== 0;
}

/** Quick signature test used when probing block sizes (§1.1). */
export function hasSuperSignature(block: Uint8Array): boolean {
  return block.length >= 6 && Buffer.from(block.subarray(0, 6)).toString('latin1') === OCFS2_SUPER_SIGNATURE;
}

/**
 * Decodes and validates a superblock read from block `blkno` (2, or a backup's block number) of
 * a volume probed at `blockSizeBytes`. Applies the kernel's mount-time checks (§1.1).
 */
export function parseSuperblock(block: Buffer, where: Where, blockSizeBytes: number, blkno = OCFS2_SUPER_BLOCK_BLKNO): Superblock {
  if (block.length !== blockSizeBytes) formatFail(where, 0, `superblock buffer is ${block.length} bytes, expected ${blockSizeBytes}`);
  const inode = parseDinode(block, where, { signature: OCFS2_SUPER_SIGNATURE, blkno });
  const sb = decodeSuperPayload(block, inode, where);
  if (sb.majorRev !== OCFS2_MAJOR_REV_LEVEL || sb.minorRev !== OCFS2_MINOR_REV_LEVEL) {
    formatFail(where, sb.majorRev !== OCFS2_MAJOR_REV_LEVEL ? 0xc0 : 0xc2, `unsupported ocfs2 revision ${sb.majorRev}.${sb.minorRev} (expected 0.90)`);
  }
  if (sb.blockSizeBits < OCFS2_MIN_BLOCKSIZE_BITS || sb.blockSizeBits > OCFS2_MAX_BLOCKSIZE_BITS) {
    formatFail(where, 0xf8, `s_blocksize_bits ${sb.blockSizeBits} is outside ${OCFS2_MIN_BLOCKSIZE_BITS}..${OCFS2_MAX_BLOCKSIZE_BITS}`);
  }
  if (1 << sb.blockSizeBits !== blockSizeBytes) {
    formatFail(where, 0xf8, `s_blocksize_bits ${sb.blockSizeBits} does not match the ${blockSizeBytes}-byte block the superblock was found in`);
  }
  if (sb.clusterSizeBits < OCFS2_MIN_CLUSTERSIZE_BITS || sb.clusterSizeBits > OCFS2_MAX_CLUSTERSIZE_BITS) {
    formatFail(where, 0xfc, `s_clustersize_bits ${sb.clusterSizeBits} is outside ${OCFS2_MIN_CLUSTERSIZE_BITS}..${OCFS2_MAX_CLUSTERSIZE_BITS}`);
  }
  // fsck.ocfs2 refuses a compat or ro_compat bit it does not know ("Unsupported feature(s)",
  // exit 8): so does the parser. Unknown incompat bits are refused by the namespace reader
  // (src/fs/namespace.ts), which names them.
  const mask = (bits: Record<string, number>): number => Object.values(bits).reduce((m, bit) => m | bit, 0);
  const features: [number, string, number, number][] = [
    [0xdc, 's_feature_compat', sb.featureCompat, mask(FeatureCompat)],
    [0xe4, 's_feature_ro_compat', sb.featureRoCompat, mask(FeatureRoCompat)],
  ];
  for (const [rel, name, v, known] of features) {
    const unknown = (v & ~known) >>> 0;
    if (unknown !== 0) formatFail(where, rel, `${name} has feature bits this reader does not know: 0x${unknown.toString(16)}`);
  }
  if (sb.maxSlots === 0 || sb.maxSlots > OCFS2_MAX_SLOTS) formatFail(where, 0x100, `s_max_slots ${sb.maxSlots} is outside 1..${OCFS2_MAX_SLOTS}`);
  if (sb.rootBlkno === 0) formatFail(where, 0xe8, 's_root_blkno is 0');
  if (sb.systemDirBlkno === 0) formatFail(where, 0xf0, 's_system_dir_blkno is 0');
  const blocks = (sb.inode.clusters * (1 << sb.clusterSizeBits)) / blockSizeBytes;
  if (sb.inode.clusters === 0) formatFail(where, 0x14, 'volume size (i_clusters) is 0');
  for (const [rel, name, v] of [[0xe8, 's_root_blkno', sb.rootBlkno], [0xf0, 's_system_dir_blkno', sb.systemDirBlkno], [0x108, 's_first_cluster_group', sb.firstClusterGroup]] as const) {
    if (v >= blocks) formatFail(where, rel, `${name} ${v} lies past the end of the volume (${blocks} blocks)`);
  }
  return sb;
}

/** Decodes the payload without validation (for fuzzing and debugging). */
export function decodeSuperPayload(block: Buffer, inode: Dinode = decodeDinodeHeader(block), where: Where = {}): Superblock {
  return {
    inode,
    majorRev: block.readUInt16LE(0xc0),
    minorRev: block.readUInt16LE(0xc2),
    mntCount: block.readUInt16LE(0xc4),
    maxMntCount: block.readUInt16LE(0xc6),
    state: block.readUInt16LE(0xc8),
    errors: block.readUInt16LE(0xca),
    checkInterval: block.readUInt32LE(0xcc),
    lastCheck: block.readBigUInt64LE(0xd0),
    creatorOs: block.readUInt32LE(0xd8),
    featureCompat: block.readUInt32LE(0xdc),
    featureIncompat: block.readUInt32LE(0xe0),
    featureRoCompat: block.readUInt32LE(0xe4),
    rootBlkno: readU64Safe(block, 0xe8, where, 's_root_blkno'),
    systemDirBlkno: readU64Safe(block, 0xf0, where, 's_system_dir_blkno'),
    blockSizeBits: block.readUInt32LE(0xf8),
    clusterSizeBits: block.readUInt32LE(0xfc),
    maxSlots: block.readUInt16LE(0x100),
    tunefsFlag: block.readUInt16LE(0x102),
    uuidHash: block.readUInt32LE(0x104),
    firstClusterGroup: readU64Safe(block, 0x108, where, 's_first_cluster_group'),
    label: readPaddedString(block, 0x110, OCFS2_MAX_VOL_LABEL_LEN),
    uuid: Buffer.from(block.subarray(0x150, 0x150 + OCFS2_VOL_UUID_LEN)),
    clusterStack: readPaddedString(block, 0x160, OCFS2_STACK_LABEL_LEN),
    clusterStackFlags: block.readUInt8(0x164),
    clusterName: readPaddedString(block, 0x168, OCFS2_CLUSTER_NAME_LEN),
    xattrInlineSize: block.readUInt16LE(0x178),
    dxSeed: [block.readUInt32LE(0x17c), block.readUInt32LE(0x180), block.readUInt32LE(0x184)],
  };
}

/** Encodes a whole superblock block (header + payload) of `blockSizeBytes`. */
export function encodeSuperblock(sb: Superblock, blockSizeBytes: number): Buffer {
  const block = Buffer.alloc(blockSizeBytes);
  encodeDinodeHeader(block, { ...sb.inode, signature: OCFS2_SUPER_SIGNATURE });
  block.writeUInt16LE(sb.majorRev, 0xc0);
  block.writeUInt16LE(sb.minorRev, 0xc2);
  block.writeUInt16LE(sb.mntCount, 0xc4);
  block.writeUInt16LE(sb.maxMntCount, 0xc6);
  block.writeUInt16LE(sb.state, 0xc8);
  block.writeUInt16LE(sb.errors, 0xca);
  block.writeUInt32LE(sb.checkInterval, 0xcc);
  block.writeBigUInt64LE(sb.lastCheck, 0xd0);
  block.writeUInt32LE(sb.creatorOs, 0xd8);
  block.writeUInt32LE(sb.featureCompat >>> 0, 0xdc);
  block.writeUInt32LE(sb.featureIncompat >>> 0, 0xe0);
  block.writeUInt32LE(sb.featureRoCompat >>> 0, 0xe4);
  block.writeBigUInt64LE(BigInt(sb.rootBlkno), 0xe8);
  block.writeBigUInt64LE(BigInt(sb.systemDirBlkno), 0xf0);
  block.writeUInt32LE(sb.blockSizeBits, 0xf8);
  block.writeUInt32LE(sb.clusterSizeBits, 0xfc);
  block.writeUInt16LE(sb.maxSlots, 0x100);
  block.writeUInt16LE(sb.tunefsFlag, 0x102);
  block.writeUInt32LE(sb.uuidHash >>> 0, 0x104);
  block.writeBigUInt64LE(BigInt(sb.firstClusterGroup), 0x108);
  writePaddedString(block, 0x110, OCFS2_MAX_VOL_LABEL_LEN, sb.label, 'volume label');
  if (sb.uuid.length !== OCFS2_VOL_UUID_LEN) throw new RangeError(`ocfs2 UUID must be ${OCFS2_VOL_UUID_LEN} bytes`);
  sb.uuid.copy(block, 0x150);
  writePaddedString(block, 0x160, OCFS2_STACK_LABEL_LEN, sb.clusterStack, 'cluster stack');
  block.writeUInt8(sb.clusterStackFlags, 0x164);
  writePaddedString(block, 0x168, OCFS2_CLUSTER_NAME_LEN, sb.clusterName, 'cluster name');
  block.writeUInt16LE(sb.xattrInlineSize, 0x178);
  block.writeUInt32LE(sb.dxSeed[0] >>> 0, 0x17c);
  block.writeUInt32LE(sb.dxSeed[1] >>> 0, 0x180);
  block.writeUInt32LE(sb.dxSeed[2] >>> 0, 0x184);
  return block;
}

/** The UUID as the ocfs2 tools print it: 32 upper-case hex digits. */
export function uuidHex(uuid: Uint8Array): string {
  return Buffer.from(uuid).toString('hex').toUpperCase();
}

/** The UUID as blkid prints it: dashed lower-case. */
export function uuidDashed(uuid: Uint8Array): string {
  const h = Buffer.from(uuid).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
