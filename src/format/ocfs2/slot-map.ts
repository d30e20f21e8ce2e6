// The slot map system file: which node holds which slot. Facts: reference/ocfs2.md §3.
//
// Two formats, chosen by incompat EXTENDED_SLOT_MAP:
// - old: slot i is a le16 node number at byte 2*i; 0xFFFF = empty. All slots in block 0.
// - extended: slot i is 8 bytes at byte 8*i: es_valid u8 @+0 (1 = in use), 3 reserved bytes,
//   es_node_num le32 @+4. es_node_num is stale (ignored) when es_valid is 0.

import { formatFail, needBytes, type Where } from '../where.js';

export const OLD_SLOT_BYTES = 2;
export const EXTENDED_SLOT_BYTES = 8;
export const OLD_SLOT_EMPTY = 0xffff;

export interface SlotEntry {
  slot: number;
  /** The node number, or undefined when the slot is free. */
  nodeNum: number | undefined;
}

export function slotMapBytes(maxSlots: number, extended: boolean): number {
  return maxSlots * (extended ? EXTENDED_SLOT_BYTES : OLD_SLOT_BYTES);
}

/** Decodes `maxSlots` entries from the start of the slot map file's data. */
export function parseSlotMap(data: Buffer, maxSlots: number, extended: boolean, where: Where): SlotEntry[] {
  needBytes(data, 0, slotMapBytes(maxSlots, extended), where, `slot map of ${maxSlots} slots`);
  const out: SlotEntry[] = [];
  for (let slot = 0; slot < maxSlots; slot++) {
    if (extended) {
      const off = slot * EXTENDED_SLOT_BYTES;
      const valid = data.readUInt8(off);
      if (valid > 1) formatFail(where, off, `slot ${slot} has es_valid ${valid} (expected 0 or 1)`);
      out.push({ slot, nodeNum: valid === 1 ? data.readUInt32LE(off + 4) : undefined });
    } else {
      const node = data.readUInt16LE(slot * OLD_SLOT_BYTES);
      out.push({ slot, nodeNum: node === OLD_SLOT_EMPTY ? undefined : node });
    }
  }
  return out;
}

/** Encodes a slot map into a buffer of `fileBytes` (the file's size; the rest stays in the fresh-map state). */
export function encodeSlotMap(entries: SlotEntry[], extended: boolean, fileBytes: number): Buffer {
  if (fileBytes < slotMapBytes(entries.length, extended)) throw new RangeError('slot map does not fit its file');
  const buf = Buffer.alloc(fileBytes);
  // A fresh old-format map is all 0xFFFF (every slot empty), a fresh extended map all zero (§3).
  if (!extended) buf.fill(0xff);
  for (const e of entries) {
    if (extended) {
      const off = e.slot * EXTENDED_SLOT_BYTES;
      buf.writeUInt8(e.nodeNum === undefined ? 0 : 1, off);
      buf.writeUInt32LE(e.nodeNum ?? 0, off + 4);
    } else {
      buf.writeUInt16LE(e.nodeNum ?? OLD_SLOT_EMPTY, e.slot * OLD_SLOT_BYTES);
    }
  }
  return buf;
}
