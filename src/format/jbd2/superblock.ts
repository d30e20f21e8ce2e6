// The JBD2 journal superblock: block 0 of a log, 1024 bytes, big-endian.
// Facts: reference/ocfs2.md §5.1-5.2, §5.7-5.8.
//
// | off   | size | field               | v1? | notes                                       |
// |-------|------|---------------------|-----|---------------------------------------------|
// | 0x00  | 4    | h_magic             | yes | 0xC03B3998                                  |
// | 0x04  | 4    | h_blocktype         | yes | 3 = superblock v1, 4 = v2                   |
// | 0x08  | 4    | h_sequence          | yes | 0                                           |
// | 0x0C  | 4    | s_blocksize         | yes |                                             |
// | 0x10  | 4    | s_maxlen            | yes | blocks in the log                           |
// | 0x14  | 4    | s_first             | yes | first log block                             |
// | 0x18  | 4    | s_sequence          | yes | first transaction ID expected               |
// | 0x1C  | 4    | s_start             | yes | block of the oldest live transaction; 0 = empty |
// | 0x20  | 4    | s_errno             | yes |                                             |
// | 0x24  | 4    | s_feature_compat    | no  |                                             |
// | 0x28  | 4    | s_feature_incompat  | no  |                                             |
// | 0x2C  | 4    | s_feature_ro_compat | no  |                                             |
// | 0x30  | 16   | s_uuid              | no  |                                             |
// | 0x40  | 4    | s_nr_users          | no  |                                             |
// | 0x44  | 4    | s_dynsuper          | no  |                                             |
// | 0x48  | 4    | s_max_transaction   | no  |                                             |
// | 0x4C  | 4    | s_max_trans_data    | no  |                                             |
// | 0x50  | 1    | s_checksum_type     | no  | 4 = crc32c                                  |
// | 0x51  | 3    | padding             |     |                                             |
// | 0x54  | 4    | s_num_fc_blks       | no  |                                             |
// | 0x58  | 164  | padding             |     |                                             |
// | 0xFC  | 4    | s_checksum          | no  | crc32c(~0, superblock with this zeroed)     |
// | 0x100 | 768  | s_users[16×16]      | no  |                                             |

import { formatFail, type Where } from '../where.js';
import { crc32c, crc32cWithHole } from '../crc32.js';

export const JBD2_MAGIC = 0xc03b3998;
export const JBD2_SUPERBLOCK_BYTES = 1024;
export const JBD2_USERS_MAX = 16;

export const Jbd2BlockType = {
  DESCRIPTOR: 1,
  COMMIT: 2,
  SUPERBLOCK_V1: 3,
  SUPERBLOCK_V2: 4,
  REVOKE: 5,
  FC: 6,
} as const;

/** The kernel's name of a journal block type (jbd2.h), as logdump prints it. */
export function jbd2BlockTypeName(type: number): string {
  switch (type) {
    case Jbd2BlockType.DESCRIPTOR: return 'JBD2_DESCRIPTOR_BLOCK';
    case Jbd2BlockType.COMMIT: return 'JBD2_COMMIT_BLOCK';
    case Jbd2BlockType.SUPERBLOCK_V1: return 'JBD2_SUPERBLOCK_V1';
    case Jbd2BlockType.SUPERBLOCK_V2: return 'JBD2_SUPERBLOCK_V2';
    case Jbd2BlockType.REVOKE: return 'JBD2_REVOKE_BLOCK';
    case Jbd2BlockType.FC: return 'JBD2_FC_BLOCK';
    default: return `unknown block type ${type}`;
  }
}

export const Jbd2FeatureCompat = { CHECKSUM: 0x1 } as const;
export const Jbd2FeatureIncompat = { REVOKE: 0x1, BIT64: 0x2, ASYNC_COMMIT: 0x4, CSUM_V2: 0x8, CSUM_V3: 0x10, FAST_COMMIT: 0x20 } as const;
/** Incompat bits this codec understands; a journal with others cannot be parsed safely. */
export const JBD2_KNOWN_INCOMPAT = 0x3f;

/** Compat feature names as debugfs.ocfs2's logdump prints them. */
export function jbd2CompatNames(f: number): string[] {
  return f & Jbd2FeatureCompat.CHECKSUM ? ['checksum'] : [];
}

/** Incompat feature names as debugfs.ocfs2's logdump prints them (block32 when BIT64 is clear). */
export function jbd2IncompatNames(f: number): string[] {
  const names: string[] = [];
  if (f & Jbd2FeatureIncompat.REVOKE) names.push('revoke');
  names.push(f & Jbd2FeatureIncompat.BIT64 ? 'block64' : 'block32');
  if (f & Jbd2FeatureIncompat.ASYNC_COMMIT) names.push('async-commit');
  if (f & Jbd2FeatureIncompat.CSUM_V2) names.push('checksum-v2');
  if (f & Jbd2FeatureIncompat.CSUM_V3) names.push('checksum-v3');
  if (f & Jbd2FeatureIncompat.FAST_COMMIT) names.push('fast-commit');
  return names;
}
export const JBD2_CRC32C_CHKSUM = 4;

export type { Where } from '../where.js';

export interface Jbd2Superblock {
  blockType: number;
  blockSize: number;
  maxLen: number;
  first: number;
  sequence: number;
  start: number;
  errno: number;
  featureCompat: number;
  featureIncompat: number;
  featureRoCompat: number;
  uuid: Buffer;
  nrUsers: number;
  dynSuper: number;
  maxTransaction: number;
  maxTransData: number;
  checksumType: number;
  numFcBlocks: number;
  checksum: number;
  users: Buffer[];
}

export function jbd2Fail(where: Where, relOffset: number, what: string): never {
  return formatFail(where, relOffset, what, 'journal');
}

export function hasCsumV2orV3(sb: Pick<Jbd2Superblock, 'featureIncompat'>): boolean {
  return (sb.featureIncompat & (Jbd2FeatureIncompat.CSUM_V2 | Jbd2FeatureIncompat.CSUM_V3)) !== 0;
}

/** Seed of the per-journal checksums: crc32c(~0, s_uuid). */
export function jbd2ChecksumSeed(sb: Pick<Jbd2Superblock, 'uuid'>): number {
  return crc32c(0xffffffff, sb.uuid);
}

/**
 * Decodes and validates a JBD2 superblock: magic, block type (v1/v2), block size (512..65536, a
 * power of two, equal to `expectBlockSize` when given), s_first/s_maxlen/s_start ranges, known
 * incompat features, and the crc32c when checksum v2/v3 is on.
 */
export function parseJbd2Superblock(buf: Buffer, where: Where = {}, expectBlockSize?: number): Jbd2Superblock {
  if (buf.length < JBD2_SUPERBLOCK_BYTES) jbd2Fail(where, 0, `journal superblock needs ${JBD2_SUPERBLOCK_BYTES} bytes, got ${buf.length}`);
  const magic = buf.readUInt32BE(0);
  if (magic !== JBD2_MAGIC) jbd2Fail(where, 0, `journal superblock magic is 0x${magic.toString(16)}, expected 0x${JBD2_MAGIC.toString(16)}`);
  const blockType = buf.readUInt32BE(4);
  if (blockType !== Jbd2BlockType.SUPERBLOCK_V1 && blockType !== Jbd2BlockType.SUPERBLOCK_V2) {
    jbd2Fail(where, 4, `journal superblock has block type ${blockType}, expected 3 (v1) or 4 (v2)`);
  }
  const v2 = blockType === Jbd2BlockType.SUPERBLOCK_V2;
  const sb: Jbd2Superblock = {
    blockType,
    blockSize: buf.readUInt32BE(0x0c),
    maxLen: buf.readUInt32BE(0x10),
    first: buf.readUInt32BE(0x14),
    sequence: buf.readUInt32BE(0x18),
    start: buf.readUInt32BE(0x1c),
    errno: buf.readInt32BE(0x20),
    featureCompat: v2 ? buf.readUInt32BE(0x24) : 0,
    featureIncompat: v2 ? buf.readUInt32BE(0x28) : 0,
    featureRoCompat: v2 ? buf.readUInt32BE(0x2c) : 0,
    uuid: Buffer.from(buf.subarray(0x30, 0x40)),
    nrUsers: v2 ? buf.readUInt32BE(0x40) : 0,
    dynSuper: v2 ? buf.readUInt32BE(0x44) : 0,
    maxTransaction: v2 ? buf.readUInt32BE(0x48) : 0,
    maxTransData: v2 ? buf.readUInt32BE(0x4c) : 0,
    checksumType: v2 ? buf.readUInt8(0x50) : 0,
    numFcBlocks: v2 ? buf.readUInt32BE(0x54) : 0,
    checksum: v2 ? buf.readUInt32BE(0xfc) : 0,
    users: [],
  };
  const bs = sb.blockSize;
  if (bs < 512 || bs > 65536 || (bs & (bs - 1)) !== 0) jbd2Fail(where, 0x0c, `journal block size ${bs} is not a power of two from 512 to 65536`);
  if (expectBlockSize !== undefined && bs !== expectBlockSize) jbd2Fail(where, 0x0c, `journal block size ${bs} differs from the filesystem block size ${expectBlockSize}`);
  const firstMin = Math.ceil(JBD2_SUPERBLOCK_BYTES / bs);
  if (sb.first < firstMin || sb.first >= sb.maxLen) jbd2Fail(where, 0x14, `journal s_first ${sb.first} is outside ${firstMin}..${sb.maxLen - 1}`);
  // mkfs.ocfs2 writes s_start = 1 even when s_first is 2 (512-byte blocks, §9), so only the upper
  // bound is checked here; a walker starts at max(s_start, s_first).
  if (sb.start >= sb.maxLen) jbd2Fail(where, 0x1c, `journal s_start ${sb.start} is outside the log [${sb.first}, ${sb.maxLen})`);
  if (sb.featureIncompat & ~JBD2_KNOWN_INCOMPAT) jbd2Fail(where, 0x28, `journal has unknown incompat features 0x${(sb.featureIncompat & ~JBD2_KNOWN_INCOMPAT).toString(16)}`);
  if (v2) {
    if (sb.nrUsers > JBD2_USERS_MAX) jbd2Fail(where, 0x40, `journal s_nr_users ${sb.nrUsers} exceeds ${JBD2_USERS_MAX}`);
    for (let i = 0; i < sb.nrUsers; i++) sb.users.push(Buffer.from(buf.subarray(0x100 + 16 * i, 0x110 + 16 * i)));
    if (hasCsumV2orV3(sb)) {
      if (sb.checksumType !== JBD2_CRC32C_CHKSUM) jbd2Fail(where, 0x50, `journal checksum type ${sb.checksumType}, expected 4 (crc32c)`);
      const computed = crc32cWithHole(0xffffffff, buf.subarray(0, JBD2_SUPERBLOCK_BYTES), 0xfc);
      if (computed !== sb.checksum) jbd2Fail(where, 0xfc, `journal superblock checksum 0x${sb.checksum.toString(16)} does not match computed 0x${computed.toString(16)}`);
    }
  }
  return sb;
}

/** Encodes a JBD2 superblock into a 1024-byte buffer (checksum computed when v2/v3 is on). */
export function encodeJbd2Superblock(sb: Jbd2Superblock): Buffer {
  const buf = Buffer.alloc(JBD2_SUPERBLOCK_BYTES);
  buf.writeUInt32BE(JBD2_MAGIC, 0);
  buf.writeUInt32BE(sb.blockType, 4);
  buf.writeUInt32BE(0, 8);
  buf.writeUInt32BE(sb.blockSize, 0x0c);
  buf.writeUInt32BE(sb.maxLen, 0x10);
  buf.writeUInt32BE(sb.first, 0x14);
  buf.writeUInt32BE(sb.sequence >>> 0, 0x18);
  buf.writeUInt32BE(sb.start, 0x1c);
  buf.writeInt32BE(sb.errno, 0x20);
  if (sb.blockType === Jbd2BlockType.SUPERBLOCK_V2) {
    buf.writeUInt32BE(sb.featureCompat >>> 0, 0x24);
    buf.writeUInt32BE(sb.featureIncompat >>> 0, 0x28);
    buf.writeUInt32BE(sb.featureRoCompat >>> 0, 0x2c);
    sb.uuid.copy(buf, 0x30, 0, 16);
    buf.writeUInt32BE(sb.nrUsers, 0x40);
    buf.writeUInt32BE(sb.dynSuper, 0x44);
    buf.writeUInt32BE(sb.maxTransaction, 0x48);
    buf.writeUInt32BE(sb.maxTransData, 0x4c);
    buf.writeUInt8(sb.checksumType, 0x50);
    buf.writeUInt32BE(sb.numFcBlocks, 0x54);
    sb.users.slice(0, JBD2_USERS_MAX).forEach((u, i) => u.copy(buf, 0x100 + 16 * i, 0, 16));
    if (hasCsumV2orV3(sb)) buf.writeUInt32BE(crc32cWithHole(0xffffffff, buf, 0xfc), 0xfc);
  } else {
    sb.uuid.copy(buf, 0x30, 0, 16);
  }
  return buf;
}

/** A fresh superblock as mkfs.ocfs2 writes it (§5.1): v2, s_first 1 (2 at 512-byte blocks), s_start = s_sequence = 1. */
export function freshJbd2Superblock(opts: { blockSize: number; maxLen: number; uuid: Buffer; incompat?: number }): Jbd2Superblock {
  return {
    blockType: Jbd2BlockType.SUPERBLOCK_V2,
    blockSize: opts.blockSize,
    maxLen: opts.maxLen,
    first: Math.ceil(JBD2_SUPERBLOCK_BYTES / opts.blockSize),
    sequence: 1,
    start: 1,
    errno: 0,
    featureCompat: 0,
    featureIncompat: opts.incompat ?? 0,
    featureRoCompat: 0,
    uuid: opts.uuid,
    nrUsers: 1,
    dynSuper: 0,
    maxTransaction: 0,
    maxTransData: 0,
    checksumType: 0,
    numFcBlocks: 0,
    checksum: 0,
    users: [],
  };
}

/** s_sequence and s_start (big-endian u32s) and s_checksum in the superblock. */
export const JBD2_S_SEQUENCE_OFFSET = 0x18;
export const JBD2_S_START_OFFSET = 0x1c;
export const JBD2_S_CHECKSUM_OFFSET = 0xfc;

/**
 * Sets where the log starts, in place in an encoded superblock (the first 1024 bytes of `buf`):
 * s_start = start (0 = empty log) and s_sequence = sequence, with the checksum redone when the
 * journal has csum v2/v3. Every other byte is left as it was.
 */
export function setJbd2LogStart(buf: Buffer, start: number, sequence: number): void {
  if (buf.length < JBD2_SUPERBLOCK_BYTES) throw new RangeError(`a JBD2 superblock needs ${JBD2_SUPERBLOCK_BYTES} bytes`);
  buf.writeUInt32BE(sequence >>> 0, JBD2_S_SEQUENCE_OFFSET);
  buf.writeUInt32BE(start >>> 0, JBD2_S_START_OFFSET);
  if (hasCsumV2orV3({ featureIncompat: buf.readUInt32BE(0x28) })) {
    buf.writeUInt32BE(crc32cWithHole(0xffffffff, buf.subarray(0, JBD2_SUPERBLOCK_BYTES), JBD2_S_CHECKSUM_OFFSET), JBD2_S_CHECKSUM_OFFSET);
  }
}
