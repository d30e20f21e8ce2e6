// The kernel's first recovery pass over a JBD2 log (PASS_SCAN, reference/ocfs2.md §5.10): from
// s_start with the expected sequence s_sequence, walk the circular log [s_first, s_maxlen) until a
// block lacks the magic, carries another sequence, or has an unknown type. Each commit closes a
// transaction; a trailing transaction without a commit is not part of the log. The result is what
// a replay would apply: transactions [s_sequence, end). This pass reads only; replay is elsewhere.
//
// Checksums (csum v2/v3 journals; fs/jbd2/recovery.c do_one_pass, PASS_SCAN): a descriptor or
// revoke block whose tail checksum fails is not the end yet — its transaction's commit decides: a
// commit time older than the previous commit's means a stale block of an earlier pass round the log
// (the log ends there); otherwise the transaction is corrupt (the kernel fails with EFSBADCRC). A
// commit whose own checksum fails likewise ends the log when it is older, else it is a failed
// commit (the kernel refuses the journal: "journal transaction N is corrupt"). A corrupt log is
// reported in `corrupt`; replay refuses it before writing anything.

import { decodeJbd2Header, isJbd2Block, parseCommit, parseDescriptor, parseRevoke } from '../format/jbd2/log-blocks.js';
import { Jbd2BlockType, type Jbd2Superblock } from '../format/jbd2/superblock.js';

/** One logged block of a transaction: where its copy sits in the log and where it belongs. */
export interface ScannedTag {
  homeBlock: number;
  /** Log block holding the copy (wrap-around applied). */
  logBlock: number;
  /** Tag flags (ESCAPE: the copy's first 4 bytes were the JBD2 magic, zeroed in the log). */
  flags: number;
}

export interface ScannedTransaction {
  sequence: number;
  tags: ScannedTag[];
  /** Log blocks of its descriptors, and the home blocks their tags name, in log order. */
  descriptorBlocks: number[];
  homeBlocks: number[];
  revokeBlocks: number[];
  revokedHomeBlocks: number[];
  commitBlock: number;
}

export interface JournalScan {
  /** False when s_start is 0: the log is empty and nothing would be replayed. */
  needsRecovery: boolean;
  startBlock: number;
  startSequence: number;
  /** First transaction ID not in the log (the kernel resumes at end + 1 after replay). */
  endSequence: number;
  transactions: ScannedTransaction[];
  /** Why the scan stopped, for the report. */
  stopReason: string;
  stopBlock: number;
  /** A committed transaction with a bad checksum (not a stale block): replay must refuse the log. */
  corrupt?: { reason: string; logBlock: number; offsetBytes: number };
}

/** Reads one log block (logical block number within the journal). */
export type LogBlockReader = (logBlock: number) => Promise<Buffer>;

export async function scanJournal(sb: Jbd2Superblock, read: LogBlockReader, where: { device?: string; offsetOf?: (logBlock: number) => number } = {}): Promise<JournalScan> {
  const scan: JournalScan = { needsRecovery: sb.start !== 0, startBlock: sb.start, startSequence: sb.sequence, endSequence: sb.sequence, transactions: [], stopReason: 'log is empty (s_start = 0)', stopBlock: 0 };
  if (sb.start === 0) return scan;
  const next = (b: number): number => (b + 1 >= sb.maxLen ? sb.first : b + 1);
  let block = Math.max(sb.start, sb.first);
  let expected = sb.sequence >>> 0;
  let open: ScannedTransaction | undefined;
  /** h_commit_sec of the last good commit (the kernel's last_trans_commit_time). */
  let lastCommitSec = 0n;
  /** A descriptor or revoke block of the open transaction whose tail checksum failed. */
  let badBlock: { what: string; block: number } | undefined;
  const offsetOf = (b: number): number => where.offsetOf?.(b) ?? 0;
  // A log can hold at most maxLen blocks; more steps than that means we went round the circle.
  const logBlocks = sb.maxLen - sb.first;
  let steps = 0;
  for (;;) {
    if (steps >= logBlocks) {
      scan.stopReason = 'went once round the whole log';
      break;
    }
    const buf = await read(block);
    const w = { device: where.device ?? 'journal', offsetBytes: where.offsetOf?.(block) ?? 0 };
    if (!isJbd2Block(buf)) {
      scan.stopReason = 'block without the JBD2 magic';
      break;
    }
    const h = decodeJbd2Header(buf);
    if (h.sequence !== expected) {
      scan.stopReason = `sequence ${h.sequence}, expected ${expected}`;
      break;
    }
    open ??= { sequence: expected, tags: [], descriptorBlocks: [], homeBlocks: [], revokeBlocks: [], revokedHomeBlocks: [], commitBlock: -1 };
    if (h.blockType === Jbd2BlockType.DESCRIPTOR) {
      const d = parseDescriptor(buf, sb, w);
      if (d.tailValid === false) badBlock ??= { what: 'descriptor', block };
      open.descriptorBlocks.push(block);
      steps += 1 + d.tags.length;
      block = next(block);
      for (const tag of d.tags) {
        open.homeBlocks.push(tag.blocknr);
        open.tags.push({ homeBlock: tag.blocknr, logBlock: block, flags: tag.flags });
        block = next(block);
      }
      continue;
    }
    if (h.blockType === Jbd2BlockType.COMMIT) {
      const c = parseCommit(buf, sb, w);
      const bad = badBlock ?? (c.checksumValid === false ? { what: 'commit', block } : undefined);
      if (bad !== undefined) {
        if (c.commitSec < lastCommitSec) {
          scan.stopReason = `stale ${bad.what} block with a bad checksum (its commit time is older than the last transaction's)`;
        } else {
          scan.stopReason = `${bad.what} block of transaction ${expected} with a bad checksum`;
          scan.corrupt = { reason: `transaction ${expected}'s ${bad.what} block (log block ${bad.block}) has a bad checksum`, logBlock: bad.block, offsetBytes: offsetOf(bad.block) };
        }
        break;
      }
      lastCommitSec = c.commitSec;
      open.commitBlock = block;
      scan.transactions.push(open);
      open = undefined;
      badBlock = undefined;
      expected = (expected + 1) >>> 0;
      steps++;
      block = next(block);
      continue;
    }
    if (h.blockType === Jbd2BlockType.REVOKE) {
      const r = parseRevoke(buf, sb, w);
      if (r.tailValid === false) badBlock ??= { what: 'revoke', block };
      open.revokeBlocks.push(block);
      open.revokedHomeBlocks.push(...r.blocks);
      steps++;
      block = next(block);
      continue;
    }
    scan.stopReason = `unknown block type ${h.blockType}`;
    break;
  }
  scan.stopBlock = block;
  scan.endSequence = expected;
  return scan;
}
