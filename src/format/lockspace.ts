// The lockspace region: sanbox's own on-disk format for the disk-only lock manager (src/dlm).
// Pure codecs and layout arithmetic; no fs, no clock. docs/lockspace.md explains the protocol;
// THIS file is the one place the byte layout is written down.
//
// Version 2 organises the region BY RESOURCE, so that a request touches only its resource's
// sectors: a resource name hashes to a bucket, and a bucket is one row of per-node cells.
//
// Region layout (every record starts on a sector boundary and fills exactly one sector; all
// integers little-endian; S = the device's logical sector size, 512 or 4096; N = maxNodes;
// B = bucketCount; rows = B + 1):
//
//   sector 0                              lockspace header (written once, by format)
//   sectors 1 .. N                        node header of node 0 .. N-1
//   lock area: rows x N sectors           lock cell (row r, node n) at lockArea + (r*N + n)*S
//   value area: rows x N sectors          value cell (row r, node n) at valueArea + (r*N + n)*S
//
// Buckets and the overflow rule: resource R hashes to bucket h = crc32(R) mod B (zlib CRC-32 of
// the name bytes). Every entry any node has for R lives in row h or row h+1 (the WINDOW of R; row
// B exists only as bucket B-1's overflow row). A node puts a new entry for R in its cell of row h
// if that cell has a free entry, else in its cell of row h+1, else the request fails with ENOSPC
// naming both rows. So a reader of R reads exactly the window: 2 x N sectors, contiguous, one
// I/O, whatever the number of locks held elsewhere. Entries of other resources that share a cell
// ("bucket sharing") are read with it and ignored by name.
//
// Single-writer sectors: node n writes only its node header and its own cells (column n of both
// areas). Everyone reads everything. A sector that is all zeros was never written (a fresh region
// is sparse zeros) and reads as a cell with no entries; every written record has a magic and a CRC.
//
// Common record framing (first 12 and last 4 bytes of the first 512 bytes of the sector):
//
// | off | size | field   | meaning                                                           |
// |-----|------|---------|-------------------------------------------------------------------|
// | 0   | 4    | magic   | 'SBLH' header, 'SBLN' node header, 'SBLC' lock cell, 'SBLW' value cell |
// | 4   | 2    | version | LOCKSPACE_VERSION (2); version 1 (one run of lock records per node) is refused |
// | 6   | 2    | pad     | zero                                                               |
// | 8   | 4    | owner   | node id of the only writer (header: 0xFFFFFFFF)                    |
// | 508 | 4    | crc     | CRC-32 (zlib polynomial, crc-32 package) of bytes 0..507           |
// Bytes 512..S-1 of a 4096-byte sector are zero and not covered.
//
// Lockspace header ('SBLH'):
// | 12 | 4  | sectorSizeBytes | must equal the device's                                       |
// | 16 | 4  | maxNodes        | node ids 0..maxNodes-1                                         |
// | 20 | 4  | locksPerNode    | the capacity the region was sized for (display; B derives from it) |
// | 24 | 4  | bucketCount     | B = locksPerNode x BUCKETS_PER_LOCK                            |
// | 28 | 4  | lvbLenBytes     | value block length, multiple of 8, <= LVB_LEN_BYTES_MAX        |
// | 32 | 1  | nameLen         | lockspace name length                                          |
// | 33 | 64 | name            | lockspace name (bytes beyond nameLen zero)                     |
//
// Node header ('SBLN'):
// | 12 | 4  | nodeId     | = owner                                                            |
// | 16 | 8  | generation | the incarnation that wrote this node's cells (membership's)       |
// | 24 | 8  | seq        | bumped on every write by the node (display only)                  |
// | 32 | 4  | pid        | process id of the writer (display only)                            |
// | 36 | 8  | startedMs  | wall-clock ms of the join (display only; never compared)           |
//
// Cell header, both kinds:
// | 12 | 4  | row        | the row this cell is in (a misdirected write is detected)          |
// | 16 | 8  | generation | incarnation of the writer; entries of a fenced incarnation are ignored |
// | 24 | 8  | seq        | bumped on every write by the node (display only)                  |
// | 32 | 4  | param      | lock cell: LOCK_ENTRIES_PER_CELL; value cell: lvbLenBytes          |
// | 36 | .. | entries    | fixed-size entries; a free entry is all zeros                      |
//
// Lock entry (LOCK_ENTRY_BYTES = 93, LOCK_ENTRIES_PER_CELL = 5, at 36 + i*93), one per lock:
// | +0  | 1  | state         | 0 free, 1 waiting (new request), 2 converting, 3 granted        |
// | +1  | 1  | grantedMode   | 0..5 (NL..EX); 0xFF none (waiting)                              |
// | +2  | 1  | requestedMode | 0..5; 0xFF none (granted)                                        |
// | +3  | 1  | flags         | bit0 CLAIM: the writer asserts requestedMode tentatively (grant rule) |
// | +4  | 4  | lockId        | the node's lock id (display, cross-reference)                    |
// | +8  | 8  | ticket        | bakery ticket: queue position among requests on the resource     |
// | +16 | 8  | lvbSeqAtGrant | value-block sequence current when the granted mode was granted   |
// | +24 | 4  | pid           | process that owns the lock (display only)                        |
// | +28 | 1  | nameLen       | resource name length 1..64                                       |
// | +29 | 64 | name          | resource name (binary allowed; bytes beyond nameLen zero)        |
//
// Value entry (82 + lvbLenBytes bytes; lvbEntriesPerCell(lvbLen) of them: 5 for 8-byte values,
// 4 for 32, 3 for 64), one per resource the node has written a value block for:
// | +0  | 8  | valueSeq      | sequence number of the value written (HAS_VALUE)                 |
// | +8  | 8  | invalidSeq    | "every value with seq <= this is invalid" (HAS_INVALIDATION)     |
// | +16 | 1  | flags         | bit0 HAS_VALUE, bit1 HAS_INVALIDATION; 0 = free entry            |
// | +17 | 1  | nameLen       | resource name length 1..64                                       |
// | +18 | 64 | name          | resource name                                                    |
// | +82 | L  | value         | the value block                                                  |

import { crc32Zlib } from './crc32.js';
import { formatFail, type Where } from './where.js';
import { O2NM_MAX_NODES } from './o2hb-block.js';
import { isSectorSize, SECTOR_SIZES } from './sector-size.js';

export const LOCKSPACE_VERSION = 2;
/** Bytes of a sector covered by a record and its CRC; the smallest sector we support. */
export const RECORD_BYTES = 512;
/** DLM_RESNAME_MAXLEN and DLM_LOCKSPACE_LEN (reference/locking.md §2.1). */
export const RESOURCE_NAME_BYTES_MAX = 64;
export const LOCKSPACE_NAME_BYTES_MAX = 64;
/** o2dlm uses 64-byte value blocks, libdlm 32 (§2.4); 64 is the most we store. */
export const LVB_LEN_BYTES_MAX = 64;
/** Default value block length: libdlm's DLM_LVB_LEN (§2.4). */
export const LVB_LEN_BYTES_DEFAULT = 32;
/** Issue 16 asks for >= 4096 per node; 65536 keeps a 255-node region addressable (34 GB sparse). */
export const LOCKS_PER_NODE_MAX = 65536;
/** Capacity `cluster init` sizes the region for unless told otherwise (issue 16: >= 4096 per node). */
export const LOCKS_PER_NODE_DEFAULT = 4096;
/**
 * Buckets per lock of capacity. With B = 2 x locksPerNode, a node holding locksPerNode locks
 * puts Poisson(0.5) new entries on each bucket on average; its window of two cells (2 x 5 lock
 * entries, 2 x 4 value entries of 32 bytes) overflows with probability ~1e-7 per window
 * (docs/lockspace.md, "Capacity"), and test/dlm-manager checks 4096 fixed names fit.
 */
export const BUCKETS_PER_LOCK = 2;
/** Rows a resource's entries may occupy: its bucket and the next (the overflow rule). */
export const WINDOW_ROWS = 2;
export const LOCK_ENTRY_BYTES = 93;
export const CELL_HEADER_BYTES = 36;
const OFF_CRC = RECORD_BYTES - 4;
/** (508 - 36) / 93 = 5 lock entries per cell. */
export const LOCK_ENTRIES_PER_CELL = Math.floor((OFF_CRC - CELL_HEADER_BYTES) / LOCK_ENTRY_BYTES);
const LVB_ENTRY_FIXED_BYTES = 82;

const MAGIC_HEADER = 0x484c4253; // 'SBLH' read as little-endian u32
const MAGIC_NODE = 0x4e4c4253; // 'SBLN'
const MAGIC_LOCK_CELL = 0x434c4253; // 'SBLC'
const MAGIC_LVB_CELL = 0x574c4253; // 'SBLW'
const OWNER_NONE = 0xffff_ffff;
const U64_MAX = (1n << 64n) - 1n;
const MODE_NONE = 0xff;

export type LockState = 'free' | 'waiting' | 'converting' | 'granted';
const STATES: readonly LockState[] = ['free', 'waiting', 'converting', 'granted'];

export interface LockspaceHeader {
  sectorSizeBytes: number;
  maxNodes: number;
  locksPerNode: number;
  bucketCount: number;
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

/** One lock of a node on one resource (an entry of a lock cell). */
export interface LockEntry {
  state: Exclude<LockState, 'free'>;
  /** null when waiting (no mode held). */
  grantedMode: number | null;
  /** null when granted (no request pending). */
  requestedMode: number | null;
  claim: boolean;
  lockId: number;
  ticket: bigint;
  lvbSeqAtGrant: bigint;
  pid: number;
  resource: Buffer;
}

export interface LockCell {
  nodeId: number;
  row: number;
  generation: bigint;
  seq: bigint;
  /** LOCK_ENTRIES_PER_CELL positions; undefined = free. */
  entries: (LockEntry | undefined)[];
}

/** A lock entry with the cell facts a reader needs (what `dlm ls` and the manager see). */
export interface LockRecord extends LockEntry {
  nodeId: number;
  generation: bigint;
  seq: bigint;
}

export interface LvbEntry {
  resource: Buffer;
  /** Set when the entry carries a written value. */
  valueSeq: bigint | null;
  value: Buffer;
  /** Set when the entry marks values up to this sequence invalid. */
  invalidSeq: bigint | null;
}

export interface LvbCell {
  nodeId: number;
  row: number;
  generation: bigint;
  seq: bigint;
  entries: (LvbEntry | undefined)[];
}

export interface LvbRecord extends LvbEntry {
  nodeId: number;
  generation: bigint;
  seq: bigint;
}

export interface LockspaceLayout {
  header: LockspaceHeader;
  sectorSizeBytes: number;
  rows: number;
  rowBytes: number;
  nodeHeaderOffsetBytes: number;
  lockAreaOffsetBytes: number;
  lockAreaBytes: number;
  lvbAreaOffsetBytes: number;
  lvbAreaBytes: number;
  lvbEntriesPerCell: number;
  totalBytes: number;
}

export function lvbEntryBytes(lvbLenBytes: number): number {
  return LVB_ENTRY_FIXED_BYTES + lvbLenBytes;
}

export function lvbEntriesPerCell(lvbLenBytes: number): number {
  return Math.floor((OFF_CRC - CELL_HEADER_BYTES) / lvbEntryBytes(lvbLenBytes));
}

/** Byte offsets of every area, derived from the header alone. */
export function lockspaceLayout(header: LockspaceHeader): LockspaceLayout {
  const s = header.sectorSizeBytes;
  const rows = header.bucketCount + WINDOW_ROWS - 1;
  const rowBytes = header.maxNodes * s;
  const nodeHeaderOffsetBytes = s;
  const lockAreaOffsetBytes = nodeHeaderOffsetBytes + header.maxNodes * s;
  const lockAreaBytes = rows * rowBytes;
  const lvbAreaOffsetBytes = lockAreaOffsetBytes + lockAreaBytes;
  const lvbAreaBytes = rows * rowBytes;
  return {
    header,
    sectorSizeBytes: s,
    rows,
    rowBytes,
    nodeHeaderOffsetBytes,
    lockAreaOffsetBytes,
    lockAreaBytes,
    lvbAreaOffsetBytes,
    lvbAreaBytes,
    lvbEntriesPerCell: lvbEntriesPerCell(header.lvbLenBytes),
    totalBytes: lvbAreaOffsetBytes + lvbAreaBytes,
  };
}

/** The header for a capacity: the region size `cluster init` reserves is its layout's totalBytes. */
export function headerForCapacity(sectorSizeBytes: number, maxNodes: number, locksPerNode: number, over: { lvbLenBytes?: number; name?: string } = {}): LockspaceHeader {
  return {
    sectorSizeBytes,
    maxNodes,
    locksPerNode,
    bucketCount: locksPerNode * BUCKETS_PER_LOCK,
    lvbLenBytes: over.lvbLenBytes ?? LVB_LEN_BYTES_DEFAULT,
    name: over.name ?? 'sanbox',
  };
}

/** Bytes a lockspace of this capacity needs (sparse: only written cells take space). */
export function lockspaceRegionBytes(sectorSizeBytes: number, maxNodes: number, locksPerNode: number): number {
  return lockspaceLayout(headerForCapacity(sectorSizeBytes, maxNodes, locksPerNode)).totalBytes;
}

/** The largest capacity that fits a region (0 if none). Pure, so racing formatters agree. */
export function capacityForRegion(regionBytes: number, sectorSizeBytes: number, maxNodes: number): number {
  const sectors = Math.floor(regionBytes / sectorSizeBytes);
  const rows = Math.floor((sectors - 1 - maxNodes) / (2 * maxNodes));
  const buckets = rows - (WINDOW_ROWS - 1);
  return Math.max(0, Math.min(LOCKS_PER_NODE_MAX, Math.floor(buckets / BUCKETS_PER_LOCK)));
}

/** The bucket of a resource: zlib CRC-32 of its name, modulo the bucket count. */
export function bucketOf(header: LockspaceHeader, resource: Buffer): number {
  return crc32Zlib(resource) % header.bucketCount;
}

export function nodeHeaderOffset(l: LockspaceLayout, nodeId: number): number {
  return l.nodeHeaderOffsetBytes + nodeId * l.sectorSizeBytes;
}
export function lockCellOffset(l: LockspaceLayout, row: number, nodeId: number): number {
  return l.lockAreaOffsetBytes + row * l.rowBytes + nodeId * l.sectorSizeBytes;
}
export function lvbCellOffset(l: LockspaceLayout, row: number, nodeId: number): number {
  return l.lvbAreaOffsetBytes + row * l.rowBytes + nodeId * l.sectorSizeBytes;
}

// ---------------------------------------------------------------------------------------------
// Framing

/** A zeroed sector with the common framing; into `out` (a reused sector buffer) when given. */
function frame(sectorSizeBytes: number, magic: number, owner: number, out?: Buffer): Buffer {
  if (out !== undefined && out.length !== sectorSizeBytes) throw new RangeError(`output buffer of ${out.length} bytes for a ${sectorSizeBytes}-byte sector`);
  const b = out?.fill(0) ?? Buffer.alloc(sectorSizeBytes);
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

/** Checks size, CRC, magic, version, padding; returns nothing or throws FormatError. */
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
  if (v !== LOCKSPACE_VERSION) fail(where, `${kind} record has version ${v}; this sanbox reads lockspace version ${LOCKSPACE_VERSION} only`);
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

function getName(b: Buffer, offLen: number, offName: number, max: number, what: string, where: Where): Buffer {
  const len = b.readUInt8(offLen);
  if (len > max || len === 0) fail(where, `${what} length ${len} out of range 1..${max}`);
  for (let i = offName + len; i < offName + max; i++) if (b[i] !== 0) fail(where, `${what} has bytes beyond its length`);
  return Buffer.from(b.subarray(offName, offName + len));
}

function allZero(b: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Lockspace header

export function validateHeaderFields(h: LockspaceHeader): string | undefined {
  if (!isSectorSize(h.sectorSizeBytes)) return `sector size ${h.sectorSizeBytes} is not ${SECTOR_SIZES.join(' or ')}`;
  if (!Number.isInteger(h.maxNodes) || h.maxNodes < 1 || h.maxNodes > O2NM_MAX_NODES) return `maxNodes ${h.maxNodes} out of range 1..${O2NM_MAX_NODES}`;
  if (!Number.isInteger(h.locksPerNode) || h.locksPerNode < 1 || h.locksPerNode > LOCKS_PER_NODE_MAX) return `locksPerNode ${h.locksPerNode} out of range 1..${LOCKS_PER_NODE_MAX}`;
  if (h.bucketCount !== h.locksPerNode * BUCKETS_PER_LOCK) return `bucketCount ${h.bucketCount} is not ${BUCKETS_PER_LOCK} x locksPerNode ${h.locksPerNode}`;
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
  b.writeUInt32LE(h.bucketCount, 24);
  b.writeUInt32LE(h.lvbLenBytes, 28);
  putName(b, 32, 33, Buffer.from(h.name), LOCKSPACE_NAME_BYTES_MAX, 'lockspace name');
  return seal(b);
}

export function decodeLockspaceHeader(b: Buffer, where: Where): LockspaceHeader {
  if (b.length >= RECORD_BYTES && isBlankRecord(b)) fail(where, 'header missing (region is not formatted)');
  // An older format is named as such, not reported as a checksum or field error: version 1 kept
  // one run of lock records per node, which this code would misread.
  if (b.length >= RECORD_BYTES && b.readUInt32LE(0) === MAGIC_HEADER && b.readUInt16LE(4) !== LOCKSPACE_VERSION) {
    fail(where, `header has version ${b.readUInt16LE(4)}; this sanbox reads lockspace version ${LOCKSPACE_VERSION} only (re-create the cluster image with \`sanbox cluster init\`)`);
  }
  unseal(b, MAGIC_HEADER, 'header', where);
  if (b.readUInt32LE(8) !== OWNER_NONE) fail(where, 'header has a bad owner field');
  const h: LockspaceHeader = {
    sectorSizeBytes: b.readUInt32LE(12),
    maxNodes: b.readUInt32LE(16),
    locksPerNode: b.readUInt32LE(20),
    bucketCount: b.readUInt32LE(24),
    lvbLenBytes: b.readUInt32LE(28),
    name: getName(b, 32, 33, LOCKSPACE_NAME_BYTES_MAX, 'lockspace name', where).toString(),
  };
  const why = validateHeaderFields(h);
  if (why !== undefined) fail(where, `header: ${why}`);
  if (!allZero(b, 33 + LOCKSPACE_NAME_BYTES_MAX, OFF_CRC)) fail(where, 'header has non-zero bytes after its fields');
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
// Cells

function cellFrame(sectorSizeBytes: number, magic: number, c: { nodeId: number; row: number; generation: bigint; seq: bigint }, param: number, out?: Buffer): Buffer {
  checkU64(c.generation, 'generation');
  checkU64(c.seq, 'seq');
  if (!Number.isInteger(c.row) || c.row < 0 || c.row > 0xffff_ffff) throw new RangeError(`row ${c.row} out of range`);
  const b = frame(sectorSizeBytes, magic, c.nodeId, out);
  b.writeUInt32LE(c.row, 12);
  b.writeBigUInt64LE(c.generation, 16);
  b.writeBigUInt64LE(c.seq, 24);
  b.writeUInt32LE(param, 32);
  return b;
}

function cellHead(b: Buffer, magic: number, kind: string, expect: { nodeId: number; row: number }, param: number, where: Where): { generation: bigint; seq: bigint } {
  unseal(b, magic, kind, where);
  const owner = b.readUInt32LE(8);
  if (owner !== expect.nodeId) fail(where, `${kind} in node ${expect.nodeId}'s column names node ${owner}`);
  const row = b.readUInt32LE(12);
  if (row !== expect.row) fail(where, `${kind} in row ${expect.row} says row ${row}`);
  const p = b.readUInt32LE(32);
  if (p !== param) fail(where, `${kind} has parameter ${p}, the lockspace says ${param}`);
  return { generation: b.readBigUInt64LE(16), seq: b.readBigUInt64LE(24) };
}

/** The combinations of state and modes the grant rule can produce; anything else is corrupt. */
function lockEntryProblem(state: LockState, granted: number | null, requested: number | null, claim: boolean): string | undefined {
  const ok = (m: number | null) => m !== null && Number.isInteger(m) && m >= 0 && m <= 5;
  switch (state) {
    case 'free':
      return 'a free entry is not encoded';
    case 'waiting':
      return granted === null && ok(requested) ? undefined : 'a waiting entry needs a requested mode and no granted mode';
    case 'converting':
      return ok(granted) && ok(requested) && granted !== requested ? undefined : 'a converting entry needs two different modes';
    case 'granted':
      return ok(granted) && requested === null && !claim ? undefined : 'a granted entry needs a granted mode only';
  }
}

/** Encodes a lock cell into a new sector, or into `out` (reused; the hot path allocates nothing). */
export function encodeLockCell(c: LockCell, sectorSizeBytes: number, out?: Buffer): Buffer {
  if (c.entries.length !== LOCK_ENTRIES_PER_CELL) throw new RangeError(`a lock cell has ${LOCK_ENTRIES_PER_CELL} entries, not ${c.entries.length}`);
  const b = cellFrame(sectorSizeBytes, MAGIC_LOCK_CELL, c, LOCK_ENTRIES_PER_CELL, out);
  c.entries.forEach((e, i) => {
    if (e === undefined) return;
    const o = CELL_HEADER_BYTES + i * LOCK_ENTRY_BYTES;
    checkU64(e.ticket, 'ticket');
    checkU64(e.lvbSeqAtGrant, 'lvbSeqAtGrant');
    const why = lockEntryProblem(e.state, e.grantedMode, e.requestedMode, e.claim);
    if (why !== undefined) throw new RangeError(`lock entry: ${why}`);
    b.writeUInt8(STATES.indexOf(e.state), o);
    b.writeUInt8(e.grantedMode ?? MODE_NONE, o + 1);
    b.writeUInt8(e.requestedMode ?? MODE_NONE, o + 2);
    b.writeUInt8(e.claim ? 1 : 0, o + 3);
    b.writeUInt32LE(e.lockId >>> 0, o + 4);
    b.writeBigUInt64LE(e.ticket, o + 8);
    b.writeBigUInt64LE(e.lvbSeqAtGrant, o + 16);
    b.writeUInt32LE(e.pid >>> 0, o + 24);
    putName(b, o + 28, o + 29, e.resource, RESOURCE_NAME_BYTES_MAX, 'resource name');
  });
  return seal(b);
}

/** Returns undefined for a never-written (all-zero) sector. */
export function decodeLockCell(b: Buffer, expect: { nodeId: number; row: number }, where: Where): LockCell | undefined {
  if (b.length >= RECORD_BYTES && isBlankRecord(b)) return undefined;
  const { generation, seq } = cellHead(b, MAGIC_LOCK_CELL, 'lock cell', expect, LOCK_ENTRIES_PER_CELL, where);
  const entries: (LockEntry | undefined)[] = [];
  for (let i = 0; i < LOCK_ENTRIES_PER_CELL; i++) {
    const o = CELL_HEADER_BYTES + i * LOCK_ENTRY_BYTES;
    const stateIndex = b.readUInt8(o);
    if (stateIndex === 0) {
      if (!allZero(b, o, o + LOCK_ENTRY_BYTES)) fail(where, `lock cell entry ${i} is free but not zero`);
      entries.push(undefined);
      continue;
    }
    const state = STATES[stateIndex];
    if (state === undefined) fail(where, `lock cell entry ${i} has unknown state ${stateIndex}`);
    const g = b.readUInt8(o + 1);
    const q = b.readUInt8(o + 2);
    const flags = b.readUInt8(o + 3);
    if ((flags & ~1) !== 0) fail(where, `lock cell entry ${i} has unknown flags 0x${flags.toString(16)}`);
    const grantedMode = g === MODE_NONE ? null : g;
    const requestedMode = q === MODE_NONE ? null : q;
    const claim = (flags & 1) !== 0;
    const why = lockEntryProblem(state, grantedMode, requestedMode, claim);
    if (why !== undefined) fail(where, `lock cell entry ${i}: ${why}`);
    entries.push({
      state: state as LockEntry['state'],
      grantedMode,
      requestedMode,
      claim,
      lockId: b.readUInt32LE(o + 4),
      ticket: b.readBigUInt64LE(o + 8),
      lvbSeqAtGrant: b.readBigUInt64LE(o + 16),
      pid: b.readUInt32LE(o + 24),
      resource: getName(b, o + 28, o + 29, RESOURCE_NAME_BYTES_MAX, 'resource name', where),
    });
  }
  if (!allZero(b, CELL_HEADER_BYTES + LOCK_ENTRIES_PER_CELL * LOCK_ENTRY_BYTES, OFF_CRC)) fail(where, 'lock cell has non-zero bytes after its entries');
  return { nodeId: expect.nodeId, row: expect.row, generation, seq, entries };
}

export function encodeLvbCell(c: LvbCell, sectorSizeBytes: number, lvbLenBytes: number): Buffer {
  const per = lvbEntriesPerCell(lvbLenBytes);
  if (c.entries.length !== per) throw new RangeError(`a value cell has ${per} entries, not ${c.entries.length}`);
  if (lvbLenBytes > LVB_LEN_BYTES_MAX) throw new RangeError('value block length too large');
  const b = cellFrame(sectorSizeBytes, MAGIC_LVB_CELL, c, lvbLenBytes);
  const size = lvbEntryBytes(lvbLenBytes);
  c.entries.forEach((e, i) => {
    if (e === undefined) return;
    if (e.valueSeq === null && e.invalidSeq === null) throw new RangeError('a value entry needs a value or an invalidation');
    if (e.valueSeq !== null) checkU64(e.valueSeq, 'valueSeq');
    if (e.invalidSeq !== null) checkU64(e.invalidSeq, 'invalidSeq');
    if (e.value.length > lvbLenBytes) throw new RangeError(`value block of ${e.value.length} bytes exceeds ${lvbLenBytes}`);
    const o = CELL_HEADER_BYTES + i * size;
    b.writeBigUInt64LE(e.valueSeq ?? 0n, o);
    b.writeBigUInt64LE(e.invalidSeq ?? 0n, o + 8);
    b.writeUInt8((e.valueSeq !== null ? 1 : 0) | (e.invalidSeq !== null ? 2 : 0), o + 16);
    putName(b, o + 17, o + 18, e.resource, RESOURCE_NAME_BYTES_MAX, 'resource name');
    e.value.copy(b, o + LVB_ENTRY_FIXED_BYTES);
  });
  return seal(b);
}

/** Returns undefined for a never-written (all-zero) sector. */
export function decodeLvbCell(b: Buffer, expect: { nodeId: number; row: number }, lvbLenBytes: number, where: Where): LvbCell | undefined {
  if (b.length >= RECORD_BYTES && isBlankRecord(b)) return undefined;
  const { generation, seq } = cellHead(b, MAGIC_LVB_CELL, 'value cell', expect, lvbLenBytes, where);
  const size = lvbEntryBytes(lvbLenBytes);
  const per = lvbEntriesPerCell(lvbLenBytes);
  const entries: (LvbEntry | undefined)[] = [];
  for (let i = 0; i < per; i++) {
    const o = CELL_HEADER_BYTES + i * size;
    const flags = b.readUInt8(o + 16);
    if (flags === 0) {
      if (!allZero(b, o, o + size)) fail(where, `value cell entry ${i} is free but not zero`);
      entries.push(undefined);
      continue;
    }
    if ((flags & ~3) !== 0) fail(where, `value cell entry ${i} has bad flags 0x${flags.toString(16)}`);
    const valueSeq = (flags & 1) !== 0 ? b.readBigUInt64LE(o) : null;
    const invalidSeq = (flags & 2) !== 0 ? b.readBigUInt64LE(o + 8) : null;
    if (valueSeq === null && b.readBigUInt64LE(o) !== 0n) fail(where, `value cell entry ${i} has a sequence but no value flag`);
    if (invalidSeq === null && b.readBigUInt64LE(o + 8) !== 0n) fail(where, `value cell entry ${i} has an invalidation sequence but no flag`);
    entries.push({
      resource: getName(b, o + 17, o + 18, RESOURCE_NAME_BYTES_MAX, 'resource name', where),
      valueSeq,
      invalidSeq,
      value: Buffer.from(b.subarray(o + LVB_ENTRY_FIXED_BYTES, o + size)),
    });
  }
  if (!allZero(b, CELL_HEADER_BYTES + per * size, OFF_CRC)) fail(where, 'value cell has non-zero bytes after its entries');
  return { nodeId: expect.nodeId, row: expect.row, generation, seq, entries };
}
