// Directory entries (`ocfs2_dir_entry`), packed into directory blocks or into an inode's inline
// data area. Facts: reference/ocfs2.md §2.2.
//
// | off  | size     | field     | notes                                            |
// |------|----------|-----------|--------------------------------------------------|
// | 0x00 | 8        | inode     | child's inode block number; 0 = unused entry     |
// | 0x08 | 2        | rec_len   | multiple of 4; distance to the next entry        |
// | 0x0A | 1        | name_len  |                                                  |
// | 0x0B | 1        | file_type | DirFileType                                      |
// | 0x0C | name_len | name      | not NUL-terminated, padded to 4 bytes            |
//
// Entries never cross the end of a block (or of the inline area); the last one's rec_len runs to
// that end. A directory-block trailer ("DIRTRL1", last 64 bytes) is shaped like an unused entry
// (inode 0, rec_len 64), so a linear scan skips it with no special case.

import { formatFail, readU64Safe, type Where } from '../where.js';

export const DIR_ENTRY_HEADER_BYTES = 12;
/** OCFS2_MAX_FILENAME_LEN (name_len is one byte). */
export const OCFS2_MAX_FILENAME_LEN = 255;
export const DIR_TRAILER_BYTES = 64;

export interface DirEntry {
  inode: number;
  recLen: number;
  name: string;
  fileType: number;
  /** Offset of the entry in the scanned buffer. */
  offset: number;
}

/** Smallest rec_len holding a name of this length: (name_len + 12 + 3) & ~3. */
export function dirRecLen(nameLen: number): number {
  return (nameLen + DIR_ENTRY_HEADER_BYTES + 3) & ~3;
}

/**
 * Decodes the live entries in buf[start, end). Validates every rec_len (≥ 12, a multiple of 4,
 * big enough for its name, not crossing `end`); an entry with inode 0 or name_len 0 is unused.
 */
export function parseDirEntries(buf: Buffer, start: number, end: number, where: Where): DirEntry[] {
  if (end > buf.length || start > end) formatFail(where, start, `directory area ${start}..${end} lies outside the ${buf.length}-byte buffer`);
  const entries: DirEntry[] = [];
  let off = start;
  while (off < end) {
    if (end - off < DIR_ENTRY_HEADER_BYTES) formatFail(where, off, `directory entry header needs ${DIR_ENTRY_HEADER_BYTES} bytes, ${end - off} left`);
    const recLen = buf.readUInt16LE(off + 8);
    const nameLen = buf.readUInt8(off + 10);
    if (recLen < DIR_ENTRY_HEADER_BYTES || recLen % 4 !== 0) formatFail(where, off + 8, `directory entry rec_len ${recLen} is not a multiple of 4 of at least ${DIR_ENTRY_HEADER_BYTES}`);
    if (off + recLen > end) formatFail(where, off + 8, `directory entry rec_len ${recLen} crosses the end of the block`);
    if (nameLen > 0 && dirRecLen(nameLen) > recLen) formatFail(where, off + 10, `directory entry name_len ${nameLen} does not fit its rec_len ${recLen}`);
    const inode = readU64Safe(buf, off, where, 'directory entry inode');
    if (inode !== 0 && nameLen !== 0) {
      entries.push({ inode, recLen, name: buf.toString('utf8', off + 12, off + 12 + nameLen), fileType: buf.readUInt8(off + 11), offset: off });
    }
    off += recLen;
  }
  return entries;
}

/**
 * Packs entries into an area of `areaBytes` bytes: each entry gets its minimum rec_len and the
 * last one stretches to the end. Throws RangeError when they do not fit.
 */
export function encodeDirEntries(entries: { inode: number; name: string; fileType: number }[], areaBytes: number): Buffer {
  const area = Buffer.alloc(areaBytes);
  let off = 0;
  entries.forEach((e, i) => {
    const name = Buffer.from(e.name, 'utf8');
    if (name.length === 0 || name.length > OCFS2_MAX_FILENAME_LEN) throw new RangeError(`directory entry name '${e.name}' has a bad length`);
    const minLen = dirRecLen(name.length);
    const recLen = i === entries.length - 1 ? areaBytes - off : minLen;
    if (recLen < minLen || off + recLen > areaBytes) throw new RangeError(`directory entries do not fit in ${areaBytes} bytes`);
    area.writeBigUInt64LE(BigInt(e.inode), off);
    area.writeUInt16LE(recLen, off + 8);
    area.writeUInt8(name.length, off + 10);
    area.writeUInt8(e.fileType, off + 11);
    name.copy(area, off + 12);
    off += recLen;
  });
  if (entries.length === 0) area.writeUInt16LE(areaBytes, 8);
  return area;
}
