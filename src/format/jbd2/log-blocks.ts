// JBD2 log blocks after the superblock: descriptor (with block tags), commit and revoke blocks.
// All big-endian. Facts: reference/ocfs2.md §5.3-5.8.
//
// Every block starts with a 12-byte header: h_magic 0xC03B3998 @0, h_blocktype @4, h_sequence @8.
//
// Descriptor (type 1): tags from byte 12, each followed by a 16-byte UUID unless it has SAME_UUID;
// the tag with LAST_TAG ends the list; with csum v2/v3 the last 4 bytes are a tail checksum.
//   | journal features     | tag bytes | layout                                                    |
//   | none                 | 8         | blocknr u32 @0, flags u32 @4                              |
//   | 64BIT                | 12        | + blocknr_high u32 @8                                     |
//   | CSUM_V2              | 10 (+2 w/ 64BIT → 14) | blocknr u32, csum16 u16 @4, flags u16 @6, [high @8]   |
//   | CSUM_V3              | 16        | blocknr @0, flags u32 @4, blocknr_high @8, csum32 @12     |
//   Tag flags (read as u16 @6 in every format): 1 ESCAPE, 2 SAME_UUID, 4 DELETED, 8 LAST_TAG.
//
// Commit (type 2): h_chksum_type u8 @0x0C, h_chksum_size u8 @0x0D, h_chksum[8] u32 @0x10,
//   h_commit_sec u64 @0x30, h_commit_nsec u32 @0x38.
//
// Revoke (type 5): r_count u32 @0x0C = bytes used including the 16-byte header; then records of
//   4 bytes (8 with 64BIT). With csum v2/v3 a 4-byte tail checksum ends the block.

import { crc32c, crc32cWithHole } from '../crc32.js';
import {
  hasCsumV2orV3,
  JBD2_MAGIC,
  jbd2Fail,
  Jbd2BlockType,
  Jbd2FeatureIncompat,
  type Jbd2Superblock,
  type Where,
} from './superblock.js';

export const JBD2_HEADER_BYTES = 12;
export const JBD2_REVOKE_HEADER_BYTES = 16;
export const JBD2_TAIL_BYTES = 4;
export const JBD2_UUID_BYTES = 16;

export const TagFlag = { ESCAPE: 1, SAME_UUID: 2, DELETED: 4, LAST_TAG: 8 } as const;

/** A descriptor tag's flags by their kernel names (JBD2_FLAG_*), as logdump prints them. */
export function tagFlagNames(flags: number): string[] {
  const names: string[] = [];
  for (const [name, bit] of Object.entries(TagFlag)) if (flags & bit) names.push(`JBD2_FLAG_${name}`);
  return names;
}

export interface Jbd2Header {
  magic: number;
  blockType: number;
  sequence: number;
}

export function decodeJbd2Header(block: Buffer): Jbd2Header {
  return { magic: block.readUInt32BE(0), blockType: block.readUInt32BE(4), sequence: block.readUInt32BE(8) };
}

/** True when the block starts with the JBD2 magic (the log walker's first test). */
export function isJbd2Block(block: Buffer): boolean {
  return block.length >= JBD2_HEADER_BYTES && block.readUInt32BE(0) === JBD2_MAGIC;
}

/** Tag size for the journal's features (§5.4). */
export function tagBytes(sb: Pick<Jbd2Superblock, 'featureIncompat'>): number {
  const f = sb.featureIncompat;
  if (f & Jbd2FeatureIncompat.CSUM_V3) return 16;
  let size = 8;
  if (f & Jbd2FeatureIncompat.CSUM_V2) size += 2;
  if (f & Jbd2FeatureIncompat.BIT64) size += 4;
  return size;
}

export interface Jbd2Tag {
  /** Home block number (64-bit journals combine the high word). */
  blocknr: number;
  flags: number;
  /** Tag checksum (csum v2: 16 bits, v3: 32 bits; 0 otherwise). */
  checksum: number;
  /** The UUID following this tag, if any. */
  uuid: Buffer | undefined;
  /** Byte offset of the tag in the descriptor block. */
  offset: number;
}

export interface Jbd2Descriptor {
  sequence: number;
  tags: Jbd2Tag[];
  /** Tail checksum (csum v2/v3) and whether it verified. */
  tailChecksum: number | undefined;
  tailValid: boolean | undefined;
}

function checkHeader(block: Buffer, where: Where, type: number, name: string): number {
  if (block.length < JBD2_REVOKE_HEADER_BYTES) jbd2Fail(where, 0, `journal ${name} block of ${block.length} bytes is too short`);
  const h = decodeJbd2Header(block);
  if (h.magic !== JBD2_MAGIC) jbd2Fail(where, 0, `journal ${name} block magic is 0x${h.magic.toString(16)}, expected 0x${JBD2_MAGIC.toString(16)}`);
  if (h.blockType !== type) jbd2Fail(where, 4, `journal block type is ${h.blockType}, expected ${type} (${name})`);
  return h.sequence;
}

/** Decodes a descriptor block's tags. A tag list that runs off the usable area is a FormatError. */
export function parseDescriptor(block: Buffer, sb: Pick<Jbd2Superblock, 'featureIncompat' | 'uuid'>, where: Where = {}): Jbd2Descriptor {
  const sequence = checkHeader(block, where, Jbd2BlockType.DESCRIPTOR, 'descriptor');
  const csum = hasCsumV2orV3(sb);
  const end = block.length - (csum ? JBD2_TAIL_BYTES : 0);
  const size = tagBytes(sb);
  const is64 = (sb.featureIncompat & Jbd2FeatureIncompat.BIT64) !== 0;
  const v3 = (sb.featureIncompat & Jbd2FeatureIncompat.CSUM_V3) !== 0;
  const v2 = !v3 && (sb.featureIncompat & Jbd2FeatureIncompat.CSUM_V2) !== 0;
  const tags: Jbd2Tag[] = [];
  let off = JBD2_HEADER_BYTES;
  for (;;) {
    if (off + size > end) jbd2Fail(where, off, `journal descriptor tag ${tags.length} runs past the end of the block without a LAST_TAG`);
    const low = block.readUInt32BE(off);
    const high = is64 ? block.readUInt32BE(off + 8) : 0;
    const flags = block.readUInt16BE(off + 6);
    const checksum = v3 ? block.readUInt32BE(off + 12) : v2 ? block.readUInt16BE(off + 4) : 0;
    const blocknr = high * 2 ** 32 + low;
    const tagOffset = off;
    off += size;
    let uuid: Buffer | undefined;
    if (!(flags & TagFlag.SAME_UUID)) {
      if (off + JBD2_UUID_BYTES > end) jbd2Fail(where, off, `journal descriptor tag ${tags.length} UUID runs past the end of the block`);
      uuid = Buffer.from(block.subarray(off, off + JBD2_UUID_BYTES));
      off += JBD2_UUID_BYTES;
    }
    tags.push({ blocknr, flags, checksum, uuid, offset: tagOffset });
    if (flags & TagFlag.LAST_TAG) break;
  }
  let tailChecksum: number | undefined;
  let tailValid: boolean | undefined;
  if (csum) {
    tailChecksum = block.readUInt32BE(block.length - JBD2_TAIL_BYTES);
    tailValid = crc32cWithHole(crc32c(0xffffffff, sb.uuid), block, block.length - JBD2_TAIL_BYTES) === tailChecksum;
  }
  return { sequence, tags, tailChecksum, tailValid };
}

/** Encodes a descriptor block; the first tag carries `uuid`, later ones SAME_UUID. */
export function encodeDescriptor(
  sequence: number,
  tags: { blocknr: number; flags?: number; checksum?: number }[],
  sb: Pick<Jbd2Superblock, 'featureIncompat' | 'uuid' | 'blockSize'>,
): Buffer {
  const block = Buffer.alloc(sb.blockSize);
  writeHeader(block, Jbd2BlockType.DESCRIPTOR, sequence);
  const size = tagBytes(sb);
  const is64 = (sb.featureIncompat & Jbd2FeatureIncompat.BIT64) !== 0;
  const v3 = (sb.featureIncompat & Jbd2FeatureIncompat.CSUM_V3) !== 0;
  const v2 = !v3 && (sb.featureIncompat & Jbd2FeatureIncompat.CSUM_V2) !== 0;
  const end = block.length - (hasCsumV2orV3(sb) ? JBD2_TAIL_BYTES : 0);
  let off = JBD2_HEADER_BYTES;
  tags.forEach((t, i) => {
    let flags = (t.flags ?? 0) & ~(TagFlag.LAST_TAG | TagFlag.SAME_UUID);
    if (i > 0) flags |= TagFlag.SAME_UUID;
    if (i === tags.length - 1) flags |= TagFlag.LAST_TAG;
    const need = size + (i === 0 ? JBD2_UUID_BYTES : 0);
    if (off + need > end) throw new RangeError(`${tags.length} tags do not fit one ${sb.blockSize}-byte descriptor`);
    if (!is64 && t.blocknr > 0xffffffff) throw new RangeError(`block ${t.blocknr} needs a 64-bit journal`);
    block.writeUInt32BE(t.blocknr % 2 ** 32, off);
    if (v3) block.writeUInt32BE(flags, off + 4);
    else if (v2) {
      block.writeUInt16BE((t.checksum ?? 0) & 0xffff, off + 4);
      block.writeUInt16BE(flags, off + 6);
    } else block.writeUInt32BE(flags, off + 4);
    if (is64) block.writeUInt32BE(Math.floor(t.blocknr / 2 ** 32), off + 8);
    if (v3) block.writeUInt32BE((t.checksum ?? 0) >>> 0, off + 12);
    off += size;
    if (i === 0) {
      sb.uuid.copy(block, off, 0, JBD2_UUID_BYTES);
      off += JBD2_UUID_BYTES;
    }
  });
  if (hasCsumV2orV3(sb)) block.writeUInt32BE(crc32cWithHole(crc32c(0xffffffff, sb.uuid), block, block.length - JBD2_TAIL_BYTES), block.length - JBD2_TAIL_BYTES);
  return block;
}

/** Data-block tag checksum (csum v2/v3): crc32c(seed, be32 sequence) then the block as logged. */
export function dataBlockChecksum(seed: number, sequence: number, data: Buffer): number {
  const seq = Buffer.alloc(4);
  seq.writeUInt32BE(sequence >>> 0, 0);
  return crc32c(crc32c(seed, seq), data);
}

export interface Jbd2Commit {
  sequence: number;
  checksumType: number;
  checksumSize: number;
  checksums: number[];
  commitSec: bigint;
  commitNsec: number;
  /** With csum v2/v3: whether h_chksum[0] verified. */
  checksumValid: boolean | undefined;
}

export function parseCommit(block: Buffer, sb: Pick<Jbd2Superblock, 'featureIncompat' | 'uuid'>, where: Where = {}): Jbd2Commit {
  const sequence = checkHeader(block, where, Jbd2BlockType.COMMIT, 'commit');
  if (block.length < 0x40) jbd2Fail(where, 0, 'journal commit block is too short');
  const checksums: number[] = [];
  for (let i = 0; i < 8; i++) checksums.push(block.readUInt32BE(0x10 + 4 * i));
  const checksumValid = hasCsumV2orV3(sb) ? crc32cWithHole(crc32c(0xffffffff, sb.uuid), block, 0x10) === checksums[0] : undefined;
  return {
    sequence,
    checksumType: block.readUInt8(0x0c),
    checksumSize: block.readUInt8(0x0d),
    checksums,
    commitSec: block.readBigUInt64BE(0x30),
    commitNsec: block.readUInt32BE(0x38),
    checksumValid,
  };
}

export function encodeCommit(sequence: number, sb: Pick<Jbd2Superblock, 'featureIncompat' | 'uuid' | 'blockSize'>, commitSec = 0n, commitNsec = 0): Buffer {
  const block = Buffer.alloc(sb.blockSize);
  writeHeader(block, Jbd2BlockType.COMMIT, sequence);
  block.writeBigUInt64BE(commitSec, 0x30);
  block.writeUInt32BE(commitNsec, 0x38);
  if (hasCsumV2orV3(sb)) block.writeUInt32BE(crc32cWithHole(crc32c(0xffffffff, sb.uuid), block, 0x10), 0x10);
  return block;
}

export interface Jbd2Revoke {
  sequence: number;
  /** r_count: bytes used including the header. */
  count: number;
  blocks: number[];
  tailValid: boolean | undefined;
}

export function parseRevoke(block: Buffer, sb: Pick<Jbd2Superblock, 'featureIncompat' | 'uuid'>, where: Where = {}): Jbd2Revoke {
  const sequence = checkHeader(block, where, Jbd2BlockType.REVOKE, 'revoke');
  const count = block.readUInt32BE(0x0c);
  const csum = hasCsumV2orV3(sb);
  const limit = block.length - (csum ? JBD2_TAIL_BYTES : 0);
  const recBytes = sb.featureIncompat & Jbd2FeatureIncompat.BIT64 ? 8 : 4;
  if (count < JBD2_REVOKE_HEADER_BYTES || count > limit) jbd2Fail(where, 0x0c, `journal revoke r_count ${count} is outside ${JBD2_REVOKE_HEADER_BYTES}..${limit}`);
  if ((count - JBD2_REVOKE_HEADER_BYTES) % recBytes !== 0) jbd2Fail(where, 0x0c, `journal revoke r_count ${count} is not a whole number of ${recBytes}-byte records`);
  const blocks: number[] = [];
  for (let off = JBD2_REVOKE_HEADER_BYTES; off < count; off += recBytes) {
    blocks.push(recBytes === 8 ? block.readUInt32BE(off) * 2 ** 32 + block.readUInt32BE(off + 4) : block.readUInt32BE(off));
  }
  const tailValid = csum
    ? crc32cWithHole(crc32c(0xffffffff, sb.uuid), block, block.length - JBD2_TAIL_BYTES) === block.readUInt32BE(block.length - JBD2_TAIL_BYTES)
    : undefined;
  return { sequence, count, blocks, tailValid };
}

export function encodeRevoke(sequence: number, blocks: number[], sb: Pick<Jbd2Superblock, 'featureIncompat' | 'uuid' | 'blockSize'>): Buffer {
  const block = Buffer.alloc(sb.blockSize);
  writeHeader(block, Jbd2BlockType.REVOKE, sequence);
  const recBytes = sb.featureIncompat & Jbd2FeatureIncompat.BIT64 ? 8 : 4;
  const count = JBD2_REVOKE_HEADER_BYTES + recBytes * blocks.length;
  const limit = block.length - (hasCsumV2orV3(sb) ? JBD2_TAIL_BYTES : 0);
  if (count > limit) throw new RangeError(`${blocks.length} revoke records do not fit one block`);
  block.writeUInt32BE(count, 0x0c);
  blocks.forEach((b, i) => {
    const off = JBD2_REVOKE_HEADER_BYTES + i * recBytes;
    if (recBytes === 8) {
      block.writeUInt32BE(Math.floor(b / 2 ** 32), off);
      block.writeUInt32BE(b % 2 ** 32, off + 4);
    } else block.writeUInt32BE(b, off);
  });
  if (hasCsumV2orV3(sb)) block.writeUInt32BE(crc32cWithHole(crc32c(0xffffffff, sb.uuid), block, block.length - JBD2_TAIL_BYTES), block.length - JBD2_TAIL_BYTES);
  return block;
}

function writeHeader(block: Buffer, type: number, sequence: number): void {
  block.writeUInt32BE(JBD2_MAGIC, 0);
  block.writeUInt32BE(type, 4);
  block.writeUInt32BE(sequence >>> 0, 8);
}
