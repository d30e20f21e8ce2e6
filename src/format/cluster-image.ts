// The sanbox cluster image: a small shared disk that holds a cluster's configuration, its o2hb
// heartbeat region, per-node records, the fencing reservations and the lock manager's lockspace.
// No public format exists for this, so we define one (docs/cluster-image.md is its prose):
// a header block names sector-aligned regions; every region starts with a one-block region header
// (magic, name, version, CRC) and its payload follows. Later work adds a region by appending a
// table entry; readers skip names they do not know, so the format grows without breaking.
//
// Header block (4096 bytes at offset 0, little-endian):
//
// | off   | size | field            | meaning                                               |
// |-------|------|------------------|-------------------------------------------------------|
// | 0x000 | 8    | magic            | "SBXCLUST"                                            |
// | 0x008 | 4    | version          | 1                                                     |
// | 0x00C | 4    | headerBytes      | 4096                                                  |
// | 0x010 | 4    | sectorSizeBytes  | 512 or 4096 (the heartbeat slot size)                 |
// | 0x014 | 4    | regionCount      | entries used in the table, 1..REGIONS_MAX             |
// | 0x018 | 8    | imageSizeBytes   | size the image was made with                          |
// | 0x020 | 16   | clusterUuid      | random at init                                        |
// | 0x030 | 16   | reserved         | zero                                                  |
// | 0x040 | 32×n | region table     | name[16] (ASCII, NUL-padded), offsetBytes u64, sizeBytes u64 |
// | 0xFFC | 4    | crc32            | zlib CRC-32 of the block with this field zeroed       |
//
// Region header block (4096 bytes at the region's offset; the payload starts 4096 bytes later):
//
// | off   | size | field        | meaning                                     |
// |-------|------|--------------|---------------------------------------------|
// | 0x000 | 8    | magic        | "SBXREGN1"                                  |
// | 0x008 | 16   | name         | the same name as in the table               |
// | 0x018 | 4    | version      | the payload format's version                |
// | 0x01C | 4    | reserved     | zero                                        |
// | 0x020 | 8    | payloadBytes | regionSize − 4096                           |
// | 0x028 | 16   | clusterUuid  | the header's, so a region is never mixed up with another image's |
// | 0xFFC | 4    | crc32        | CRC-32 of the block with this field zeroed  |
//
// Config payload ("config", version 1), little-endian:
//
// | off    | size | field            | meaning                                             |
// |--------|------|------------------|-----------------------------------------------------|
// | 0x000  | 8    | magic            | "SBXCONF1"                                          |
// | 0x008  | 4    | version          | 1                                                   |
// | 0x00C  | 4    | recordBytes      | CONFIG_HEADER_BYTES + nodeCount × NODE_NAME_BYTES   |
// | 0x010  | 64   | clusterName      | UTF-8, NUL-padded                                   |
// | 0x050  | 2    | nodeCount        | 1..255                                              |
// | 0x052  | 2    | reserved         | zero                                                |
// | 0x054  | 4    | intervalMs       | heartbeat interval                                  |
// | 0x058  | 4    | deadThreshold    | intervals without a seq change before death         |
// | 0x05C  | 4    | ioTimeoutMs      | a heartbeat write slower than this has failed       |
// | 0x060  | 16   | timingPreset     | "local", "o2cb" or "custom"                         |
// | 0x070  | 256  | runDir           | where node control sockets live                     |
// | 0x170  | 4    | derivedCount     | how many derived timing values follow (0: none)     |
// | 0x174  | 4×k  | derivedTiming    | u32 each, in src/timing.ts's DERIVED_TIMING_FIELDS order |
// | …      | –    | reserved         | zero up to the CRC (room for DERIVED_TIMING_MAX values) |
// | 0x1FC  | 4    | crc32            | CRC-32 of the whole record with this field zeroed   |
// | 0x200  | 64×n | nodeNames        | per node number, UTF-8, NUL-padded ("" = unnamed)   |
//
// derivedCount/derivedTiming are a backward-compatible addition in version 1's reserved bytes: an
// older reader ignores them, an image written before them has derivedCount 0 and its timing is
// derived from the three inputs.
//
// Pure codecs: no fs, no clock.

import { FormatError } from '../errors.js';
import { formatFail, readPaddedString, writePaddedString, type Where } from './where.js';
import { checkCrc32Zlib, sealCrc32Zlib } from './crc32.js';
import { O2NM_MAX_NODES } from './o2hb-block.js';
import { isSectorSize, SECTOR_SIZES, type SectorSize } from './sector-size.js';
import { RESERVATIONS_PAYLOAD_BYTES } from './reservations.js';
import { lockspaceRegionBytes, LOCKS_PER_NODE_DEFAULT } from './lockspace.js';
import { DEVICE_LIST_PAYLOAD_BYTES } from './device-list.js';

export const CLUSTER_MAGIC = 'SBXCLUST';
export const CLUSTER_VERSION = 1;
/** Header and region-header blocks are 4 KiB so every payload is aligned for either sector size. */
export const BLOCK_BYTES = 4096;
/** Table entries that fit between 0x40 and the CRC at 0xFFC. */
export const REGIONS_MAX = Math.floor((BLOCK_BYTES - 4 - 0x40) / 32);
export const REGION_NAME_BYTES = 16;
export const REGION_MAGIC = 'SBXREGN1';
export const CONFIG_MAGIC = 'SBXCONF1';
export const CONFIG_VERSION = 1;
export const CONFIG_HEADER_BYTES = 0x200;
export const NODE_NAME_BYTES = 64;
export const CLUSTER_NAME_BYTES = 64;
export const RUN_DIR_BYTES = 256;

/** The names of the regions sanbox defines today, and the payload version each has. */
export const REGION_VERSIONS = {
  config: 1,
  heartbeat: 1, // raw o2hb blocks, one sector per node number 0..254 (src/format/o2hb-block.ts)
  nodes: 1, // one node record per node number (src/format/node-record.ts)
  reservations: 1, // SCSI-3 PR emulation state (src/format/reservations.ts)
  lockspace: 1, // owned by the lock manager (src/dlm); sanbox cluster init only reserves it
} as const;
/**
 * Regions added after images were made without them: new images have them, a reader opens an
 * image that lacks one (and checks the version of one it has).
 */
export const OPTIONAL_REGION_VERSIONS = {
  devices: 1, // the cluster's LVM device list (src/format/device-list.ts)
} as const;
export type RegionName = keyof typeof REGION_VERSIONS | keyof typeof OPTIONAL_REGION_VERSIONS;

/** The payload version of a region sanbox defines, required or optional. */
export function regionVersion(name: RegionName): number {
  return name in REGION_VERSIONS ? REGION_VERSIONS[name as keyof typeof REGION_VERSIONS] : OPTIONAL_REGION_VERSIONS[name as keyof typeof OPTIONAL_REGION_VERSIONS];
}

export type { Where } from './where.js';

export interface RegionEntry {
  name: string;
  offsetBytes: number;
  sizeBytes: number;
}

export interface ClusterHeader {
  version: number;
  sectorSizeBytes: SectorSize;
  imageSizeBytes: number;
  clusterUuid: Buffer; // 16 bytes
  regions: RegionEntry[];
}

export interface RegionHeader {
  name: string;
  version: number;
  payloadBytes: number;
  clusterUuid: Buffer;
}

export interface ClusterConfig {
  clusterName: string;
  nodeCount: number;
  intervalMs: number;
  deadThreshold: number;
  ioTimeoutMs: number;
  timingPreset: string;
  runDir: string;
  /** nodeNames[n] for n in 0..nodeCount-1; "" when unnamed. */
  nodeNames: string[];
  /** Derived timing values as recorded (src/timing.ts gives them names); [] for an older image. */
  derivedTiming?: number[];
}

/** Where the derived timing values live in the config record, and how many fit before the CRC. */
const DERIVED_COUNT_OFF = 0x170;
const DERIVED_OFF = 0x174;
export const DERIVED_TIMING_MAX = (0x1fc - DERIVED_OFF) / 4;

/** Device name in messages when the Where names none. */
const DEVICE = 'cluster image';

function checkMagic(buf: Buffer, magic: string, where: Where, what: string): void {
  const got = buf.subarray(0, 8).toString('latin1');
  if (got !== magic) formatFail(where, 0, `not a ${what}: magic is ${JSON.stringify(got)}, expected ${JSON.stringify(magic)}`, DEVICE);
}

// ---- header ------------------------------------------------------------------------------

export function encodeClusterHeader(h: ClusterHeader): Buffer {
  if (h.regions.length < 1 || h.regions.length > REGIONS_MAX) throw new FormatError(`cluster image: ${h.regions.length} regions; 1..${REGIONS_MAX} fit`);
  if (h.clusterUuid.length !== 16) throw new FormatError('cluster image: cluster UUID must be 16 bytes');
  validateRegions(h.regions, h.imageSizeBytes, h.sectorSizeBytes, {});
  const buf = Buffer.alloc(BLOCK_BYTES);
  buf.write(CLUSTER_MAGIC, 0, 'latin1');
  buf.writeUInt32LE(CLUSTER_VERSION, 0x08);
  buf.writeUInt32LE(BLOCK_BYTES, 0x0c);
  buf.writeUInt32LE(h.sectorSizeBytes, 0x10);
  buf.writeUInt32LE(h.regions.length, 0x14);
  buf.writeBigUInt64LE(BigInt(h.imageSizeBytes), 0x18);
  h.clusterUuid.copy(buf, 0x20);
  h.regions.forEach((r, i) => {
    const off = 0x40 + i * 32;
    writePaddedString(buf, off, REGION_NAME_BYTES, r.name, 'region name');
    buf.writeBigUInt64LE(BigInt(r.offsetBytes), off + 16);
    buf.writeBigUInt64LE(BigInt(r.sizeBytes), off + 24);
  });
  sealCrc32Zlib(buf, BLOCK_BYTES - 4);
  return buf;
}

export function decodeClusterHeader(buf: Buffer, where: Where = {}): ClusterHeader {
  if (buf.length !== BLOCK_BYTES) formatFail(where, 0, `cluster header must be ${BLOCK_BYTES} bytes, got ${buf.length}`, DEVICE);
  checkMagic(buf, CLUSTER_MAGIC, where, 'sanbox cluster image');
  const version = buf.readUInt32LE(0x08);
  if (version !== CLUSTER_VERSION) formatFail(where, 0x08, `cluster image version ${version} is not supported (this sanbox reads version ${CLUSTER_VERSION})`, DEVICE);
  checkCrc32Zlib(buf, BLOCK_BYTES - 4, where, 'cluster header', DEVICE);
  const headerBytes = buf.readUInt32LE(0x0c);
  if (headerBytes !== BLOCK_BYTES) formatFail(where, 0x0c, `cluster header size ${headerBytes}, expected ${BLOCK_BYTES}`, DEVICE);
  const sectorSizeBytes = buf.readUInt32LE(0x10);
  if (!isSectorSize(sectorSizeBytes)) formatFail(where, 0x10, `sector size ${sectorSizeBytes} is not ${SECTOR_SIZES.join(' or ')}`, DEVICE);
  const count = buf.readUInt32LE(0x14);
  if (count < 1 || count > REGIONS_MAX) formatFail(where, 0x14, `region count ${count} is outside 1..${REGIONS_MAX}`, DEVICE);
  const imageSize = buf.readBigUInt64LE(0x18);
  if (imageSize > BigInt(Number.MAX_SAFE_INTEGER)) formatFail(where, 0x18, `image size ${imageSize} is too large`, DEVICE);
  const regions: RegionEntry[] = [];
  for (let i = 0; i < count; i++) {
    const off = 0x40 + i * 32;
    const o = buf.readBigUInt64LE(off + 16);
    const s = buf.readBigUInt64LE(off + 24);
    if (o > BigInt(Number.MAX_SAFE_INTEGER) || s > BigInt(Number.MAX_SAFE_INTEGER)) formatFail(where, off, `region ${i} offset or size too large`, DEVICE);
    regions.push({ name: readPaddedString(buf, off, REGION_NAME_BYTES), offsetBytes: Number(o), sizeBytes: Number(s) });
  }
  validateRegions(regions, Number(imageSize), sectorSizeBytes, where);
  return { version, sectorSizeBytes, imageSizeBytes: Number(imageSize), clusterUuid: Buffer.from(buf.subarray(0x20, 0x30)), regions };
}

function validateRegions(regions: RegionEntry[], imageSizeBytes: number, sectorSizeBytes: number, where: Where): void {
  const sorted = [...regions].sort((a, b) => a.offsetBytes - b.offsetBytes);
  let endBytes = BLOCK_BYTES;
  const names = new Set<string>();
  for (const r of sorted) {
    if (r.name.length === 0 || !/^[a-z][a-z0-9-]*$/.test(r.name)) formatFail(where, 0, `region name ${JSON.stringify(r.name)} is not valid`, DEVICE);
    if (names.has(r.name)) formatFail(where, 0, `region '${r.name}' appears twice`, DEVICE);
    names.add(r.name);
    if (r.offsetBytes % BLOCK_BYTES !== 0 || r.sizeBytes % sectorSizeBytes !== 0 || r.sizeBytes <= BLOCK_BYTES) {
      formatFail(where, 0, `region '${r.name}' at ${r.offsetBytes} size ${r.sizeBytes} is not aligned or too small`, DEVICE);
    }
    if (r.offsetBytes < endBytes) formatFail(where, 0, `region '${r.name}' at ${r.offsetBytes} overlaps the header or another region`, DEVICE);
    endBytes = r.offsetBytes + r.sizeBytes;
  }
  if (endBytes > imageSizeBytes) formatFail(where, 0, `regions end at ${endBytes}, beyond the image size ${imageSizeBytes}`, DEVICE);
}

// ---- region header -------------------------------------------------------------------------

export function encodeRegionHeader(h: RegionHeader): Buffer {
  const buf = Buffer.alloc(BLOCK_BYTES);
  buf.write(REGION_MAGIC, 0, 'latin1');
  writePaddedString(buf, 0x08, REGION_NAME_BYTES, h.name, 'region name');
  buf.writeUInt32LE(h.version, 0x18);
  buf.writeBigUInt64LE(BigInt(h.payloadBytes), 0x20);
  if (h.clusterUuid.length !== 16) throw new FormatError('region header: cluster UUID must be 16 bytes');
  h.clusterUuid.copy(buf, 0x28);
  sealCrc32Zlib(buf, BLOCK_BYTES - 4);
  return buf;
}

export function decodeRegionHeader(buf: Buffer, where: Where = {}): RegionHeader {
  if (buf.length !== BLOCK_BYTES) formatFail(where, 0, `region header must be ${BLOCK_BYTES} bytes, got ${buf.length}`, DEVICE);
  checkMagic(buf, REGION_MAGIC, where, 'sanbox region header');
  checkCrc32Zlib(buf, BLOCK_BYTES - 4, where, 'region header', DEVICE);
  const payload = buf.readBigUInt64LE(0x20);
  if (payload > BigInt(Number.MAX_SAFE_INTEGER)) formatFail(where, 0x20, 'region payload size too large', DEVICE);
  return {
    name: readPaddedString(buf, 0x08, REGION_NAME_BYTES),
    version: buf.readUInt32LE(0x18),
    payloadBytes: Number(payload),
    clusterUuid: Buffer.from(buf.subarray(0x28, 0x38)),
  };
}

// ---- config ------------------------------------------------------------------------------

export function configRecordBytes(nodeCount: number): number {
  return CONFIG_HEADER_BYTES + nodeCount * NODE_NAME_BYTES;
}

export function encodeConfig(c: ClusterConfig): Buffer {
  if (!Number.isInteger(c.nodeCount) || c.nodeCount < 1 || c.nodeCount > O2NM_MAX_NODES) throw new FormatError(`cluster config: ${c.nodeCount} nodes; 1..${O2NM_MAX_NODES} allowed`);
  if (c.nodeNames.length !== c.nodeCount) throw new FormatError(`cluster config: ${c.nodeNames.length} node names for ${c.nodeCount} nodes`);
  for (const [k, v] of [['intervalMs', c.intervalMs], ['deadThreshold', c.deadThreshold], ['ioTimeoutMs', c.ioTimeoutMs]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 0xffff_ffff) throw new FormatError(`cluster config: ${k} ${v} is not a positive 32-bit integer`);
  }
  const bytes = configRecordBytes(c.nodeCount);
  const buf = Buffer.alloc(bytes);
  buf.write(CONFIG_MAGIC, 0, 'latin1');
  buf.writeUInt32LE(CONFIG_VERSION, 0x08);
  buf.writeUInt32LE(bytes, 0x0c);
  writePaddedString(buf, 0x10, CLUSTER_NAME_BYTES, c.clusterName, 'cluster name');
  buf.writeUInt16LE(c.nodeCount, 0x50);
  buf.writeUInt32LE(c.intervalMs, 0x54);
  buf.writeUInt32LE(c.deadThreshold, 0x58);
  buf.writeUInt32LE(c.ioTimeoutMs, 0x5c);
  writePaddedString(buf, 0x60, 16, c.timingPreset, 'timing preset');
  writePaddedString(buf, 0x70, RUN_DIR_BYTES, c.runDir, 'run directory');
  const derived = c.derivedTiming ?? [];
  if (derived.length > DERIVED_TIMING_MAX) throw new FormatError(`cluster config: ${derived.length} derived timing values; at most ${DERIVED_TIMING_MAX} fit`);
  buf.writeUInt32LE(derived.length, DERIVED_COUNT_OFF);
  derived.forEach((v, i) => {
    if (!Number.isInteger(v) || v < 1 || v > 0xffff_ffff) throw new FormatError(`cluster config: derived timing value ${i} (${v}) is not a positive 32-bit integer`);
    buf.writeUInt32LE(v, DERIVED_OFF + 4 * i);
  });
  c.nodeNames.forEach((n, i) => writePaddedString(buf, CONFIG_HEADER_BYTES + i * NODE_NAME_BYTES, NODE_NAME_BYTES, n, 'node name'));
  sealCrc32Zlib(buf, 0x1fc);
  return buf;
}

/** Decodes the config record from the start of `buf` (the region payload; it may be longer). */
export function decodeConfig(buf: Buffer, where: Where = {}): ClusterConfig {
  if (buf.length < CONFIG_HEADER_BYTES) formatFail(where, 0, `config record needs ${CONFIG_HEADER_BYTES} bytes, got ${buf.length}`, DEVICE);
  checkMagic(buf, CONFIG_MAGIC, where, 'sanbox cluster config');
  const version = buf.readUInt32LE(0x08);
  if (version !== CONFIG_VERSION) formatFail(where, 0x08, `cluster config version ${version} is not supported`, DEVICE);
  const bytes = buf.readUInt32LE(0x0c);
  const nodeCount = buf.readUInt16LE(0x50);
  if (nodeCount < 1 || nodeCount > O2NM_MAX_NODES) formatFail(where, 0x50, `node count ${nodeCount} is outside 1..${O2NM_MAX_NODES}`, DEVICE);
  if (bytes !== configRecordBytes(nodeCount) || bytes > buf.length) formatFail(where, 0x0c, `config record size ${bytes} does not match ${nodeCount} nodes or the region`, DEVICE);
  const rec = buf.subarray(0, bytes);
  checkCrc32Zlib(rec, 0x1fc, where, 'cluster config', DEVICE);
  const intervalMs = rec.readUInt32LE(0x54);
  const deadThreshold = rec.readUInt32LE(0x58);
  const ioTimeoutMs = rec.readUInt32LE(0x5c);
  if (intervalMs < 1 || deadThreshold < 1 || ioTimeoutMs < 1) formatFail(where, 0x54, 'config timing values must be positive', DEVICE);
  const nodeNames: string[] = [];
  for (let i = 0; i < nodeCount; i++) nodeNames.push(readPaddedString(rec, CONFIG_HEADER_BYTES + i * NODE_NAME_BYTES, NODE_NAME_BYTES));
  const derivedCount = rec.readUInt32LE(DERIVED_COUNT_OFF);
  if (derivedCount > DERIVED_TIMING_MAX) formatFail(where, DERIVED_COUNT_OFF, `derived timing count ${derivedCount} exceeds ${DERIVED_TIMING_MAX}`, DEVICE);
  const derivedTiming: number[] = [];
  for (let i = 0; i < derivedCount; i++) {
    const v = rec.readUInt32LE(DERIVED_OFF + 4 * i);
    if (v < 1) formatFail(where, DERIVED_OFF + 4 * i, `derived timing value ${i} must be positive`, DEVICE);
    derivedTiming.push(v);
  }
  return {
    clusterName: readPaddedString(rec, 0x10, CLUSTER_NAME_BYTES),
    nodeCount,
    intervalMs,
    deadThreshold,
    ioTimeoutMs,
    timingPreset: readPaddedString(rec, 0x60, 16),
    runDir: readPaddedString(rec, 0x70, RUN_DIR_BYTES),
    nodeNames,
    // Absent for an image written before derived timing was recorded (round-trips as it was).
    ...(derivedTiming.length > 0 ? { derivedTiming } : {}),
  };
}

// ---- layout --------------------------------------------------------------------------------

export interface LayoutInput {
  sectorSizeBytes: SectorSize;
  nodeCount: number;
  /** Lockspace region payload; default: sized for `locksPerNode` (sparse: only written cells take space). */
  lockspaceBytes?: number | undefined;
  /** Lock and value-block capacity per node that sizes the lockspace when lockspaceBytes is not given (default LOCKS_PER_NODE_DEFAULT). */
  locksPerNode?: number | undefined;
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/**
 * Payload size of each region for a new image; each region = header block + payload, 4 KiB
 * aligned. The one place a region's size is decided.
 */
export function planRegions(input: LayoutInput): { regions: RegionEntry[]; imageSizeBytes: number } {
  const lockspaceBytes = input.lockspaceBytes ?? alignUp(lockspaceRegionBytes(input.sectorSizeBytes, input.nodeCount, input.locksPerNode ?? LOCKS_PER_NODE_DEFAULT), BLOCK_BYTES);
  if (lockspaceBytes <= 0 || lockspaceBytes % BLOCK_BYTES !== 0) {
    throw new FormatError(`lockspace size ${lockspaceBytes} must be a positive multiple of ${BLOCK_BYTES}`);
  }
  const payloads: [RegionName, number][] = [
    ['config', configRecordBytes(O2NM_MAX_NODES)],
    // Always the full 255 slots: an o2hb region has a slot per possible node number.
    ['heartbeat', O2NM_MAX_NODES * input.sectorSizeBytes],
    // One sector per node record (the record is NODE_RECORD_BYTES), so each node writes only its own sector.
    ['nodes', O2NM_MAX_NODES * input.sectorSizeBytes],
    ['reservations', RESERVATIONS_PAYLOAD_BYTES],
    ['lockspace', lockspaceBytes],
    // Appended last, so the regions before it sit where they sat in images made without it.
    ['devices', DEVICE_LIST_PAYLOAD_BYTES],
  ];
  const regions: RegionEntry[] = [];
  let off = BLOCK_BYTES;
  for (const [name, payload] of payloads) {
    const size = BLOCK_BYTES + alignUp(payload, BLOCK_BYTES);
    regions.push({ name, offsetBytes: off, sizeBytes: size });
    off += size;
  }
  return { regions, imageSizeBytes: off };
}
