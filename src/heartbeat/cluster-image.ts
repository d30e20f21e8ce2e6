// Creating and opening a sanbox cluster image (format: src/format/cluster-image.ts,
// docs/cluster-image.md). Other layers reach its regions through openRegion(), e.g. the lock
// manager's lockspace: openRegion(IMG, 'lockspace') → a BlockDevice view of that region's payload.

import crypto from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { openDevice, schemeOf } from '../disk/open.js';
import { createImageWith } from '../disk/file-disk.js';
import { isNbdSpec } from '../disk/nbd-device.js';
import { initExport } from '../disk/nbd-image.js';
import { type BlockDevice, type SectorSize } from '../disk/device.js';
import { viewOf } from '../disk/view-device.js';
import { type OpenOptions } from '../disk/file-disk.js';
import { type ReservationStoreSpec, defaultLockDir } from '../disk/reservations.js';
import { assert, FormatError, SanboxError } from '../errors.js';
import { describeDevice } from '../disk/signature-probe.js';
import { readStable } from '../disk/stable-read.js';
import type { SlotTable } from '../disk/own-slots.js';
import type { WriteWindow } from '../disk/write-window.js';
import {
  BLOCK_BYTES,
  CLUSTER_NAME_BYTES,
  CLUSTER_MAGIC,
  decodeClusterHeader,
  decodeConfig,
  decodeRegionHeader,
  encodeClusterHeader,
  encodeConfig,
  encodeRegionHeader,
  planRegions,
  REGION_VERSIONS,
  OPTIONAL_REGION_VERSIONS,
  regionVersion,
  type ClusterConfig,
  type ClusterHeader,
  type RegionEntry,
  type RegionName,
} from '../format/cluster-image.js';
import { LOCKS_PER_NODE_MAX } from '../format/lockspace.js';
import { decodeNodeRecord, encodeNodeRecord, NODE_RECORD_BYTES, type NodeRecord } from '../format/node-record.js';
import { O2NM_MAX_NODES } from '../format/o2hb-block.js';
import type { HeartbeatRegion } from './heartbeat.js';
import { recordedTiming, timingFromRecord, type Timing } from '../timing.js';

export interface InitOptions {
  clusterName: string;
  nodeCount: number;
  sectorSizeBytes?: SectorSize;
  timing: Timing;
  /** Lockspace region size; default: sized for `locksPerNode` locks and value blocks per node. */
  lockspaceBytes?: number;
  /** Capacity of the lockspace per node (default LOCKS_PER_NODE_DEFAULT, 4096). */
  locksPerNode?: number;
  /** Directory of node control sockets (default: $TMPDIR/sanbox-<cluster uuid prefix>). */
  runDir?: string;
  nodeNames?: string[];
  force?: boolean;
}

export interface ClusterImageInfo {
  path: string;
  header: ClusterHeader;
  config: ClusterConfig;
  timing: Timing;
  /** Payload offset and size of each region, by name. */
  regions: Map<string, { payloadOffsetBytes: number; payloadBytes: number; version: number }>;
}

/** Makes a new cluster image: header, region headers, config; every other payload starts zero. */
export async function initClusterImage(imagePath: string, opts: InitOptions): Promise<ClusterImageInfo> {
  const sectorSizeBytes = opts.sectorSizeBytes ?? 512;
  if (!Number.isInteger(opts.nodeCount) || opts.nodeCount < 1 || opts.nodeCount > O2NM_MAX_NODES) {
    throw new SanboxError('EINVAL', `${imagePath}: --nodes must be 1..${O2NM_MAX_NODES}, not ${opts.nodeCount}`, { device: imagePath });
  }
  if (opts.clusterName.length === 0 || Buffer.byteLength(opts.clusterName) > CLUSTER_NAME_BYTES || !/^[A-Za-z0-9._-]+$/.test(opts.clusterName)) {
    throw new SanboxError('EINVAL', `${imagePath}: cluster name '${opts.clusterName}' must be 1..${CLUSTER_NAME_BYTES} characters of A-Z a-z 0-9 . _ -`, { device: imagePath });
  }
  if (opts.locksPerNode !== undefined && (!Number.isInteger(opts.locksPerNode) || opts.locksPerNode < 1 || opts.locksPerNode > LOCKS_PER_NODE_MAX)) {
    throw new SanboxError('EINVAL', `${imagePath}: --locks-per-node must be 1..${LOCKS_PER_NODE_MAX}, not ${opts.locksPerNode}`, { device: imagePath });
  }
  const uuid = crypto.randomBytes(16);
  const runDir = opts.runDir ?? path.join(os.tmpdir(), `sanbox-${uuid.toString('hex').slice(0, 12)}`);
  const nodeNames = opts.nodeNames ?? Array.from({ length: opts.nodeCount }, () => '');
  const { regions, imageSizeBytes } = planRegions({ sectorSizeBytes, nodeCount: opts.nodeCount, lockspaceBytes: opts.lockspaceBytes, locksPerNode: opts.locksPerNode });
  const header: ClusterHeader = { version: 1, sectorSizeBytes, imageSizeBytes, clusterUuid: uuid, regions };
  const config: ClusterConfig = {
    clusterName: opts.clusterName,
    nodeCount: opts.nodeCount,
    intervalMs: opts.timing.intervalMs,
    deadThreshold: opts.timing.deadThreshold,
    ioTimeoutMs: opts.timing.ioTimeoutMs,
    timingPreset: opts.timing.preset,
    derivedTiming: recordedTiming(opts.timing),
    runDir,
    nodeNames,
  };
  // Encode everything before touching the disk: a bad value fails with nothing written.
  const headerBuf = encodeClusterHeader(header);
  const configBuf = encodeConfig(config);
  const regionHeaders = regions.map((r) =>
    encodeRegionHeader({ name: r.name, version: regionVersion(r.name as RegionName), payloadBytes: r.sizeBytes - BLOCK_BYTES, clusterUuid: uuid }),
  );
  const fill = async (dev: BlockDevice): Promise<void> => {
    await dev.write(headerBuf, 0);
    for (let i = 0; i < regions.length; i++) await dev.write(regionHeaders[i]!, regions[i]!.offsetBytes);
    const cfg = regions.find((r) => r.name === 'config')!;
    const padded = Buffer.alloc(Math.ceil(configBuf.length / sectorSizeBytes) * sectorSizeBytes);
    configBuf.copy(padded);
    await dev.write(padded, cfg.offsetBytes + BLOCK_BYTES);
    await dev.flush();
  };
  if (isNbdSpec(imagePath)) {
    // An export cannot be built beside and renamed: it is checked, zeroed and written in place.
    const dev = await initExport(imagePath, { sizeBytes: imageSizeBytes, sectorSizeBytes, force: opts.force });
    try {
      await fill(dev);
    } finally {
      await dev.close();
    }
  } else {
    // Built beside the target and renamed into place: ENOSPC or EIO half-way leaves what was at
    // imagePath (an older image, or nothing) untouched, and never blocks a retry (issue 15).
    await createImageWith(imagePath, { sizeBytes: imageSizeBytes, sectorSizeBytes, force: opts.force }, async (tmpPath) => {
      const dev = await openDevice(tmpPath, { guard: 'none' });
      try {
        await fill(dev);
      } finally {
        await dev.close();
      }
    });
  }
  return readClusterImage(imagePath);
}

/** Reads and validates header, region headers and config. Opens the image without an in-use guard. */
export async function readClusterImage(imagePath: string): Promise<ClusterImageInfo> {
  const dev = await openDevice(imagePath, { guard: 'none', readOnly: true });
  try {
    return await readClusterImageFrom(dev, imagePath);
  } finally {
    await dev.close();
  }
}

export async function readClusterImageFrom(dev: BlockDevice, imagePath: string): Promise<ClusterImageInfo> {
  if (dev.sizeBytes < BLOCK_BYTES) throw new SanboxError('EFORMAT', `${dev.name}: too small to be a cluster image (${dev.sizeBytes} bytes)`, { device: dev.name, offsetBytes: 0 });
  const hbuf = Buffer.alloc(BLOCK_BYTES);
  await dev.read(hbuf, 0);
  if (hbuf.toString('latin1', 0, CLUSTER_MAGIC.length) !== CLUSTER_MAGIC) {
    // Pointed at the wrong kind of image: say what it is (one probe of the signature table).
    throw new FormatError(await describeDevice(dev, 'a sanbox cluster image'), { device: dev.name, offsetBytes: 0 });
  }
  const header = decodeClusterHeader(hbuf, { device: dev.name, offsetBytes: 0 });
  if (header.imageSizeBytes > dev.sizeBytes) {
    throw new SanboxError('EFORMAT', `${dev.name}: image is ${dev.sizeBytes} bytes but its header says ${header.imageSizeBytes}`, { device: dev.name, offsetBytes: 0x18 });
  }
  const regions = new Map<string, { payloadOffsetBytes: number; payloadBytes: number; version: number }>();
  for (const r of header.regions) {
    const rb = Buffer.alloc(BLOCK_BYTES);
    await dev.read(rb, r.offsetBytes);
    const rh = decodeRegionHeader(rb, { device: dev.name, offsetBytes: r.offsetBytes });
    checkRegionHeader(dev.name, r, rh.name, rh.payloadBytes, rh.clusterUuid, header.clusterUuid);
    regions.set(r.name, { payloadOffsetBytes: r.offsetBytes + BLOCK_BYTES, payloadBytes: rh.payloadBytes, version: rh.version });
  }
  for (const [name, version] of [...Object.entries(REGION_VERSIONS), ...Object.entries(OPTIONAL_REGION_VERSIONS)]) {
    const r = regions.get(name);
    if (r === undefined && name in OPTIONAL_REGION_VERSIONS) continue;
    if (r === undefined) throw new SanboxError('EFORMAT', `${dev.name}: cluster image has no '${name}' region`, { device: dev.name, offsetBytes: 0 });
    if (r.version !== version) {
      throw new SanboxError('EFORMAT', `${dev.name}: region '${name}' has version ${r.version}; this sanbox reads version ${version}`, { device: dev.name, offsetBytes: r.payloadOffsetBytes - BLOCK_BYTES });
    }
  }
  const cfg = regions.get('config')!;
  const cbuf = Buffer.alloc(cfg.payloadBytes);
  await dev.read(cbuf, cfg.payloadOffsetBytes);
  const config = decodeConfig(cbuf, { device: dev.name, offsetBytes: cfg.payloadOffsetBytes });
  const timing = timingFromRecord({ intervalMs: config.intervalMs, deadThreshold: config.deadThreshold, ioTimeoutMs: config.ioTimeoutMs }, config.timingPreset, config.derivedTiming ?? []);
  return { path: imagePath, header, config, timing, regions };
}

function checkRegionHeader(dev: string, entry: RegionEntry, name: string, payloadBytes: number, uuid: Buffer, clusterUuid: Buffer): void {
  const off = entry.offsetBytes;
  if (name !== entry.name) throw new SanboxError('EFORMAT', `${dev}: region header at ${off} names '${name}', the table says '${entry.name}'`, { device: dev, offsetBytes: off });
  if (payloadBytes !== entry.sizeBytes - BLOCK_BYTES) throw new SanboxError('EFORMAT', `${dev}: region '${name}' payload ${payloadBytes} does not match its table size`, { device: dev, offsetBytes: off });
  if (!uuid.equals(clusterUuid)) throw new SanboxError('EFORMAT', `${dev}: region '${name}' belongs to another cluster image`, { device: dev, offsetBytes: off });
}

/**
 * A device view of one region's payload. `image` is a path (opened here with `opts`, closed with
 * the view's `closeAll`) or an open device of a cluster image.
 */
export async function openRegion(image: string | BlockDevice, name: string, opts: OpenOptions = {}): Promise<BlockDevice & { closeAll(): Promise<void> }> {
  const dev = typeof image === 'string' ? await openDevice(image, opts) : image;
  try {
    const info = await readClusterImageFrom(dev, typeof image === 'string' ? image : dev.name);
    const r = info.regions.get(name);
    if (r === undefined) throw new SanboxError('EINVAL', `${dev.name}: cluster image has no region '${name}'`, { device: dev.name });
    const view = viewOf(dev, r.payloadOffsetBytes, r.payloadBytes, `${dev.name}:${name}`);
    return Object.assign(view, {
      closeAll: async () => {
        if (typeof image === 'string') await dev.close();
      },
    });
  } catch (err) {
    if (typeof image === 'string') await dev.close();
    throw err;
  }
}

/** Where the reservation state of a cluster image lives, and its lock directory. */
export function reservationSpec(info: ClusterImageInfo): ReservationStoreSpec {
  const r = info.regions.get('reservations')!;
  // An image named by URI (nbd://…) has no directory beside it: its local lock files go in the run directory.
  const lockDir = schemeOf(info.path) !== undefined ? path.join(info.config.runDir, 'locks') : defaultLockDir(info.path);
  return { deviceName: info.path, statePath: info.path, stateOffsetBytes: r.payloadOffsetBytes, lockDir };
}

/** The cluster's 16-bit tag in every node's reservation key (nodeKey): the first two bytes of its UUID, little-endian. */
export function clusterTag(info: ClusterImageInfo): number {
  return clusterTagOfUuid(info.header.clusterUuid);
}

/** The reservation-key tag of the cluster with this uuid (the top 16 bits of every node key, reservations.ts nodeKey). */
export function clusterTagOfUuid(uuid: Buffer): number {
  return uuid.readUInt16LE(0);
}

/** The image's heartbeat region on `device` (the image, opened by the caller): one slot per node, a sector each. */
export function clusterHeartbeatRegion(info: ClusterImageInfo, device: BlockDevice): HeartbeatRegion {
  const hb = info.regions.get('heartbeat')!;
  return { name: `${info.path}:heartbeat`, device, offsetBytes: hb.payloadOffsetBytes, blockBytes: info.header.sectorSizeBytes, slotCount: info.config.nodeCount };
}

/**
 * The image's tables of per-node slots, each written only by its own node (src/disk/own-slots.ts):
 * heartbeat slots and node-record sectors, all O2NM_MAX_NODES of each as planRegions sized them.
 */
export function clusterSlotTables(info: ClusterImageInfo): SlotTable[] {
  const s = info.header.sectorSizeBytes;
  return [
    { what: 'heartbeat', offsetBytes: info.regions.get('heartbeat')!.payloadOffsetBytes, slotBytes: s, slotCount: O2NM_MAX_NODES },
    { what: 'node records', offsetBytes: nodeRecordOffset(info, 0), slotBytes: s, slotCount: O2NM_MAX_NODES },
  ];
}

/**
 * The only part of the image a client of a node may write through it (an LVM command run as the
 * node: src/node/remote-device.ts): the device list's region payload, which such a command
 * rewrites under the global lock (src/volume/cluster-devices.ts). Undefined for an image made
 * before the list: there a client writes nothing.
 */
export function clientWriteWindow(info: ClusterImageInfo): WriteWindow | undefined {
  const r = info.regions.get('devices');
  return r === undefined ? undefined : { offsetBytes: r.payloadOffsetBytes, lengthBytes: r.payloadBytes, what: "the cluster's device-list region" };
}

/** Node records are one per sector (single-writer sectors), the record at the sector's start. */
export function nodeRecordOffset(info: ClusterImageInfo, nodeId: number): number {
  return info.regions.get('nodes')!.payloadOffsetBytes + nodeId * info.header.sectorSizeBytes;
}

export async function readNodeRecords(dev: BlockDevice, info: ClusterImageInfo): Promise<(NodeRecord | null)[]> {
  const stride = info.header.sectorSizeBytes;
  const n = info.config.nodeCount;
  const buf = Buffer.alloc(n * stride);
  await dev.read(buf, nodeRecordOffset(info, 0));
  const out: (NodeRecord | null)[] = [];
  for (let i = 0; i < n; i++) {
    // A record being rewritten by its node (at join) may read torn: re-read that sector alone.
    const where = { device: dev.name, offsetBytes: nodeRecordOffset(info, i) };
    const sector = buf.subarray(i * stride, (i + 1) * stride);
    out.push(await readStable(dev, sector, where.offsetBytes, (b) => decodeNodeRecord(b.subarray(0, NODE_RECORD_BYTES), i, where), { preRead: true }));
  }
  return out;
}

/** Writes node `rec.nodeId`'s own record sector (passes the device's fence gate). */
export async function writeNodeRecord(dev: BlockDevice, info: ClusterImageInfo, rec: NodeRecord | null, nodeId: number): Promise<void> {
  // A node writes only its own record sector (single-writer sectors need no lock).
  assert(rec === null || rec.nodeId === nodeId, `node ${nodeId} about to write node ${rec?.nodeId}'s record`);
  assert(Number.isInteger(nodeId) && nodeId >= 0 && nodeId < info.config.nodeCount, `node record ${nodeId} outside 0..${info.config.nodeCount - 1}`);
  const sec = Buffer.alloc(info.header.sectorSizeBytes);
  if (rec !== null) encodeNodeRecord(rec).copy(sec);
  const offsetBytes = nodeRecordOffset(info, nodeId);
  // Pair assertion: what goes to disk decodes back to the same node's record.
  const check = decodeNodeRecord(sec.subarray(0, NODE_RECORD_BYTES), nodeId, { device: dev.name, offsetBytes });
  assert(rec === null ? check === null : check?.generation === rec.generation && check.prKey === rec.prKey, `node ${nodeId}'s record does not decode back to what was encoded`);
  await dev.write(sec, offsetBytes);
}
