// Replaying one slot's JBD2 journal onto the volume's home blocks, as Linux does at mount
// (fs/jbd2/recovery.c; facts: reference/ocfs2.md §5.10, §5.11, §11):
//
// 1. PASS_SCAN from (s_start, s_sequence): committed transactions up to the first block without
//    the magic, with another sequence or of unknown type (scanJournal). end = first ID not there.
// 2. PASS_REVOKE: every revoke record of transaction t marks its block revoked at max(t). ocfs2
//    itself writes none (§11), but another writer's revoke blocks are honoured.
// 3. PASS_REPLAY: each tag's log copy goes home unless revoked at a sequence >= its transaction;
//    later transactions win; an ESCAPE tag gets the JBD2 magic put back in its first 4 bytes.
// 4. The log is marked empty: s_start = 0, s_sequence = end + 1 (an ID is skipped on purpose so
//    a stale commit block can never match).
//
// Everything is read and validated before the first write: a journal with a bad block (a read
// error, a descriptor whose tags run off the block, a tag naming a block outside the volume)
// stops the replay with nothing written, and so does a committed transaction with a bad checksum
// (journal-scan.ts `corrupt`). The ocfs2 side of marking clean (DIRTY flag, recovery
// generation) is recover.ts's, which orders the writes so an interrupted recovery can be rerun.
//
// This is the one replay: `sanbox recover` uses it offline, a node's mount (own dirty slot) and a
// survivor's recovery of a dead slot use it online.

import { FormatError } from '../errors.js';
import { JBD2_MAGIC } from '../format/jbd2/superblock.js';
import { TagFlag } from '../format/jbd2/log-blocks.js';
import { openJournal, writeLogStart, type OpenJournal } from './journal-reader.js';
import { scanJournal, type JournalScan } from './journal-scan.js';
import type { Ocfs2Volume } from './ocfs2-volume.js';

export interface ReplayedTransaction {
  sequence: number;
  /** Home blocks this transaction's copies were written to (after revokes, in log order). */
  homeBlocks: number[];
  /** Home blocks whose copy a revoke record suppressed. */
  revokedBlocks: number[];
}

export interface ReplayResult {
  slot: number;
  /** s_start was not 0: there was a log to replay. */
  hadLog: boolean;
  startSequence: number;
  /** First transaction ID not in the log. */
  endSequence: number;
  /** s_sequence after the replay (end + 1), or unchanged when there was no log. */
  nextSequence: number;
  transactions: ReplayedTransaction[];
  /** Distinct home blocks written. */
  blocksWritten: number;
  /** Why the scan stopped. */
  stopReason: string;
}

export interface ReplayOptions {
  /** Plan only: read, validate and report, write nothing. */
  dryRun?: boolean;
}

/** wrap-safe "a is at or after b" for u32 transaction IDs (tid_geq in jbd2). */
export function tidGeq(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/**
 * Replays slot `slot`'s journal onto the volume and marks the log empty. Does not look at or
 * change the ocfs2 DIRTY flag (the caller decides whether the slot needs recovery at all).
 */
export async function replayJournal(vol: Ocfs2Volume, slot: number, opts: ReplayOptions = {}): Promise<ReplayResult> {
  const j = await openJournal(vol, slot);
  const sb = j.superblock;
  const bs = vol.blockSizeBytes;
  const scan = await scanJournal(sb, (l) => j.readLog(l, 1), { device: vol.dev.name, offsetOf: (l) => j.phys(l) * bs });
  const result: ReplayResult = {
    slot,
    hadLog: scan.needsRecovery,
    startSequence: scan.startSequence,
    endSequence: scan.endSequence,
    nextSequence: sb.sequence,
    transactions: [],
    blocksWritten: 0,
    stopReason: scan.stopReason,
  };
  if (!scan.needsRecovery) return result;
  if (scan.corrupt !== undefined) {
    throw new FormatError(`${vol.dev.name}: journal:${slot} ${scan.corrupt.reason}; nothing replayed (at byte offset ${scan.corrupt.offsetBytes})`, { device: vol.dev.name, offsetBytes: scan.corrupt.offsetBytes });
  }

  const writes = await planWrites(vol, j, scan, result);
  result.nextSequence = (scan.endSequence + 1) >>> 0;
  result.blocksWritten = writes.size;
  if (opts.dryRun) return result;

  // Home blocks first, durable, and only then the log marked empty: a crash in between replays
  // the same committed transactions again, which writes the same blocks.
  for (const [home, data] of writes) await vol.dev.write(data, home * bs);
  await vol.dev.flush();
  await writeLogStart(vol, j, 0, result.nextSequence);
  return result;
}

/** PASS_REVOKE and PASS_REPLAY over the scanned transactions: the final image of each home block. */
async function planWrites(vol: Ocfs2Volume, j: OpenJournal, scan: JournalScan, result: ReplayResult): Promise<Map<number, Buffer>> {
  const revoked = new Map<number, number>();
  for (const tx of scan.transactions) {
    for (const home of tx.revokedHomeBlocks) {
      const prev = revoked.get(home);
      if (prev === undefined || tidGeq(tx.sequence, prev)) revoked.set(home, tx.sequence);
    }
  }
  const writes = new Map<number, Buffer>();
  const bs = vol.blockSizeBytes;
  for (const tx of scan.transactions) {
    const done: ReplayedTransaction = { sequence: tx.sequence, homeBlocks: [], revokedBlocks: [] };
    for (const tag of tx.tags) {
      const rev = revoked.get(tag.homeBlock);
      if (rev !== undefined && tidGeq(rev, tx.sequence)) {
        done.revokedBlocks.push(tag.homeBlock);
        continue;
      }
      if (!Number.isSafeInteger(tag.homeBlock) || tag.homeBlock >= vol.blockCount) {
        const off = j.phys(tx.descriptorBlocks[0] ?? 0) * bs;
        throw new FormatError(`${vol.dev.name}: journal:${j.slot} transaction ${tx.sequence} logs home block ${tag.homeBlock}, past the end of the volume (${vol.blockCount} blocks) (at byte offset ${off})`, { device: vol.dev.name, offsetBytes: off });
      }
      const copy = await j.readLog(tag.logBlock, 1);
      if (tag.flags & TagFlag.ESCAPE) copy.writeUInt32BE(JBD2_MAGIC, 0);
      // A Map keeps first-insertion order; the value is the latest transaction's copy.
      writes.set(tag.homeBlock, copy);
      done.homeBlocks.push(tag.homeBlock);
    }
    result.transactions.push(done);
  }
  return writes;
}
