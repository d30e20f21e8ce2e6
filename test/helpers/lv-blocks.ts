// Checksummed test blocks written through an LV by lv-writer.ts: who wrote a block (a tag and a
// node), its sequence number and the LV offset it was meant for, sealed with a CRC32C, so a reader
// of the raw PVs can tell a whole block of one writer from anything else, and where it belongs.
//
//   0  8  magic 'SBXLVWR1'
//   8  8  tag (ASCII, NUL padded): the writer's name, e.g. 'A'
//  16  4  node id
//  20  4  zero
//  24  8  seq (per writer, from 1)
//  32  8  LV offset the block was written to
//  40 ..  filler derived from seq
//  last 4 crc32c of everything before

import { crc32c } from '../../src/format/crc32.js';

export const LV_BLOCK_BYTES = 4096;
const MAGIC = Buffer.from('SBXLVWR1');

export interface LvBlock {
  tag: string;
  nodeId: number;
  seq: number;
  offsetBytes: number;
}

export function encodeLvBlock(b: LvBlock): Buffer {
  const buf = Buffer.alloc(LV_BLOCK_BYTES);
  MAGIC.copy(buf, 0);
  buf.write(b.tag.slice(0, 8), 8, 'ascii');
  buf.writeUInt32LE(b.nodeId, 16);
  buf.writeBigUInt64LE(BigInt(b.seq), 24);
  buf.writeBigUInt64LE(BigInt(b.offsetBytes), 32);
  for (let i = 40; i < LV_BLOCK_BYTES - 4; i++) buf[i] = (b.seq * 31 + i) & 0xff;
  buf.writeUInt32LE(crc32c(0, buf.subarray(0, LV_BLOCK_BYTES - 4)), LV_BLOCK_BYTES - 4);
  return buf;
}

/** The block's header if `buf` is a whole sealed block; undefined for anything else. */
export function decodeLvBlock(buf: Buffer): LvBlock | undefined {
  if (buf.length !== LV_BLOCK_BYTES || !buf.subarray(0, 8).equals(MAGIC)) return undefined;
  if (crc32c(0, buf.subarray(0, LV_BLOCK_BYTES - 4)) !== buf.readUInt32LE(LV_BLOCK_BYTES - 4)) return undefined;
  return {
    tag: buf.toString('ascii', 8, 16).replace(/\0+$/, ''),
    nodeId: buf.readUInt32LE(16),
    seq: Number(buf.readBigUInt64LE(24)),
    offsetBytes: Number(buf.readBigUInt64LE(32)),
  };
}

/** Whether a block of a writer starts in `buf` anywhere at a 512-byte boundary (a torn or misplaced block still shows its magic). */
export function hasWriterMagic(buf: Buffer, tag: string): boolean {
  const probe = Buffer.concat([MAGIC, Buffer.from(tag.slice(0, 8).padEnd(8, '\0'), 'ascii')]);
  for (let off = 0; off + probe.length <= buf.length; off += 512) if (buf.subarray(off, off + probe.length).equals(probe)) return true;
  return false;
}
