// sanbox's container record: what kind of cluster container a volume group is (issue 18 item 1;
// locking.md §5, EVMS's Cluster Segment Manager kept the same facts — container name, kind,
// owner node, cluster id — in a primary and a backup copy on every disk it claimed).
//
// Where the copies live: on every PV of the VG, in the bytes lvm2 leaves unused between its
// label scan area and the first metadata area (lvm2.md §1: bytes 0-2047 are scanned for the
// label and zeroed by pvcreate; mda1 starts at 4096; 2048-4095 are never read or written by
// lvm2). The primary copy is at byte 2048, the backup at 3072. Not the cluster image: a
// container must travel with its disks (EVMS wrote its metadata on the disks themselves), and a
// VG's disks can be read by a node that was handed only the PVs.
//
// Record (1024 bytes, little-endian; one copy):
//
// | off   | size | field        | meaning                                                           |
// |-------|------|--------------|-------------------------------------------------------------------|
// | 0x000 | 8    | magic        | ASCII `SBXCONT1`                                                  |
// | 0x008 | 4    | version      | 1                                                                 |
// | 0x00C | 4    | reserved     | zero                                                              |
// | 0x010 | 8    | sequence     | +1 on every change; the valid copy with the highest one wins      |
// | 0x018 | 1    | kind         | 0 local, 1 private, 2 shared, 3 deported                          |
// | 0x019 | 1    | lockType     | shared only: 1 = dlm (lvmlockd's lock_type); else 0               |
// | 0x01A | 2    | ownerNode    | private only: the owner's node number; else 0xFFFF                |
// | 0x01C | 4    | pvCount      | number of member PV uuids that follow (≤ CONTAINER_PVS_MAX)       |
// | 0x020 | 128  | vgName       | NUL-padded                                                        |
// | 0x0A0 | 32   | vgUuid       | the VG's LVM id, 32 chars without dashes                          |
// | 0x0C0 | 64   | clusterName  | NUL-padded; required for private and shared; may be empty for local and deported (a VG of no cluster) |
// | 0x100 | 16   | clusterUuid  | the cluster image's uuid; zero when clusterName is empty          |
// | 0x110 | 32×n | pvUuids      | member PV ids, 32 chars each, in VG order                         |
// | 0x3FC | 4    | crc          | crc32Zlib of bytes 0x000-0x3FB                                    |
//
// A record torn across its two 512-byte sectors fails its CRC; a reader then takes the other copy.

import { FormatError } from '../errors.js';
import { crc32Zlib } from './crc32.js';
import { O2NM_MAX_NODES } from './o2hb-block.js';
import { formatFail, needBytes, readPaddedString, writePaddedString, type Where } from './where.js';

export const CONTAINER_MAGIC = 'SBXCONT1';
export const CONTAINER_VERSION = 1;
/** One copy; two 512-byte sectors. */
export const CONTAINER_RECORD_BYTES = 1024;
/** Primary and backup copy: the 2048..4095 gap lvm2 leaves before mda1 (lvm2.md §1). */
export const CONTAINER_PRIMARY_OFFSET_BYTES = 2048;
export const CONTAINER_BACKUP_OFFSET_BYTES = 3072;
const VG_NAME_BYTES = 128;
const UUID_CHARS = 32;
const CLUSTER_NAME_BYTES = 64;
const CLUSTER_UUID_BYTES = 16;
const PV_UUIDS_OFF = 0x110;
const CRC_OFF = CONTAINER_RECORD_BYTES - 4;
/** How many member PV uuids fit between 0x110 and the CRC. */
export const CONTAINER_PVS_MAX = Math.floor((CRC_OFF - PV_UUIDS_OFF) / UUID_CHARS);
const NO_OWNER = 0xffff;

export const CONTAINER_KINDS = ['local', 'private', 'shared', 'deported'] as const;
export type ContainerKind = (typeof CONTAINER_KINDS)[number];
export const CONTAINER_LOCK_TYPES = ['dlm'] as const;
export type ContainerLockType = (typeof CONTAINER_LOCK_TYPES)[number];

export interface ContainerRecord {
  sequence: number;
  kind: ContainerKind;
  /** Set for 'shared' only. */
  lockType: ContainerLockType | undefined;
  /** Set for 'private' only: 0..O2NM_MAX_NODES-1. */
  ownerNode: number | undefined;
  vgName: string;
  vgUuid: string;
  clusterName: string;
  clusterUuid: Buffer;
  pvUuids: string[];
}

const ID_RE = /^[A-Za-z0-9]{32}$/;

/** Refuses a record that would not decode back to itself (the writer's half of the validation). */
function checkRecord(r: ContainerRecord): void {
  const bad = (what: string): never => {
    throw new FormatError(`container record of ${r.vgName || 'a VG'}: ${what}`);
  };
  if (!Number.isSafeInteger(r.sequence) || r.sequence < 1) bad(`sequence ${r.sequence} must be a positive integer`);
  if (!CONTAINER_KINDS.includes(r.kind)) bad(`unknown kind '${String(r.kind)}'`);
  if ((r.kind === 'shared') !== (r.lockType !== undefined)) bad('a lock type goes with a shared container, and only with it');
  if ((r.kind === 'private') !== (r.ownerNode !== undefined)) bad('an owner node goes with a private container, and only with it');
  if (r.ownerNode !== undefined && (!Number.isInteger(r.ownerNode) || r.ownerNode < 0 || r.ownerNode >= O2NM_MAX_NODES)) bad(`owner node ${r.ownerNode} is not in 0..${O2NM_MAX_NODES - 1}`);
  if (!ID_RE.test(r.vgUuid)) bad(`VG uuid '${r.vgUuid}' is not 32 letters and digits`);
  if (r.pvUuids.length < 1 || r.pvUuids.length > CONTAINER_PVS_MAX) bad(`${r.pvUuids.length} member PVs; 1..${CONTAINER_PVS_MAX} fit in the record`);
  for (const id of r.pvUuids) if (!ID_RE.test(id)) bad(`PV uuid '${id}' is not 32 letters and digits`);
  if (r.clusterUuid.length !== CLUSTER_UUID_BYTES) bad(`cluster uuid must be ${CLUSTER_UUID_BYTES} bytes`);
  if ((r.kind === 'private' || r.kind === 'shared') && r.clusterName === '') bad(`a ${r.kind} container belongs to a cluster: it needs the cluster name`);
  if (r.clusterName === '' && r.clusterUuid.some((b) => b !== 0)) bad('a cluster uuid without a cluster name');
  for (const [text, what] of [[r.vgName, 'VG name'], [r.clusterName, 'cluster name']] as const) if (!/^[\x21-\x7e]*$/.test(text)) bad(`${what} '${text}' is not printable ASCII`);
  if (r.vgName === '') bad('VG name is empty');
}

export function encodeContainer(r: ContainerRecord): Buffer {
  checkRecord(r);
  const buf = Buffer.alloc(CONTAINER_RECORD_BYTES);
  buf.write(CONTAINER_MAGIC, 0, 'latin1');
  buf.writeUInt32LE(CONTAINER_VERSION, 0x08);
  buf.writeBigUInt64LE(BigInt(r.sequence), 0x10);
  buf.writeUInt8(CONTAINER_KINDS.indexOf(r.kind), 0x18);
  buf.writeUInt8(r.lockType === undefined ? 0 : CONTAINER_LOCK_TYPES.indexOf(r.lockType) + 1, 0x19);
  buf.writeUInt16LE(r.ownerNode ?? NO_OWNER, 0x1a);
  buf.writeUInt32LE(r.pvUuids.length, 0x1c);
  writePaddedString(buf, 0x20, VG_NAME_BYTES, r.vgName, 'VG name');
  buf.write(r.vgUuid, 0xa0, 'latin1');
  writePaddedString(buf, 0xc0, CLUSTER_NAME_BYTES, r.clusterName, 'cluster name');
  r.clusterUuid.copy(buf, 0x100);
  r.pvUuids.forEach((id, i) => buf.write(id, PV_UUIDS_OFF + i * UUID_CHARS, 'latin1'));
  buf.writeUInt32LE(crc32Zlib(buf.subarray(0, CRC_OFF)), CRC_OFF);
  return buf;
}

/** Decodes one copy; every defect is a FormatError naming the device and the offset of the bad field. */
export function decodeContainer(buf: Buffer, where: Where = {}): ContainerRecord {
  const fail = (rel: number, what: string): never => formatFail(where, rel, `container record: ${what}`, 'container');
  needBytes(buf, 0, CONTAINER_RECORD_BYTES, where, 'container record');
  const magic = buf.toString('latin1', 0, 8);
  if (magic !== CONTAINER_MAGIC) fail(0, `bad magic ${JSON.stringify(magic)} (expected ${CONTAINER_MAGIC})`);
  const stored = buf.readUInt32LE(CRC_OFF);
  const computed = crc32Zlib(buf.subarray(0, CRC_OFF));
  if (stored !== computed) fail(CRC_OFF, `CRC ${stored.toString(16)} does not match the contents (${computed.toString(16)}): torn or corrupt`);
  const version = buf.readUInt32LE(0x08);
  if (version !== CONTAINER_VERSION) fail(0x08, `version ${version} is not ${CONTAINER_VERSION}`);
  if (buf.readUInt32LE(0x0c) !== 0) fail(0x0c, 'reserved field is not zero');
  const seq = buf.readBigUInt64LE(0x10);
  if (seq < 1n || seq > BigInt(Number.MAX_SAFE_INTEGER)) fail(0x10, `sequence ${seq} is out of range`);
  const kindByte = buf.readUInt8(0x18);
  const kind = CONTAINER_KINDS[kindByte];
  if (kind === undefined) fail(0x18, `unknown kind ${kindByte}`);
  const lockByte = buf.readUInt8(0x19);
  const lockType = lockByte === 0 ? undefined : CONTAINER_LOCK_TYPES[lockByte - 1];
  if (lockByte !== 0 && lockType === undefined) fail(0x19, `unknown lock type ${lockByte}`);
  if ((kind === 'shared') !== (lockType !== undefined)) fail(0x19, `lock type ${lockByte} does not fit a ${kind} container`);
  const ownerRaw = buf.readUInt16LE(0x1a);
  const ownerNode = ownerRaw === NO_OWNER ? undefined : ownerRaw;
  if (ownerNode !== undefined && ownerNode >= O2NM_MAX_NODES) fail(0x1a, `owner node ${ownerNode} is not in 0..${O2NM_MAX_NODES - 1}`);
  if ((kind === 'private') !== (ownerNode !== undefined)) fail(0x1a, `owner ${ownerNode ?? 'none'} does not fit a ${kind} container`);
  const pvCount = buf.readUInt32LE(0x1c);
  if (pvCount < 1 || pvCount > CONTAINER_PVS_MAX) fail(0x1c, `member PV count ${pvCount} is not in 1..${CONTAINER_PVS_MAX}`);
  const text = (off: number, len: number, what: string): string => {
    const s = readPaddedString(buf, off, len);
    if (!/^[\x21-\x7e]*$/.test(s)) fail(off, `${what} is not printable ASCII`);
    // Only NULs after the text: a field that would not encode back the same is corrupt.
    for (let i = off + s.length; i < off + len; i++) if (buf[i] !== 0) fail(i, `${what} has bytes after its end`);
    return s;
  };
  const vgName = text(0x20, VG_NAME_BYTES, 'VG name');
  if (vgName === '') fail(0x20, 'VG name is empty');
  const id = (off: number, what: string): string => {
    const s = buf.toString('latin1', off, off + UUID_CHARS);
    if (!ID_RE.test(s)) fail(off, `${what} is not 32 letters and digits`);
    return s;
  };
  const vgUuid = id(0xa0, 'VG uuid');
  const clusterName = text(0xc0, CLUSTER_NAME_BYTES, 'cluster name');
  if ((kind === 'private' || kind === 'shared') && clusterName === '') fail(0xc0, `a ${kind} container names no cluster`);
  const clusterUuid = Buffer.from(buf.subarray(0x100, 0x110));
  if (clusterName === '' && clusterUuid.some((b) => b !== 0)) fail(0x100, 'cluster uuid is set but no cluster is named');
  const pvUuids: string[] = [];
  for (let i = 0; i < pvCount; i++) pvUuids.push(id(PV_UUIDS_OFF + i * UUID_CHARS, `member PV uuid ${i}`));
  for (let off = PV_UUIDS_OFF + pvCount * UUID_CHARS; off < CRC_OFF; off++) if (buf[off] !== 0) fail(off, 'bytes after the member PV uuids are not zero');
  return { sequence: Number(seq), kind: kind!, lockType, ownerNode, vgName, vgUuid, clusterName, clusterUuid, pvUuids };
}

/** One copy as read: the record, or why it cannot be trusted. */
export type ContainerCopy = { record: ContainerRecord; offsetBytes: number; device: string } | { error: FormatError; offsetBytes: number; device: string };

/**
 * The copy to trust: among the valid copies that belong to the VG `vgUuid`, the one with the
 * highest sequence. A corrupt or torn copy is never chosen; undefined when no copy is valid.
 */
export function newestContainer(copies: readonly ContainerCopy[], vgUuid: string): { record: ContainerRecord; device: string; offsetBytes: number } | undefined {
  let best: { record: ContainerRecord; device: string; offsetBytes: number } | undefined;
  for (const c of copies) {
    if (!('record' in c) || c.record.vgUuid !== vgUuid) continue;
    if (!best || c.record.sequence > best.record.sequence) best = c;
  }
  return best;
}
