// lvmlockd's `val_blk`: the value lvmlockd keeps in a VG lock's lock value block so other hosts
// learn a VG's new metadata seqno when the ex holder lets go (reference/lvm2.md §7.6). In dlm it
// occupies the first 8 bytes of the 32-byte DLM LVB; the rest of the LVB is zero.
//
// Layout (8 bytes, little-endian):
//
// | off | size | field     | meaning                                                    |
// |-----|------|-----------|------------------------------------------------------------|
// | 0   | 2    | version   | VAL_BLK_VERSION 0x0101 (lvmlockd's VAL_BLK_VERSION)        |
// | 2   | 2    | flags     | bit 0 VBF_REMOVED: the VG was removed; other bits must be 0 |
// | 4   | 4    | rVersion  | the VG's metadata seqno at the last ex release             |
//
// An all-zero block is "never written" (a lock whose value block nobody set yet): decodeValBlk
// returns undefined for it rather than failing, as lvmlockd treats version 0 as no value.
//
// Pure codec: no I/O.

import { formatFail, type Where } from './where.js';

/** lvmlockd-core.c VAL_BLK_VERSION. */
export const VAL_BLK_VERSION = 0x0101;
export const VAL_BLK_BYTES = 8;
/** lvmlockd-core.c VBF_REMOVED: set in the VG lock's value when the VG is removed. */
export const VBF_REMOVED = 0x0001;
const FLAGS_KNOWN = VBF_REMOVED;
/** The seqno is a u32 on disk (lvm2's seqno is an unsigned 32-bit value in the metadata text too). */
export const VAL_BLK_SEQNO_MAX = 0xffff_ffff;

export interface ValBlk {
  /** The VG's metadata seqno (lvmlockd's r_version). */
  seqno: number;
  removed: boolean;
}

export function encodeValBlk(v: ValBlk, lvbLenBytes = VAL_BLK_BYTES): Buffer {
  if (!Number.isSafeInteger(v.seqno) || v.seqno < 0 || v.seqno > VAL_BLK_SEQNO_MAX) throw new RangeError(`val_blk seqno ${v.seqno} is outside 0..${VAL_BLK_SEQNO_MAX}`);
  if (lvbLenBytes < VAL_BLK_BYTES) throw new RangeError(`a value block of ${lvbLenBytes} bytes cannot hold lvmlockd's ${VAL_BLK_BYTES}-byte val_blk`);
  const b = Buffer.alloc(lvbLenBytes);
  b.writeUInt16LE(VAL_BLK_VERSION, 0);
  b.writeUInt16LE(v.removed ? VBF_REMOVED : 0, 2);
  b.writeUInt32LE(v.seqno, 4);
  return b;
}

/** The val_blk at the start of a lock value block; undefined when the block is all zero (never written). */
export function decodeValBlk(buf: Buffer, where: Where = {}): ValBlk | undefined {
  const dev = where.device ?? 'lock value block';
  if (buf.length < VAL_BLK_BYTES) formatFail(where, 0, `val_blk needs ${VAL_BLK_BYTES} bytes but the value block holds ${buf.length}`, dev);
  if (buf.every((x) => x === 0)) return undefined;
  const version = buf.readUInt16LE(0);
  if (version !== VAL_BLK_VERSION) formatFail(where, 0, `val_blk version 0x${version.toString(16).padStart(4, '0')} is not 0x${VAL_BLK_VERSION.toString(16)}`, dev);
  const flags = buf.readUInt16LE(2);
  if ((flags & ~FLAGS_KNOWN) !== 0) formatFail(where, 2, `val_blk flags 0x${flags.toString(16)} hold unknown bits`, dev);
  for (let i = VAL_BLK_BYTES; i < buf.length; i++) {
    if (buf[i] !== 0) formatFail(where, i, 'bytes after the val_blk are not zero', dev);
  }
  return { seqno: buf.readUInt32LE(4), removed: (flags & VBF_REMOVED) !== 0 };
}
