// The state of our SCSI-3 persistent-reservation emulation (reference/locking.md §4.1-4.2): the
// registered key of each initiator (one initiator per node number), the reservation (holder key
// and type), the PRgeneration counter, and the last key preempted from each node (so anyone can
// tell that a given incarnation was fenced). It lives in the cluster image's "reservations"
// region, or in a sidecar file for a plain disk.
//
// Two copies (A at 0, B at RESERVATIONS_RECORD_BYTES) are written alternately; a reader takes the
// valid copy with the higher updateSeq, so a torn write never loses the previous state.
//
// Record layout (8192 bytes, little-endian), the one place it is written down:
//
// | off    | size  | field           | meaning                                                  |
// |--------|-------|-----------------|----------------------------------------------------------|
// | 0x000  | 8     | magic           | "SBXPRES1"                                               |
// | 0x008  | 4     | version         | 1                                                        |
// | 0x00C  | 4     | prGeneration    | bumped by register/clear/preempt (SPC), not by reserve/release |
// | 0x010  | 8     | updateSeq       | bumped by every change; orders the two copies            |
// | 0x018  | 8     | reservationKey  | holder's key; 0 = no reservation                         |
// | 0x020  | 1     | reservationType | 0 none, 1 WE, 3 EA, 5 WERO, 6 EARO, 7 WEAR, 8 EAAR      |
// | 0x021  | 3     | reserved        | zero                                                     |
// | 0x024  | 4     | initiators      | 255                                                      |
// | 0x028  | 24    | reserved        | zero                                                     |
// | 0x040  | 8×255 | registered[n]   | node n's registered key; 0 = not registered              |
// | 0x838  | 8×255 | preempted[n]    | the last key preempted from node n; 0 = none             |
// | 0x1030 | –     | reserved        | zero up to the CRC                                       |
// | 0x1FFC | 4     | crc32           | CRC-32 of the record with this field zeroed              |

import { FormatError } from '../errors.js';
import { formatFail, type Where } from './where.js';
import { checkCrc32Zlib, sealCrc32Zlib } from './crc32.js';
import { O2NM_MAX_NODES } from './o2hb-block.js';

export const RESERVATIONS_MAGIC = 'SBXPRES1';
export const RESERVATIONS_VERSION = 1;
export const RESERVATIONS_RECORD_BYTES = 8192;
/** Both copies. */
export const RESERVATIONS_PAYLOAD_BYTES = 2 * RESERVATIONS_RECORD_BYTES;
/** One initiator per o2hb node number: the on-disk arrays have O2NM_MAX_NODES (255) entries. */
export const INITIATORS = O2NM_MAX_NODES;
const OFF_REGISTERED = 0x40;
const OFF_PREEMPTED = OFF_REGISTERED + 8 * INITIATORS;
const CRC_OFF = RESERVATIONS_RECORD_BYTES - 4;

/** SPC reservation types (reference/locking.md §4.1). */
export const PR_TYPES = { none: 0, writeExclusive: 1, exclusiveAccess: 3, writeExclusiveRegistrantsOnly: 5, exclusiveAccessRegistrantsOnly: 6, writeExclusiveAllRegistrants: 7, exclusiveAccessAllRegistrants: 8 } as const;
const VALID_TYPES = new Set<number>(Object.values(PR_TYPES));

export interface ReservationState {
  prGeneration: number;
  updateSeq: bigint;
  reservationKey: bigint;
  reservationType: number;
  registered: bigint[]; // INITIATORS entries
  preempted: bigint[]; // INITIATORS entries
}

export type { Where } from './where.js';

export function emptyReservations(): ReservationState {
  return { prGeneration: 0, updateSeq: 0n, reservationKey: 0n, reservationType: 0, registered: new Array<bigint>(INITIATORS).fill(0n), preempted: new Array<bigint>(INITIATORS).fill(0n) };
}

export function encodeReservations(s: ReservationState): Buffer {
  if (s.registered.length !== INITIATORS || s.preempted.length !== INITIATORS) throw new FormatError(`reservations: need ${INITIATORS} initiator entries`);
  if (!VALID_TYPES.has(s.reservationType)) throw new FormatError(`reservations: type ${s.reservationType} is not an SPC type`);
  if ((s.reservationKey === 0n) !== (s.reservationType === 0)) throw new FormatError('reservations: a reservation needs both a key and a type');
  const buf = Buffer.alloc(RESERVATIONS_RECORD_BYTES);
  buf.write(RESERVATIONS_MAGIC, 0, 'latin1');
  buf.writeUInt32LE(RESERVATIONS_VERSION, 0x08);
  buf.writeUInt32LE(s.prGeneration >>> 0, 0x0c);
  buf.writeBigUInt64LE(s.updateSeq, 0x10);
  buf.writeBigUInt64LE(s.reservationKey, 0x18);
  buf.writeUInt8(s.reservationType, 0x20);
  buf.writeUInt32LE(INITIATORS, 0x24);
  for (let n = 0; n < INITIATORS; n++) {
    buf.writeBigUInt64LE(s.registered[n]!, OFF_REGISTERED + 8 * n);
    buf.writeBigUInt64LE(s.preempted[n]!, OFF_PREEMPTED + 8 * n);
  }
  sealCrc32Zlib(buf, CRC_OFF);
  return buf;
}

/** Decodes one copy; returns null for an all-zero copy (never written). */
export function decodeReservations(buf: Buffer, where: Where = {}): ReservationState | null {
  const bad = (msg: string, rel = 0): never => formatFail(where, rel, `reservations record ${msg}`, 'reservations');
  if (buf.length !== RESERVATIONS_RECORD_BYTES) bad(`must be ${RESERVATIONS_RECORD_BYTES} bytes, got ${buf.length}`);
  if (buf.every((b) => b === 0)) return null;
  if (buf.subarray(0, 8).toString('latin1') !== RESERVATIONS_MAGIC) bad('has a bad magic');
  const version = buf.readUInt32LE(0x08);
  if (version !== RESERVATIONS_VERSION) bad(`has unsupported version ${version}`, 0x08);
  checkCrc32Zlib(buf, CRC_OFF, where, 'reservations record', 'reservations');
  if (buf.readUInt32LE(0x24) !== INITIATORS) bad(`has ${buf.readUInt32LE(0x24)} initiators, expected ${INITIATORS}`, 0x24);
  const type = buf.readUInt8(0x20);
  if (!VALID_TYPES.has(type)) bad(`has unknown reservation type ${type}`, 0x20);
  const key = buf.readBigUInt64LE(0x18);
  if ((key === 0n) !== (type === 0)) bad('has a reservation key without a type (or the reverse)', 0x18);
  const registered: bigint[] = [];
  const preempted: bigint[] = [];
  for (let n = 0; n < INITIATORS; n++) {
    registered.push(buf.readBigUInt64LE(OFF_REGISTERED + 8 * n));
    preempted.push(buf.readBigUInt64LE(OFF_PREEMPTED + 8 * n));
  }
  return { prGeneration: buf.readUInt32LE(0x0c), updateSeq: buf.readBigUInt64LE(0x10), reservationKey: key, reservationType: type, registered, preempted };
}

/**
 * Picks the current state from both copies: the valid one with the higher updateSeq. With
 * `need` = 'either', a copy that fails to decode is skipped (it was torn by a crash mid-write); if
 * neither copy was ever written the state is empty; it throws only when both copies are corrupt.
 * With 'both', any bad copy throws (a live reader re-reads first: the copy may be mid-write).
 */
export function decodeReservationCopies(payload: Buffer, where: Where = {}, need: 'either' | 'both' = 'either'): ReservationState {
  if (payload.length < RESERVATIONS_PAYLOAD_BYTES) {
    formatFail(where, 0, `reservations payload needs ${RESERVATIONS_PAYLOAD_BYTES} bytes, got ${payload.length}`, 'reservations');
  }
  const base = where.offsetBytes ?? 0;
  let best: ReservationState | null = null;
  let errors = 0;
  let firstErr: unknown;
  let empty = 0;
  for (let i = 0; i < 2; i++) {
    try {
      const s = decodeReservations(payload.subarray(i * RESERVATIONS_RECORD_BYTES, (i + 1) * RESERVATIONS_RECORD_BYTES), {
        device: where.device,
        offsetBytes: base + i * RESERVATIONS_RECORD_BYTES,
      });
      if (s === null) empty++;
      else if (best === null || s.updateSeq > best.updateSeq) best = s;
    } catch (err) {
      if (!(err instanceof FormatError) || need === 'both') throw err;
      errors++;
      firstErr ??= err;
    }
  }
  if (best !== null) return best;
  if (errors === 2 || (errors === 1 && empty === 0)) throw firstErr;
  return emptyReservations();
}

/** Which copy the next write goes to: the one not holding the current state. */
export function nextCopyIndex(current: ReservationState): number {
  return Number((current.updateSeq + 1n) % 2n);
}
