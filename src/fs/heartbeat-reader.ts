// Reading every heartbeat slot of an ocfs2 volume's heartbeat region, decoded with the o2hb
// block codec (src/format/o2hb-block.ts), checksums verified. Facts: reference/ocfs2.md §4.

import { decodeO2hbBlock, type DecodedO2hbBlock } from '../format/o2hb-block.js';
import { heartbeatRegionOf, type Ocfs2HeartbeatLayout } from './heartbeat-region.js';
import type { Ocfs2Volume } from './ocfs2-volume.js';

export interface HeartbeatSlot extends DecodedO2hbBlock {
  slot: number;
  offsetBytes: number;
}

export interface HeartbeatDump {
  region: Ocfs2HeartbeatLayout;
  /** Slots with hb_seq != 0 (the ones debugfs.ocfs2 -R hb lists). */
  slots: HeartbeatSlot[];
}

export async function readHeartbeat(vol: Ocfs2Volume): Promise<HeartbeatDump> {
  const region = await heartbeatRegionOf(vol);
  const buf = Buffer.alloc(region.blockCount * region.blockSizeBytes);
  await vol.dev.read(buf, region.offsetBytes);
  const slots: HeartbeatSlot[] = [];
  for (let i = 0; i < region.blockCount; i++) {
    const offsetBytes = region.offsetBytes + i * region.blockSizeBytes;
    const sector = buf.subarray(i * region.blockSizeBytes, (i + 1) * region.blockSizeBytes);
    const d = decodeO2hbBlock(Buffer.from(sector), { device: vol.dev.name, offsetBytes });
    if (d.seq !== 0n) slots.push({ slot: i, offsetBytes, ...d });
  }
  return { region, slots };
}
