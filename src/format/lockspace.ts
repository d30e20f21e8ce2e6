// The lockspace region: sanbox's own on-disk format for the disk-only lock manager (src/dlm).
// Pure codecs and layout arithmetic; no fs, no clock. docs/lockspace.md explains the protocol;
// THIS file is the one place the byte layout is written down.
//
// Region layout (every record starts on a sector boundary and fills exactly one sector; all
// integers little-endian; S = the device's logical sector size, 512 or 4096):
//
//   sector 0                                   lockspace header (written once, by format)
//   sectors 1 .. maxNodes                      node header of node 0 .. maxNodes-1
//   then maxNodes * locksPerNode sectors       lock records; node n owns [n*locksPerNode, (n+1)*locksPerNode)
//   then maxNodes * lvbsPerNode sectors        value-block records; node n owns its own run likewise
//
// Single-writer sectors: node n writes only its node header, its lock records and its value-block
// records. Everyone reads everything. A sector that is all zeros was never written (a fresh region
// is sparse zeros) and reads as "free"; every written record has a magic and a CRC.
//
// Common record framing (first 12 and last 4 bytes of the first 512 bytes of the sector):
//
// | off | size | field   | meaning                                                           |
// |-----|------|---------|-------------------------------------------------------------------|
// | 0   | 4    | magic   | 'SBLH' header, 'SBLN' node header, 'SBLK' lock, 'SBLV' value block |
// | 4   | 2    | version | LOCKSPACE_VERSION (1)                                              |
// | 6   | 2    | pad     | zero                                                               |
// | 8   | 4    | owner   | node id of the only writer (header: 0xFFFFFFFF)                    |
// | 508 | 4    | crc     | CRC-32 (zlib polynomial, crc-32 package) of bytes 0..507           |
// Bytes 512..S-1 of a 4096-byte sector are zero and not covered.
//
// Lockspace header ('SBLH'):
// | 12 | 4  | sectorSizeBytes | must equal the device's                                       |
// | 16 | 4  | maxNodes        | node ids 0..maxNodes-1                                         |
// | 20 | 4  | locksPerNode    | lock record sectors per node                                   |
// | 24 | 4  | lvbsPerNode     | value-block record sectors per node                            |
// | 28 | 4  | lvbLenBytes     | value block length, multiple of 8, <= LVB_LEN_MAX              |
// | 32 | 1  | nameLen         | lockspace name length                                          |
// | 33 | 64 | name            | lockspace name (bytes beyond nameLen zero)                     |
//
// Node header ('SBLN'):
// | 12 | 4  | nodeId     | = owner                                                            |
// | 16 | 8  | generation | the incarnation that wrote this node's records (membership's)     |
// | 24 | 8  | seq        | bumped on every write by the node (display only)                  |
// | 32 | 4  | pid        | process id of the writer (display only)                            |
// | 36 | 8  | startedMs  | wall-clock ms of the join (display only; never compared)           |
//
// Lock record ('SBLK'), one per lock the node has (granted, converting or waiting):
// | 12 | 4  | nodeId        | = owner                                                          |
// | 16 | 8  | generation    | incarnation of the writer; records of a fenced incarnation are ignored |
// | 24 | 8  | seq           | bumped on every write of this record (display only)            |
// | 32 | 1  | state         | 0 free, 1 waiting (new request), 2 converting, 3 granted         |
// | 33 | 1  | grantedMode   | 0..5 (NL..EX); 0xFF none (waiting)                              |
// | 34 | 1  | requestedMode | 0..5; 0xFF none (granted)                                        |
// | 35 | 1  | flags         | bit0 CLAIM: the writer asserts requestedMode tentatively (grant rule) |
// | 36 | 4  | lockId        | the node's lock id (display, cross-reference)                    |
// | 40 | 8  | ticket        | bakery ticket: queue position among requests on the resource     |
// | 48 | 8  | lvbSeqAtGrant | value-block sequence current when the granted mode was granted   |
// | 56 | 4  | pid           | process that owns the lock (display only)                        |
// | 60 | 1  | nameLen       | resource name length 1..64                                       |
// | 61 | 64 | name          | resource name (binary allowed)                                   |
//
// Value-block record ('SBLV'), one per resource the node has written a value block for:
// | 12 | 4  | nodeId        | = owner                                                          |
// | 16 | 8  | generation    | incarnation of the writer (display only: value blocks outlive it) |
// | 24 | 8  | seq           | bumped on every write of this record                             |
// | 32 | 1  | flags         | bit0 HAS_VALUE, bit1 HAS_INVALIDATION                            |
// | 33 | 1  | nameLen       | resource name length 1..64                                       |
// | 34 | 64 | name          | resource name                                                    |
// | 98 | 2  | pad           | zero                                                             |
// | 100| 4  | lvbLenBytes   | = the header's                                                    |
// | 104| 8  | valueSeq      | sequence number of the value written (HAS_VALUE)                 |
// | 112| 8  | invalidSeq    | "every value with seq <= this is invalid" (HAS_INVALIDATION)     |
// | 120| 64 | value         | the value block (lvbLenBytes used, rest zero)                    |

import { crc32Zlib } from './crc32.js';
import { formatFail, type Where } from './where.js';
import { O2NM_MAX_NODES } from './o2hb-block.js';

export const LOCKSPACE_VERSION = 1;
/** Bytes of a sector covered by a record and its CRC; the smallest sector we support. */
export const RECORD_BYTES = 512;
/** DLM_RESNAME_MAXLEN and DLM_LOCKSPACE_LEN (reference/locking.md §2.1). */
export const RESOURCE_NAME_BYTES_MAX = 64;
export const LOCKSPACE_NAME_BYTES_MAX = 64;
/** o2dlm uses 64-byte value blocks, libdlm 32 (§2.4); 64 is the most we store. */
export const LVB_LEN_BYTES_MAX = 64;
/** Default value block length: libdlm's DLM_LVB_LEN (§2.4). */
export const LVB_LEN_BYTES_DEFAULT = 32;
/** Bounds that keep a region a sensible size (a full scan reads every lock record). */
export const LOCKS_PER_NODE_MAX = 4096;
export const LVBS_PER_NODE_MAX = 4096;

const MAGIC_HEADER = 0x484c4253; // 'SBLH' read as little-endian u32
const MAGIC_NODE = 0x4e4c4253; // 'SBLN'
const MAGIC_LOCK = 0x4b4c4253; // 'SBLK'
const MAGIC_LVB = 0x564c4253; // 'SBLV'
const OWNER_NONE = 0xffff_ffff;
const OFF_CRC = RECORD_BYTES - 4;
const U64_MAX = (1n << 64n) - 1n;
const MODE_NONE = 0xff;

export type LockState = 'free' | 'waiting' | 'converting' | 'granted';
const STATES: readonly LockState[] = ['free', 'waiting', 'converting', 'granted'];


export interface LockspaceHeader {
  sectorSizeBytes: number;
  maxNodes: number;
  locksPerNode: number;
  lvbsPerNode: number;
  lvbLenBytes: number;
  name: string;
}

export interface NodeHeader {
  nodeId: number;
  generation: bigint;
  seq: bigint;
  pid: number;
  startedMs: number;
}

export interface LockRecord {
  nodeId: number;
  generation: bigint;
  seq: bigint;
  state: LockState;
  /** null when waiting (no mode held). */
  grantedMode: number | null;
  /** null when granted (nothing requested). */
  requestedMode: number | null;
  /** The grant rule's tentative claim on requestedMode (docs/lockspace.md). */
  claim: boolean;
  lockId: number;
  ticket: bigint;
  lvbSeqAtGrant: bigint;
  pid: number;
  resource: Buffer;
}

export interface LvbRecord {
  nodeId: number;
  generation: bigint;
  seq: bigint;
  /** Resource the value belongs to. */
  resource: Buffer;
  /** Set when the record carries a written value. */
  valueSeq: bigint | null;
  value: Buffer;
  /** Set when the record marks values up to this sequence invalid. */
  invalidSeq: bigint | null;
}

export interface LockspaceLayout {
  header: LockspaceHeader;
  sectorSizeBytes: number;
  nodeHeaderOffsetBytes: number;
  lockAreaOffsetBytes: number;
  lockAreaBytes: number;
  lvbAreaOffsetBytes: number;
  lvbAreaBytes: number;
  totalBytes: number;
}

/** Byte offsets of every area, derived from the header alone. */
export function lockspaceLayout(header: LockspaceHeader): LockspaceLayout {
  const s = header.sectorSizeBytes;
  const nodeHeaderOffsetBytes = s;
  const lockAreaOffsetBytes = nodeHeaderOffsetBytes + header.maxNodes * s;
  const lockAreaBytes = header.maxNodes * header.locksPerNode * s;
  const lvbAreaOffsetBytes = lockAreaOffsetBytes + lockAreaBytes;
  const lvbAreaBytes = header.maxNodes * header.lvbsPerNode * s;
  return {
    header,
    sectorSizeBytes: s,
    nodeHeaderOffsetBytes,
    lockAreaOffsetBytes,
    lockAreaBytes,
    lvbAreaOffsetBytes,
    lvbAreaBytes,
    totalBytes: lvbAreaOffsetBytes + lvbAreaBytes,
  };
}

export function nodeHeaderOffset(l: LockspaceLayout, nodeId: number): number {
  return l.nodeHeaderOffsetBytes + nodeId * l.sectorSizeBytes;
}
export function lockRecordOffset(l: LockspaceLayout, nodeId: number, slot: number): number {
  return l.lockAreaOffsetBytes + (nodeId * l.header.locksPerNode + slot) * l.sectorSizeBytes;
}
export function lvbRecordOffset(l: LockspaceLayout, nodeId: number, slot: number): number {
  return l.lvbAreaOffsetBytes + (nodeId * l.header.lvbsPerNode + slot) * l.sectorSizeBytes;
}

// ---------------------------------------------------------------------------------------------
// Framing

function frame(sectorSizeBytes: number, magic: number, owner: number): Buffer {
  const b = Buffer.alloc(sectorSizeBytes);
  b.writeUInt32LE(magic, 0);
  b.writeUInt16LE(LOCKSPACE_VERSION, 4);
  b.writeUInt32LE(owner, 8);
  return b;
}

function seal(b: Buffer): Buffer {
  b.writeUInt32LE(crc32Zlib(b.subarray(0, OFF_CRC)), OFF_CRC);
  return b;
}

/** True when the first RECORD_BYTES of the sector are zero: a record never written. */
export function isBlankRecord(sector: Buffer): boolean {
  return sector.length >= RECORD_BYTES && ZERO_RECORD.compare(sector, 0, RECORD_BYTES, 0, RECORD_BYTES) === 0;
}
const ZERO_RECORD = Buffer.alloc(RECORD_BYTES);

function fail(where: Where, what: string): never {
  return formatFail(where, 0, `lockspace ${what}`, 'lockspace');
}

/** Checks size, CRC, magic, version, padding and owner; returns nothing or throws FormatError. */
function unseal(b: Buffer, magic: number, kind: string, where: Where): void {
  if (b.length < RECORD_BYTES) fail(where, `${kind} record too short (${b.length} bytes)`);
  const stored = b.readUInt32LE(OFF_CRC);
  const computed = crc32Zlib(b.subarray(0, OFF_CRC));
  // CRC first: a torn or garbled sector must be reported as such (the caller retries), not as
  // "wrong magic".
  if (stored !== computed) fail(where, `${kind} record checksum mismatch (stored ${hex(stored)}, computed ${hex(computed)})`);
  const m = b.readUInt32LE(0);
  if (m !== magic) fail(where, `${kind} record has bad magic ${hex(m)} (expected ${hex(magic)})`);
  const v = b.readUInt16LE(4);
  if (v !== LOCKSPACE_VERSION) fail(where, `${kind} record has unsupported version ${v} (expected ${LOCKSPACE_VERSION})`);
  if (b.readUInt16LE(6) !== 0) fail(where, `${kind} record has non-zero padding`);
}

function hex(n: number): string {
  return '0x' + n.toString(16).padStart(8, '0');
}

function checkU64(v: bigint, field: string): void {
  if (v < 0n || v > U64_MAX) throw new RangeError(`${field} out of u64 range: ${v}`);
}

function putName(b: Buffer, offLen: number, offName: number, name: Buffer, max: number, what: string): void {
  if (name.length < 1 || name.length > max) throw new RangeError(`${what} must be 1..${max} bytes, not ${name.length}`);
  b.writeUInt8(name.length, offLen);
  name.copy(b, offName);
}

function getName(b: Buffer, offLen: number, offName: number, max: number, what: string, where: Where, allowEmpty = false): Buffer {
  const len = b.readUInt8(offLen);
  if (len > max || (len === 0 && !allowEmpty)) fail(where, `${what} length ${len} out of range 1..${max}`);
  for (let i = offName + len; i < offName + max; i++) if (b[i] !== 0) fail(where, `${what} has bytes beyond its length`);
  return Buffer.from(b.subarray(offName, offName + len));
}

// ---------------------------------------------------------------------------------------------
// Lockspace header

export function validateHeaderFields(h: LockspaceHeader): string | undefined {
  if (h.sectorSizeBytes !== 512 && h.sectorSizeBytes !== 4096) return `sector size ${h.sectorSizeBytes} is not 512 or 4096`;
  if (!Number.isInteger(h.maxNodes) || h.maxNodes < 1 || h.maxNodes > O2NM_MAX_NODES) return `maxNodes ${h.maxNodes} out of range 1..${O2NM_MAX_NODES}`;
  if (!Number.isInteger(h.locksPerNode) || h.locksPerNode < 1 || h.locksPerNode > LOCKS_PER_NODE_MAX) return `locksPerNode ${h.locksPerNode} out of range 1..${LOCKS_PER_NODE_MAX}`;
  if (!Number.isInteger(h.lvbsPerNode) || h.lvbsPerNode < 1 || h.lvbsPerNode > LVBS_PER_NODE_MAX) return `lvbsPerNode ${h.lvbsPerNode} out of range 1..${LVBS_PER_NODE_MAX}`;
  if (!Number.isInteger(h.lvbLenBytes) || h.lvbLenBytes < 8 || h.lvbLenBytes > LVB_LEN_BYTES_MAX || h.lvbLenBytes % 8 !== 0) return `value block length ${h.lvbLenBytes} is not a multiple of 8 in 8..${LVB_LEN_BYTES_MAX}`;
  const nameBytes = Buffer.byteLength(h.name);
  if (nameBytes < 1 || nameBytes > LOCKSPACE_NAME_BYTES_MAX) return `lockspace name must be 1..${LOCKSPACE_NAME_BYTES_MAX} bytes`;
  return undefined;
}

export function encodeLockspaceHeader(h: LockspaceHeader): Buffer {
  const why = validateHeaderFields(h);
  if (why !== undefined) throw new RangeError(why);
  const b = frame(h.sectorSizeBytes, MAGIC_HEADER, OWNER_NONE);
  b.writeUInt32LE(h.sectorSizeBytes, 12);
  b.writeUInt32LE(h.maxNodes, 16);
  b.writeUInt32LE(h.locksPerNode, 20);
  b.writeUInt32LE(h.lvbsPerNode, 24);
  b.writeUInt32LE(h.lvbLenBytes, 28);
  putName(b, 32, 33, Buffer.from(h.name), LOCKSPACE_NAME_BYTES_MAX, 'lockspace name');
  return seal(b);
}

export function decodeLockspaceHeader(b: Buffer, where: Where): LockspaceHeader {
  if (b.length >= RECORD_BYTES && isBlankRecord(b)) fail(where, 'header missing (region is not formatted)');
  unseal(b, MAGIC_HEADER, 'header', where);
  if (b.readUInt32LE(8) !== OWNER_NONE) fail(where, 'header has a bad owner field');
  const h: LockspaceHeader = {
    sectorSizeBytes: b.readUInt32LE(12),
    maxNodes: b.readUInt32LE(16),
    locksPerNode: b.readUInt32LE(20),
    lvbsPerNode: b.readUInt32LE(24),
    lvbLenBytes: b.readUInt32LE(28),
    name: getName(b, 32, 33, LOCKSPACE_NAME_BYTES_MAX, 'lockspace name', where).toString(),
  };
  const why = validateHeaderFields(h);
  if (why !== undefined) fail(where, `header: ${why}`);
  return h;
}

// ---------------------------------------------------------------------------------------------
// Node header

export function encodeNodeHeader(n: NodeHeader, sectorSizeBytes: number): Buffer {
  checkU64(n.generation, 'generation');
  checkU64(n.seq, 'seq');
  const b = frame(sectorSizeBytes, MAGIC_NODE, n.nodeId);
  b.writeUInt32LE(n.nodeId, 12);
  b.writeBigUInt64LE(n.generation, 16);
  b.writeBigUInt64LE(n.seq, 24);
  b.writeUInt32LE(n.pid >>> 0, 32);
  b.writeBigUInt64LE(BigInt(Math.max(0, Math.floor(n.startedMs))), 36);
  return seal(b);
}

/** Returns undefined for a never-written (all-zero) sector. */
export function decodeNodeHeader(b: Buffer, expectNodeId: number, where: Where): NodeHeader | undefined {
  if (b.length >= RECORD_BYTES && isBlankRecord(b)) return undefined;
  unseal(b, MAGIC_NODE, 'node header', where);
  const owner = b.readUInt32LE(8);
  const nodeId = b.readUInt32LE(12);
  if (owner !== expectNodeId || nodeId !== expectNodeId) fail(where, `node header in node ${expectNodeId}'s sector names node ${nodeId}`);
  return {
    nodeId,
    generation: b.readBigUInt64LE(16),
    seq: b.readBigUInt64LE(24),
    pid: b.readUInt32LE(32),
    startedMs: Number(b.readBigUInt64LE(36)),
  };
}

// ---------------------------------------------------------------------------------------------
// Lock record

export function encodeLockRecord(r: LockRecord, sectorSizeBytes: number): Buffer {
  checkU64(r.generation, 'generation');
  checkU64(r.seq, 'seq');
  checkU64(r.ticket, 'ticket');
  checkU64(r.lvbSeqAtGrant, 'lvbSeqAtGrant');
  const why = lockRecordProblem(r.state, r.grantedMode, r.requestedMode, r.claim);
  if (why !== undefined) throw new RangeError(`lock record: ${why}`);
  const b = frame(sectorSizeBytes, MAGIC_LOCK, r.nodeId);
  b.writeUInt32LE(r.nodeId, 12);
  b.writeBigUInt64LE(r.generation, 16);
  b.writeBigUInt64LE(r.seq, 24);
  b.writeUInt8(STATES.indexOf(r.state), 32);
  b.writeUInt8(r.grantedMode ?? MODE_NONE, 33);
  b.writeUInt8(r.requestedMode ?? MODE_NONE, 34);
  b.writeUInt8(r.claim ? 1 : 0, 35);
  b.writeUInt32LE(r.lockId >>> 0, 36);
  b.writeBigUInt64LE(r.ticket, 40);
  b.writeBigUInt64LE(r.lvbSeqAtGrant, 48);
  b.writeUInt32LE(r.pid >>> 0, 56);
  if (r.state === 'free') {
    // A free record keeps no name: it can be reused for any resource.
    if (r.resource.length > RESOURCE_NAME_BYTES_MAX) throw new RangeError('resource name too long');
    b.writeUInt8(r.resource.length, 60);
    r.resource.copy(b, 61);
  } else {
    putName(b, 60, 61, r.resource, RESOURCE_NAME_BYTES_MAX, 'resource name');
  }
  return seal(b);
}

/** The combinations of state and modes the grant rule can produce; anything else is corrupt. */
function lockRecordProblem(state: LockState, granted: number | null, requested: number | null, claim: boolean): string | undefined {
  const ok = (m: number | null) => m !== null && Number.isInteger(m) && m >= 0 && m <= 5;
  switch (state) {
    case 'free':
      return claim ? 'a free record has a claim' : undefined;
    case 'waiting':
      return granted === null && ok(requested) ? undefined : 'a waiting record needs a requested mode and no granted mode';
    case 'converting':
      return ok(granted) && ok(requested) && granted !== requested ? undefined : 'a converting record needs two different modes';
    case 'granted':
      return ok(granted) && requested === null && !claim ? undefined : 'a granted record needs a granted mode only';
  }
}

/** Returns undefined for a never-written (all-zero) sector. */
export function decodeLockRecord(b: Buffer, expectNodeId: number, where: Where): LockRecord | undefined {
  if (b.length >= RECORD_BYTES && isBlankRecord(b)) return undefined;
  unseal(b, MAGIC_LOCK, 'lock', where);
  const owner = b.readUInt32LE(8);
  const nodeId = b.readUInt32LE(12);
  if (owner !== expectNodeId || nodeId !== expectNodeId) fail(where, `lock record in node ${expectNodeId}'s area names node ${nodeId}`);
  const stateIndex = b.readUInt8(32);
  const state = STATES[stateIndex];
  if (state === undefined) fail(where, `lock record has unknown state ${stateIndex}`);
  const g = b.readUInt8(33);
  const q = b.readUInt8(34);
  const flags = b.readUInt8(35);
  if ((flags & ~1) !== 0) fail(where, `lock record has unknown flags 0x${flags.toString(16)}`);
  const grantedMode = g === MODE_NONE ? null : g;
  const requestedMode = q === MODE_NONE ? null : q;
  const claim = (flags & 1) !== 0;
  const why = lockRecordProblem(state, grantedMode, requestedMode, claim);
  if (why !== undefined) fail(where, `lock record: ${why}`);
  const resource = getName(b, 60, 61, RESOURCE_NAME_BYTES_MAX, 'resource name', where, state === 'free');
  return {
    nodeId,
    generation: b.readBigUInt64LE(16),
    seq: b.readBigUInt64LE(24),
    state,
    grantedMode,
    requestedMode,
    claim,
    lockId: b.readUInt32LE(36),
    ticket: b.readBigUInt64LE(40),
    lvbSeqAtGrant: b.readBigUInt64LE(48),
    pid: b.readUInt32LE(56),
    resource,
  };
}

// ---------------------------------------------------------------------------------------------
// Value-block record

export function encodeLvbRecord(r: LvbRecord, sectorSizeBytes: number, lvbLenBytes: number): Buffer {
  checkU64(r.generation, 'generation');
  checkU64(r.seq, 'seq');
  if (r.valueSeq !== null) checkU64(r.valueSeq, 'valueSeq');
  if (r.invalidSeq !== null) checkU64(r.invalidSeq, 'invalidSeq');
  if (r.value.length > lvbLenBytes) throw new RangeError(`value block of ${r.value.length} bytes exceeds ${lvbLenBytes}`);
  if (lvbLenBytes > LVB_LEN_BYTES_MAX) throw new RangeError('value block length too large');
  const b = frame(sectorSizeBytes, MAGIC_LVB, r.nodeId);
  b.writeUInt32LE(r.nodeId, 12);
  b.writeBigUInt64LE(r.generation, 16);
  b.writeBigUInt64LE(r.seq, 24);
  b.writeUInt8((r.valueSeq !== null ? 1 : 0) | (r.invalidSeq !== null ? 2 : 0), 32);
  putName(b, 33, 34, r.resource, RESOURCE_NAME_BYTES_MAX, 'resource name');
  b.writeUInt32LE(lvbLenBytes, 100);
  b.writeBigUInt64LE(r.valueSeq ?? 0n, 104);
  b.writeBigUInt64LE(r.invalidSeq ?? 0n, 112);
  r.value.copy(b, 120);
  return seal(b);
}

/** Returns undefined for a never-written (all-zero) sector. */
export function decodeLvbRecord(b: Buffer, expectNodeId: number, lvbLenBytes: number, where: Where): LvbRecord | undefined {
  if (b.length >= RECORD_BYTES && isBlankRecord(b)) return undefined;
  unseal(b, MAGIC_LVB, 'value block', where);
  const owner = b.readUInt32LE(8);
  const nodeId = b.readUInt32LE(12);
  if (owner !== expectNodeId || nodeId !== expectNodeId) fail(where, `value block record in node ${expectNodeId}'s area names node ${nodeId}`);
  const flags = b.readUInt8(32);
  if ((flags & ~3) !== 0 || flags === 0) fail(where, `value block record has bad flags 0x${flags.toString(16)}`);
  const resource = getName(b, 33, 34, RESOURCE_NAME_BYTES_MAX, 'resource name', where);
  if (b.readUInt16LE(98) !== 0) fail(where, 'value block record has non-zero padding');
  const len = b.readUInt32LE(100);
  if (len !== lvbLenBytes) fail(where, `value block record has length ${len}, lockspace says ${lvbLenBytes}`);
  for (let i = 120 + len; i < 120 + LVB_LEN_BYTES_MAX; i++) if (b[i] !== 0) fail(where, 'value block record has bytes beyond its length');
  const valueSeq = (flags & 1) !== 0 ? b.readBigUInt64LE(104) : null;
  const invalidSeq = (flags & 2) !== 0 ? b.readBigUInt64LE(112) : null;
  if (valueSeq === null && b.readBigUInt64LE(104) !== 0n) fail(where, 'value block record has a sequence but no value flag');
  if (invalidSeq === null && b.readBigUInt64LE(112) !== 0n) fail(where, 'value block record has an invalidation sequence but no flag');
  return {
    nodeId,
    generation: b.readBigUInt64LE(16),
    seq: b.readBigUInt64LE(24),
    resource,
    valueSeq,
    value: Buffer.from(b.subarray(120, 120 + len)),
    invalidSeq,
  };
}
