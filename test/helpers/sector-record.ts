// A self-checking 512-byte sector used by the disk tests: a CRC over the rest of the sector, the
// writer's id and a sequence number, so a torn or misplaced write is visible to any reader.
//   0  u32 crc32 of bytes 4..511
//   4  u32 writer id
//   8  u32 sector index (where it was meant to land)
//  12  u32 sequence
//  16  ... pattern derived from the above

import { crc32Zlib } from '../../src/format/crc32.js';

export const RECORD_BYTES = 512;

export function makeRecord(writer: number, sector: number, seq: number): Buffer {
  const b = Buffer.alloc(RECORD_BYTES);
  b.writeUInt32LE(writer, 4);
  b.writeUInt32LE(sector, 8);
  b.writeUInt32LE(seq, 12);
  for (let i = 16; i < RECORD_BYTES; i++) b[i] = (writer * 31 + sector * 7 + seq + i) & 0xff;
  b.writeUInt32LE(crc32Zlib(b.subarray(4)), 0);
  return b;
}

export type RecordCheck = { ok: true; writer: number; sector: number; seq: number } | { ok: false; why: string };

export function checkRecord(b: Buffer): RecordCheck {
  const crc = crc32Zlib(b.subarray(4, RECORD_BYTES));
  if (crc !== b.readUInt32LE(0)) return { ok: false, why: `crc mismatch: stored ${b.readUInt32LE(0).toString(16)} computed ${crc.toString(16)}` };
  return { ok: true, writer: b.readUInt32LE(4), sector: b.readUInt32LE(8), seq: b.readUInt32LE(12) };
}
