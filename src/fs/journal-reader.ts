// Reading a slot's JBD2 journal: the journal inode's ocfs2 side (DIRTY flag, recovery
// generation), the JBD2 superblock, and a block-by-block walk of the whole log that classifies
// every block by its header, as `debugfs.ocfs2 -R "logdump N"` does: descriptor blocks with their
// tags, commit blocks, revoke blocks with their records; runs of other blocks are data.
// Facts: reference/ocfs2.md §5.

import { FormatError, SanboxError } from '../errors.js';
import { InodeFlag, OCFS2_JOURNAL_DIRTY_FL, slotFileName } from '../format/ocfs2/constants.js';
import { DINODE_FLAGS_OFFSET, DINODE_ID1_OFFSET } from '../format/ocfs2/dinode.js';
import { BlockCheckOffset, writeBlockCheck } from '../format/ocfs2/block-check.js';
import { decodeJbd2Header, isJbd2Block, parseCommit, parseDescriptor, parseRevoke, type Jbd2Commit, type Jbd2Descriptor, type Jbd2Revoke } from '../format/jbd2/log-blocks.js';
import { Jbd2BlockType, JBD2_SUPERBLOCK_BYTES, parseJbd2Superblock, setJbd2LogStart, type Jbd2Superblock } from '../format/jbd2/superblock.js';
import { scanJournal, type JournalScan } from './journal-scan.js';
import type { InodeBlock, Ocfs2Volume } from './ocfs2-volume.js';

/** Log blocks read per device read while walking. */
const WALK_CHUNK_BLOCKS = 256;

export type LogEntry =
  | { kind: 'superblock'; block: number }
  | { kind: 'descriptor'; block: number; sequence: number; descriptor: Jbd2Descriptor }
  | { kind: 'commit'; block: number; sequence: number; commit: Jbd2Commit }
  | { kind: 'revoke'; block: number; sequence: number; revoke: Jbd2Revoke }
  | { kind: 'other'; block: number; sequence: number; blockType: number }
  | { kind: 'data'; block: number; lastBlock: number };

export interface JournalDump {
  slot: number;
  inodeBlkno: number;
  dirty: boolean;
  journalFlags: number;
  recoveryGeneration: number;
  superblock: Jbd2Superblock;
  entries: LogEntry[];
  /** The kernel's scan pass from s_start: the committed transactions a replay would apply. */
  scan: JournalScan;
}

/** A slot's journal opened for reading: its inode, JBD2 superblock and log-to-device mapping. */
export interface OpenJournal {
  slot: number;
  inode: InodeBlock;
  dirty: boolean;
  recoveryGeneration: number;
  superblock: Jbd2Superblock;
  /** Device block of log block l (throws a FormatError on a hole). */
  phys: (logBlock: number) => number;
  /** Reads n log blocks from l, one device read per contiguous run. */
  readLog: (logBlock: number, count: number) => Promise<Buffer>;
}

/** Opens slot `slot`'s journal: validates the inode (JOURNAL flag, no holes) and the JBD2 superblock. */
export async function openJournal(vol: Ocfs2Volume, slot: number): Promise<OpenJournal> {
  if (!Number.isInteger(slot) || slot < 0 || slot >= vol.sb.maxSlots) {
    throw new SanboxError('EINVAL', `${vol.dev.name}: slot ${slot} is outside 0..${vol.sb.maxSlots - 1}`, { device: vol.dev.name });
  }
  const ino = await vol.systemInode(slotFileName('journal', slot));
  if (!(ino.inode.flags & InodeFlag.JOURNAL)) {
    const off = vol.where(ino.blkno, DINODE_FLAGS_OFFSET).offsetBytes!;
    throw new FormatError(`${vol.dev.name}: journal inode ${ino.blkno} lacks the JOURNAL flag (at byte offset ${off})`, { device: vol.dev.name, offsetBytes: off });
  }
  const bs = vol.blockSizeBytes;
  const extents = await vol.extents(ino);
  const fileBlocks = Number(ino.inode.sizeBytes / BigInt(bs));
  const phys = (l: number): number => {
    const p = l < fileBlocks ? vol.mapBlock(extents, l) : undefined;
    if (p === undefined) {
      const off = vol.where(ino.blkno, 0xc0).offsetBytes!;
      throw new FormatError(`${vol.dev.name}: journal:${slot} has a hole at log block ${l} (at byte offset ${off})`, { device: vol.dev.name, offsetBytes: off });
    }
    return p;
  };
  const sbBuf = Buffer.alloc(JBD2_SUPERBLOCK_BYTES);
  // The JBD2 superblock may span two 512-byte blocks; they are contiguous within one extent.
  for (let k = 0; k * bs < JBD2_SUPERBLOCK_BYTES; k++) {
    const b = await vol.readBlocks(phys(k), 1);
    b.copy(sbBuf, k * bs, 0, Math.min(bs, JBD2_SUPERBLOCK_BYTES - k * bs));
  }
  const sb = parseJbd2Superblock(sbBuf, { device: vol.dev.name, offsetBytes: phys(0) * bs }, bs);
  if (sb.maxLen > fileBlocks) {
    throw new FormatError(`${vol.dev.name}: journal:${slot} s_maxlen ${sb.maxLen} exceeds the ${fileBlocks} blocks of the journal file (at byte offset ${phys(0) * bs + 0x10})`, { device: vol.dev.name, offsetBytes: phys(0) * bs + 0x10 });
  }
  return {
    slot,
    inode: ino,
    dirty: (ino.inode.id1a & OCFS2_JOURNAL_DIRTY_FL) !== 0,
    recoveryGeneration: ino.inode.id1b,
    superblock: sb,
    phys,
    readLog: (l, n) => readLogBlocks(vol, phys, l, n),
  };
}

export async function readJournal(vol: Ocfs2Volume, slot: number): Promise<JournalDump> {
  const j = await openJournal(vol, slot);
  const { superblock: sb, phys } = j;
  const bs = vol.blockSizeBytes;
  const entries: LogEntry[] = [{ kind: 'superblock', block: 0 }];
  let dataStart = -1;
  const flushData = (upTo: number): void => {
    if (dataStart >= 0) entries.push({ kind: 'data', block: dataStart, lastBlock: upTo - 1 });
    dataStart = -1;
  };
  // Like debugfs, walk every block after block 0 (at 512-byte blocks block 1 is the superblock's
  // second half; it carries no magic, so it shows as data).
  const firstWalked = 1;
  for (let l = firstWalked; l < sb.maxLen; l += WALK_CHUNK_BLOCKS) {
    const n = Math.min(WALK_CHUNK_BLOCKS, sb.maxLen - l);
    const chunk = await j.readLog(l, n);
    for (let k = 0; k < n; k++) {
      const block = chunk.subarray(k * bs, (k + 1) * bs);
      const lb = l + k;
      if (!isJbd2Block(block)) {
        if (dataStart < 0) dataStart = lb;
        continue;
      }
      const h = decodeJbd2Header(block);
      const where = { device: vol.dev.name, offsetBytes: phys(lb) * bs };
      flushData(lb);
      if (h.blockType === Jbd2BlockType.DESCRIPTOR) entries.push({ kind: 'descriptor', block: lb, sequence: h.sequence, descriptor: parseDescriptor(block, sb, where) });
      else if (h.blockType === Jbd2BlockType.COMMIT) entries.push({ kind: 'commit', block: lb, sequence: h.sequence, commit: parseCommit(block, sb, where) });
      else if (h.blockType === Jbd2BlockType.REVOKE) entries.push({ kind: 'revoke', block: lb, sequence: h.sequence, revoke: parseRevoke(block, sb, where) });
      else entries.push({ kind: 'other', block: lb, sequence: h.sequence, blockType: h.blockType });
    }
  }
  flushData(sb.maxLen);
  const scan = await scanJournal(sb, (l) => j.readLog(l, 1), { device: vol.dev.name, offsetOf: (l) => phys(l) * bs });
  return {
    scan,
    slot,
    inodeBlkno: j.inode.blkno,
    dirty: j.dirty,
    journalFlags: j.inode.inode.id1a,
    recoveryGeneration: j.recoveryGeneration,
    superblock: sb,
    entries,
  };
}

/** Reads n log blocks from logical block l, one device read per physically contiguous run. */
async function readLogBlocks(vol: Ocfs2Volume, phys: (l: number) => number, l: number, n: number): Promise<Buffer> {
  const bs = vol.blockSizeBytes;
  const out = Buffer.alloc(n * bs);
  let k = 0;
  while (k < n) {
    const start = phys(l + k);
    let run = 1;
    while (k + run < n && phys(l + k + run) === start + run) run++;
    const b = await vol.readBlocks(start, run);
    b.copy(out, k * bs);
    k += run;
  }
  return out;
}

/** Writes s_start/s_sequence into the journal's JBD2 superblock (in place, checksum redone), flushed. */
export async function writeLogStart(vol: Ocfs2Volume, j: OpenJournal, start: number, sequence: number): Promise<void> {
  const bs = vol.blockSizeBytes;
  const blk = j.phys(0);
  // At 512-byte blocks the superblock spans log blocks 0 and 1; both live in one extent.
  const buf = await vol.readBlocks(blk, Math.ceil(JBD2_SUPERBLOCK_BYTES / bs));
  setJbd2LogStart(buf, start, sequence);
  await vol.dev.write(buf, blk * bs);
  await vol.dev.flush();
}

/** Rewrites the journal inode's DIRTY flag and/or recovery generation (metaecc redone), flushed. */
export async function writeJournalInode(vol: Ocfs2Volume, j: OpenJournal, change: { dirty?: boolean; recoveryGeneration?: number }): Promise<void> {
  const ino = Buffer.from((await vol.readInode(j.inode.blkno)).block);
  if (change.dirty !== undefined) {
    const flags = ino.readUInt32LE(DINODE_ID1_OFFSET);
    ino.writeUInt32LE((change.dirty ? flags | OCFS2_JOURNAL_DIRTY_FL : flags & ~OCFS2_JOURNAL_DIRTY_FL) >>> 0, DINODE_ID1_OFFSET);
  }
  if (change.recoveryGeneration !== undefined) ino.writeUInt32LE(change.recoveryGeneration >>> 0, DINODE_ID1_OFFSET + 4);
  if (vol.metaEcc) writeBlockCheck(ino, BlockCheckOffset.DINODE);
  await vol.dev.write(ino, j.inode.blkno * vol.blockSizeBytes);
  await vol.dev.flush();
}
