// The o2hb disk heartbeat block: one sector per node number in a heartbeat region, byte-compatible
// with the Linux kernel's o2hb (fs/ocfs2/cluster) and decoded by `debugfs.ocfs2 -R hb`.
// Facts: reference/ocfs2.md §4.2-4.3 and §11 (checked against the real kernel).
//
// On-disk layout (little-endian), the one place it is written down in sanbox:
//
// | off  | size | field         | meaning                                                          |
// |------|------|---------------|------------------------------------------------------------------|
// | 0x00 | 8    | hb_seq        | the writer's sequence; the kernel writes wall-clock seconds.     |
// |      |      |               | 0 means "never written" (a free slot); writers never write 0.    |
// | 0x08 | 1    | hb_node       | the writer's node number (0..254)                                |
// | 0x09 | 3    | pad           | zero                                                             |
// | 0x0C | 4    | hb_cksum      | crc32_le(seed 0, no inversion) of the whole sector, field zeroed |
// | 0x10 | 8    | hb_generation | random non-zero per join; 0 = "I left cleanly"                   |
// | 0x18 | 4    | hb_dead_ms    | the writer's dead threshold in ms (kernel: 62000)                |
// | 0x1C | –    | zero to the end of the sector                                                    |
//
// Pure codec: no fs, no clock. The caller supplies seq and generation.

import { FormatError } from '../errors.js';
import { formatFail, hex32, type Where } from './where.js';
import { crc32LeWithHole } from './crc32.js';

/** Device name in messages when the Where names none. */
const DEVICE = 'heartbeat';
/** Size of the fixed fields; the rest of the sector is zero (reference/ocfs2.md §4.2). */
export const O2HB_FIELDS_BYTES = 0x1c;
/**
 * O2NM_MAX_NODES, the o2cb node manager's limit (reference/ocfs2.md §4.6): node numbers are
 * 0..254 and an o2hb region has 255 slots. sanbox's one node-count limit: cluster images, node
 * records, reservation initiators, lockspaces and ocfs2 slots all derive theirs from it.
 */
export const O2NM_MAX_NODES = 255;

/** A valid node number: an integer in 0..O2NM_MAX_NODES-1. */
export function isNodeId(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n < O2NM_MAX_NODES;
}
/** A heartbeat slot is one logical sector: a power of two from 512 to 4096 (§4.1). */
export const O2HB_BLOCK_BYTES_MIN = 512;
export const O2HB_BLOCK_BYTES_MAX = 4096;

const OFF_SEQ = 0x00;
const OFF_NODE = 0x08;
const OFF_PAD = 0x09;
const OFF_CKSUM = 0x0c;
const OFF_GENERATION = 0x10;
const OFF_DEAD_MS = 0x18;

const U64_MAX = (1n << 64n) - 1n;
const U32_MAX = 0xffff_ffff;

export interface O2hbBlock {
  /** u64; 0 = free slot. bigint because kernel seconds and our counters must round-trip exactly. */
  seq: bigint;
  nodeId: number;
  /** u64; 0 = left cleanly. */
  generation: bigint;
  deadMs: number;
}

export interface DecodedO2hbBlock extends O2hbBlock {
  /** The checksum stored at 0x0C. */
  cksumStored: number;
  /** The checksum computed over the sector with 0x0C zeroed. */
  cksumComputed: number;
  /** True when the stored and computed checksums agree. */
  cksumValid: boolean;
  /** True when the pad bytes and the tail of the sector are zero, as every writer leaves them. */
  tailZero: boolean;
}

export type { Where } from './where.js';

export function isValidBlockBytes(blockBytes: number): boolean {
  return (
    Number.isInteger(blockBytes) &&
    blockBytes >= O2HB_BLOCK_BYTES_MIN &&
    blockBytes <= O2HB_BLOCK_BYTES_MAX &&
    (blockBytes & (blockBytes - 1)) === 0
  );
}

function checkBlockBytes(blockBytes: number, where: Where): void {
  if (!isValidBlockBytes(blockBytes)) {
    formatFail(where, 0, `heartbeat block of ${blockBytes} bytes; it must be a power of two from ${O2HB_BLOCK_BYTES_MIN} to ${O2HB_BLOCK_BYTES_MAX}`, DEVICE);
  }
}

/** Checksum of a heartbeat sector: crc32_le(0) over the whole sector with hb_cksum taken as zero. */
export function o2hbChecksum(sector: Uint8Array): number {
  return crc32LeWithHole(0, sector, OFF_CKSUM);
}

/**
 * Encodes one heartbeat sector. The whole sector is cleared, the fields filled and the checksum
 * computed last, as the kernel does (§4.2). Throws FormatError on out-of-range fields, so a bad
 * value never reaches the disk.
 */
export function encodeO2hbBlock(block: O2hbBlock, blockBytes: number): Buffer {
  checkBlockBytes(blockBytes, {});
  if (block.seq < 0n || block.seq > U64_MAX) throw new FormatError(`heartbeat: hb_seq ${block.seq} does not fit in 64 bits`);
  if (block.generation < 0n || block.generation > U64_MAX) {
    throw new FormatError(`heartbeat: hb_generation ${block.generation} does not fit in 64 bits`);
  }
  if (!isNodeId(block.nodeId)) {
    throw new FormatError(`heartbeat: node number ${block.nodeId} is outside 0..${O2NM_MAX_NODES - 1}`);
  }
  if (!Number.isInteger(block.deadMs) || block.deadMs < 0 || block.deadMs > U32_MAX) {
    throw new FormatError(`heartbeat: hb_dead_ms ${block.deadMs} does not fit in 32 bits`);
  }
  const buf = Buffer.alloc(blockBytes);
  buf.writeBigUInt64LE(block.seq, OFF_SEQ);
  buf.writeUInt8(block.nodeId, OFF_NODE);
  buf.writeBigUInt64LE(block.generation, OFF_GENERATION);
  buf.writeUInt32LE(block.deadMs, OFF_DEAD_MS);
  buf.writeUInt32LE(o2hbChecksum(buf), OFF_CKSUM);
  return buf;
}

/**
 * Decodes one heartbeat sector without judging it: liveness code needs to see a bad checksum
 * (the kernel counts it as a missed sample on a live slot, ignores it on a dead one, §4.5),
 * so a bad checksum is reported in the result, not thrown. Throws FormatError only when the
 * buffer is not a valid heartbeat sector size.
 */
export function decodeO2hbBlock(sector: Buffer, where: Where = {}): DecodedO2hbBlock {
  checkBlockBytes(sector.length, where);
  const cksumStored = sector.readUInt32LE(OFF_CKSUM);
  const cksumComputed = o2hbChecksum(sector);
  let tailZero = sector[OFF_PAD] === 0 && sector[OFF_PAD + 1] === 0 && sector[OFF_PAD + 2] === 0;
  for (let i = O2HB_FIELDS_BYTES; tailZero && i < sector.length; i++) if (sector[i] !== 0) tailZero = false;
  return {
    seq: sector.readBigUInt64LE(OFF_SEQ),
    nodeId: sector.readUInt8(OFF_NODE),
    generation: sector.readBigUInt64LE(OFF_GENERATION),
    deadMs: sector.readUInt32LE(OFF_DEAD_MS),
    cksumStored,
    cksumComputed,
    cksumValid: cksumStored === cksumComputed,
    tailZero,
  };
}

/**
 * Decodes and validates one heartbeat sector: checksum, node number range, and (when
 * `expectNodeId` is given) that the block belongs to that slot. Throws a FormatError naming the
 * device and byte offset.
 */
export function parseO2hbBlock(sector: Buffer, where: Where = {}, expectNodeId?: number): DecodedO2hbBlock {
  const b = decodeO2hbBlock(sector, where);
  if (!b.cksumValid) {
    formatFail(where, OFF_CKSUM, `heartbeat block has a bad checksum: stored 0x${hex32(b.cksumStored)}, computed 0x${hex32(b.cksumComputed)}`, DEVICE);
  }
  if (b.nodeId >= O2NM_MAX_NODES) formatFail(where, OFF_NODE, `heartbeat block names node ${b.nodeId}, outside 0..${O2NM_MAX_NODES - 1}`, DEVICE);
  // An all-zero sector (seq 0) is a free slot whatever its node field; only a written block must
  // carry its own slot's number.
  if (expectNodeId !== undefined && b.seq !== 0n && b.nodeId !== expectNodeId) {
    formatFail(where, OFF_NODE, `heartbeat block is in slot ${expectNodeId} but names node ${b.nodeId}`, DEVICE);
  }
  return b;
}

export { hex32, hex64 } from './where.js';
