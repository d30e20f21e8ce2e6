// The per-node record in the cluster image's "nodes" region: one 512-byte record per node number,
// written only by that node when it joins (single-writer sectors). It tells everyone else how to
// fence this incarnation: the pid AND its start time (field 22 of /proc/PID/stat) on the machine
// with this boot id, so pid reuse can never make a power fence kill a stranger, and the SCSI-3 PR
// key the node registered.
//
// Layout (little-endian), the one place it is written down:
//
// | off   | size | field         | meaning                                                   |
// |-------|------|---------------|-----------------------------------------------------------|
// | 0x000 | 8    | magic         | "SBXNODE1"                                                |
// | 0x008 | 4    | version       | 1                                                         |
// | 0x00C | 2    | nodeId        | must equal the record's index                             |
// | 0x00E | 2    | reserved      | zero                                                      |
// | 0x010 | 8    | generation    | the o2hb generation of this join                          |
// | 0x018 | 4    | pid           | the node process                                          |
// | 0x01C | 4    | reserved      | zero                                                      |
// | 0x020 | 8    | pidStartTicks | /proc/PID/stat field 22 (clock ticks after boot)          |
// | 0x028 | 16   | bootId        | /proc/sys/kernel/random/boot_id as 16 bytes               |
// | 0x038 | 8    | joinedAtMs    | wall clock at join (for display only)                     |
// | 0x040 | 8    | prKey         | the reservation key this incarnation registered           |
// | 0x048 | 64   | name          | node name, UTF-8, NUL-padded                              |
// | 0x088 | 64   | hostname      | UTF-8, NUL-padded                                         |
// | 0x0C8 | 4    | commandPgid   | process group of the commands the node runs; 0 = none     |
// | 0x0CC | 4    | reserved      | zero                                                      |
// | 0x0D0 | 8    | commandStartTicks | start time of that group's leader (as pidStartTicks)  |
// | 0x0D8 | 256  | clients       | NODE_CLIENTS_MAX entries of 16 bytes: pid u32, reserved   |
// |       |      |               | u32 zero, startTicks u64; pid 0 = an unused entry (all zero) |
// | 0x1D8 | –    | reserved      | zero up to the CRC                                        |
// | 0x1FC | 4    | crc32         | CRC-32 of the record with this field zeroed               |
//
// An all-zero record means "this node number never joined". commandPgid/commandStartTicks were
// added in version 1's reserved bytes (a backward-compatible addition: older readers see zeros or
// ignore them): the power fence kills that group with the node, so whatever a node runs dies with it.
// The clients table was added the same way: the processes acting as this node through its control
// channel (`sanbox ctl C N lvm …`, src/node/clients.ts), each by pid and start time on the machine
// of bootId; a fence of the node kills them, and so does the node when it finds itself fenced
// (src/heartbeat/fencer.ts, src/node/node.ts).

import { FormatError } from '../errors.js';
import { formatFail, readPaddedString, writePaddedString, type Where } from './where.js';
import { checkCrc32Zlib, sealCrc32Zlib } from './crc32.js';
import { isNodeId, O2NM_MAX_NODES } from './o2hb-block.js';

export const NODE_RECORD_MAGIC = 'SBXNODE1';
export const NODE_RECORD_VERSION = 1;
export const NODE_RECORD_BYTES = 512;
const CRC_OFF = NODE_RECORD_BYTES - 4;
const NAME_BYTES = 64;
const CLIENTS_OFF = 0xd8;
const CLIENT_ENTRY_BYTES = 16;
/**
 * Clients a record names at most: the room left in the record before its CRC is (0x1FC - 0xD8) /
 * 16 = 18 entries, rounded down to a power of two, which leaves 36 bytes reserved.
 */
export const NODE_CLIENTS_MAX = 16;

export interface NodeRecord {
  nodeId: number;
  generation: bigint;
  pid: number;
  pidStartTicks: bigint;
  bootId: Buffer; // 16 bytes
  joinedAtMs: number;
  prKey: bigint;
  name: string;
  hostname: string;
  /** Process group of the node's commands (0: none), and its leader's start time. */
  commandPgid?: number;
  commandStartTicks?: bigint;
  /** Processes acting as this node through its control channel (pid and start time; at most NODE_CLIENTS_MAX). */
  clients?: NodeClient[];
}

/** A process acting as a node (on the node's machine): pid and /proc/PID/stat start time. */
export interface NodeClient {
  pid: number;
  startTicks: bigint;
}

export type { Where } from './where.js';


export function encodeNodeRecord(r: NodeRecord): Buffer {
  if (!isNodeId(r.nodeId)) throw new FormatError(`node record: node number ${r.nodeId} outside 0..${O2NM_MAX_NODES - 1}`);
  if (!Number.isInteger(r.pid) || r.pid < 0 || r.pid > 0xffff_ffff) throw new FormatError(`node record: pid ${r.pid} does not fit`);
  if (r.bootId.length !== 16) throw new FormatError('node record: boot id must be 16 bytes');
  const buf = Buffer.alloc(NODE_RECORD_BYTES);
  buf.write(NODE_RECORD_MAGIC, 0, 'latin1');
  buf.writeUInt32LE(NODE_RECORD_VERSION, 0x08);
  buf.writeUInt16LE(r.nodeId, 0x0c);
  buf.writeBigUInt64LE(r.generation, 0x10);
  buf.writeUInt32LE(r.pid, 0x18);
  buf.writeBigUInt64LE(r.pidStartTicks, 0x20);
  r.bootId.copy(buf, 0x28);
  buf.writeBigUInt64LE(BigInt(Math.max(0, Math.trunc(r.joinedAtMs))), 0x38);
  buf.writeBigUInt64LE(r.prKey, 0x40);
  writePaddedString(buf, 0x48, NAME_BYTES, r.name, 'name of the node record');
  writePaddedString(buf, 0x88, NAME_BYTES, r.hostname, 'hostname of the node record');
  const pgid = r.commandPgid ?? 0;
  if (!Number.isInteger(pgid) || pgid < 0 || pgid > 0xffff_ffff) throw new FormatError(`node record: command process group ${pgid} does not fit`);
  buf.writeUInt32LE(pgid, 0xc8);
  buf.writeBigUInt64LE(r.commandStartTicks ?? 0n, 0xd0);
  const clients = r.clients ?? [];
  if (clients.length > NODE_CLIENTS_MAX) throw new FormatError(`node record: ${clients.length} clients, more than ${NODE_CLIENTS_MAX}`);
  clients.forEach((c, i) => {
    if (!Number.isInteger(c.pid) || c.pid < 1 || c.pid > 0xffff_ffff) throw new FormatError(`node record: client pid ${c.pid} does not fit`);
    if (c.startTicks < 0n || c.startTicks > 0xffff_ffff_ffff_ffffn) throw new FormatError(`node record: client start time ${c.startTicks} does not fit`);
    buf.writeUInt32LE(c.pid, CLIENTS_OFF + i * CLIENT_ENTRY_BYTES);
    buf.writeBigUInt64LE(c.startTicks, CLIENTS_OFF + i * CLIENT_ENTRY_BYTES + 8);
  });
  sealCrc32Zlib(buf, CRC_OFF);
  return buf;
}

/** Decodes record `expectNodeId`; returns null for an all-zero (never used) record. */
export function decodeNodeRecord(buf: Buffer, expectNodeId: number, where: Where = {}): NodeRecord | null {
  const what = `node record ${expectNodeId}`;
  const bad = (msg: string, rel = 0): never => formatFail(where, rel, `${what} ${msg}`, 'cluster image');
  if (buf.length !== NODE_RECORD_BYTES) bad(`must be ${NODE_RECORD_BYTES} bytes, got ${buf.length}`);
  if (buf.every((b) => b === 0)) return null;
  if (buf.subarray(0, 8).toString('latin1') !== NODE_RECORD_MAGIC) bad('has a bad magic');
  const version = buf.readUInt32LE(0x08);
  if (version !== NODE_RECORD_VERSION) bad(`has unsupported version ${version}`, 0x08);
  checkCrc32Zlib(buf, CRC_OFF, where, what, 'cluster image');
  const nodeId = buf.readUInt16LE(0x0c);
  if (nodeId !== expectNodeId) bad(`names node ${nodeId}`, 0x0c);
  const joined = buf.readBigUInt64LE(0x38);
  const clients: NodeClient[] = [];
  for (let i = 0; i < NODE_CLIENTS_MAX; i++) {
    const off = CLIENTS_OFF + i * CLIENT_ENTRY_BYTES;
    const pid = buf.readUInt32LE(off);
    const startTicks = buf.readBigUInt64LE(off + 8);
    if (buf.readUInt32LE(off + 4) !== 0) bad(`client entry ${i} has a non-zero reserved field`, off + 4);
    if (pid === 0 && startTicks !== 0n) bad(`client entry ${i} has a start time but no pid`, off + 8);
    if (pid !== 0) clients.push({ pid, startTicks });
  }
  return {
    nodeId,
    generation: buf.readBigUInt64LE(0x10),
    pid: buf.readUInt32LE(0x18),
    pidStartTicks: buf.readBigUInt64LE(0x20),
    bootId: Buffer.from(buf.subarray(0x28, 0x38)),
    joinedAtMs: joined > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(joined),
    prKey: buf.readBigUInt64LE(0x40),
    name: readPaddedString(buf, 0x48, NAME_BYTES),
    hostname: readPaddedString(buf, 0x88, NAME_BYTES),
    commandPgid: buf.readUInt32LE(0xc8),
    commandStartTicks: buf.readBigUInt64LE(0xd0),
    clients,
  };
}
