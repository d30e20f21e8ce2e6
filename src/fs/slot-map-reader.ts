// Reading the slot map system file (old or extended format, by the superblock's feature bit).
// Facts: reference/ocfs2.md §3.

import { formatFail } from '../format/where.js';
import { FeatureIncompat } from '../format/ocfs2/constants.js';
import { parseSlotMap, slotMapBytes, type SlotEntry } from '../format/ocfs2/slot-map.js';
import type { Ocfs2Volume } from './ocfs2-volume.js';

export interface SlotMapInfo {
  extended: boolean;
  maxSlots: number;
  slots: SlotEntry[];
}

export async function readSlotMap(vol: Ocfs2Volume): Promise<SlotMapInfo> {
  const extended = (vol.sb.featureIncompat & FeatureIncompat.EXTENDED_SLOT_MAP) !== 0;
  const maxSlots = vol.sb.maxSlots;
  const ino = await vol.systemInode('slot_map');
  const need = slotMapBytes(maxSlots, extended);
  // The kernel refuses a slot map file smaller than max_slots entries (§3).
  if (ino.inode.sizeBytes < BigInt(need)) {
    const off = vol.where(ino.blkno, 0x20).offsetBytes!;
    formatFail({ device: vol.dev.name }, off, `slot map i_size ${ino.inode.sizeBytes} is smaller than the ${need} bytes ${maxSlots} slots need`);
  }
  const data = await vol.readFile(ino);
  const extents = await vol.extents(ino);
  const firstBlk = vol.mapBlock(extents, 0) ?? ino.blkno;
  return { extended, maxSlots, slots: parseSlotMap(data, maxSlots, extended, vol.where(firstBlk)) };
}
