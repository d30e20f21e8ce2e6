// The ocfs2-format filesystem layer: reading volumes, the heartbeat region, mkfs.
export { heartbeatRegion, heartbeatRegionOf, type HeartbeatRegion } from './heartbeat-region.js';
export { Ocfs2Volume, probeOcfs2BlockSize, type InodeBlock, type MappedExtent } from './ocfs2-volume.js';
