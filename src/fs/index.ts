// The ocfs2-format filesystem layer: reading volumes, the heartbeat region, mkfs.
export { heartbeatRegion, heartbeatRegionOf, type Ocfs2HeartbeatLayout } from './heartbeat-region.js';
export { Ocfs2Volume, probeOcfs2BlockSize, type InodeBlock, type MappedExtent } from './ocfs2-volume.js';
export { mkfs, type MkfsOptions, type MkfsResult } from './mkfs.js';
export { probeSignatures, type SignatureHit } from '../disk/signature-probe.js';
export { readSlotMap, type SlotMapInfo } from './slot-map-reader.js';
export { readHeartbeat, type HeartbeatDump, type HeartbeatSlot } from './heartbeat-reader.js';
export { readJournal, type JournalDump, type LogEntry } from './journal-reader.js';
export { scanJournal, type JournalScan, type ScannedTransaction } from './journal-scan.js';
export { replayJournal, tidGeq, type ReplayResult, type ReplayedTransaction } from './replay.js';
export { recoverSlot, recoverVolume, LIVENESS_OBSERVE_MS_DEFAULT, type SlotRecovery, type RecoverOptions } from './recover.js';
export { recoverAllocators, type AllocRecovery } from './alloc-recovery.js';
export { checkReadableFeatures, listPath, lookupPath, readFileChunks, type ListEntry } from './namespace.js';
export { openJournal, type OpenJournal } from './journal-reader.js';
export { JournalWriter, tagsPerDescriptor, type LoggedBlock, type AppendedTransaction } from './journal-writer.js';
