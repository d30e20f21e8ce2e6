// Where o2hb heartbeats on an ocfs2 volume: the `heartbeat` system file, which must be a single
// extent at depth 0. The region starts at the extent's first byte; there are O2NM_MAX_NODES (255)
// slots of one device logical sector each (NOT the fs block size); node n's block is at
// offset + n × sectorSize. Facts: reference/ocfs2.md §4.1 and §11 (checked on the real kernel).

import { formatFail } from '../format/where.js';
import type { BlockDevice } from '../disk/device.js';
import { O2NM_MAX_NODES } from '../format/o2hb-block.js';
import { DINODE_FLAGS_OFFSET, DINODE_ID2_OFFSET } from '../format/ocfs2/dinode.js';
import { InodeFlag } from '../format/ocfs2/constants.js';
import { Ocfs2Volume } from './ocfs2-volume.js';

/**
 * Where an ocfs2 volume's heartbeat file keeps its slots. (The heartbeat loop's own region, with
 * its device and name, is src/heartbeat's HeartbeatRegion; src/node builds one from this.)
 */
export interface Ocfs2HeartbeatLayout {
  /** Device byte offset of node 0's heartbeat block. */
  offsetBytes: number;
  /** Slots in the region (255 = O2NM_MAX_NODES). */
  blockCount: number;
  /** Bytes per slot: the device's logical sector size. */
  blockSizeBytes: number;
}

export async function heartbeatRegion(dev: BlockDevice): Promise<Ocfs2HeartbeatLayout> {
  const vol = await Ocfs2Volume.open(dev);
  return heartbeatRegionOf(vol);
}

export async function heartbeatRegionOf(vol: Ocfs2Volume): Promise<Ocfs2HeartbeatLayout> {
  const hb = await vol.systemInode('heartbeat');
  const where = vol.where(hb.blkno);
  if (!(hb.inode.flags & InodeFlag.HEARTBEAT)) {
    formatFail({ device: vol.dev.name }, where.offsetBytes! + DINODE_FLAGS_OFFSET, `the heartbeat system inode ${hb.blkno} lacks the HEARTBEAT flag`);
  }
  const depth = hb.block.readUInt16LE(DINODE_ID2_OFFSET);
  const extents = await vol.extents(hb);
  if (depth !== 0 || extents.length !== 1) {
    // ocfs2_hb_ctl refuses the same ("bad heartbeat file", §4.1).
    formatFail({ device: vol.dev.name }, where.offsetBytes! + DINODE_ID2_OFFSET, `bad heartbeat file: inode ${hb.blkno} has ${extents.length} extents at depth ${depth}, expected one extent at depth 0`);
  }
  const ext = extents[0]!;
  const blockSizeBytes = vol.dev.sectorSizeBytes;
  const blockCount = O2NM_MAX_NODES;
  const extentBytes = ext.clusters * vol.geometry.clusterSizeBytes;
  if (blockCount * blockSizeBytes > extentBytes) {
    formatFail({ device: vol.dev.name }, where.offsetBytes! + DINODE_ID2_OFFSET, `heartbeat extent of ${extentBytes} bytes cannot hold ${blockCount} slots of ${blockSizeBytes} bytes`);
  }
  return { offsetBytes: ext.offsetBytes, blockCount, blockSizeBytes };
}
