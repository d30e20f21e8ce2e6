// The kernel's first recovery pass over a JBD2 log (PASS_SCAN, reference/ocfs2.md §5.10): from
// s_start with the expected sequence s_sequence, walk the circular log [s_first, s_maxlen) until a
// block lacks the magic, carries another sequence, or has an unknown type. Each commit closes a
// transaction; a trailing transaction without a commit is not part of the log. The result is what
// a replay would apply: transactions [s_sequence, end). This pass reads only; replay is elsewhere.

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
      if (d.tailValid === false) {
        scan.stopReason = 'descriptor with a bad checksum';
        break;
      }
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
      if (c.checksumValid === false) {
        scan.stopReason = 'commit with a bad checksum';
        break;
      }
      open.commitBlock = block;
      scan.transactions.push(open);
      open = undefined;
      expected = (expected + 1) >>> 0;
      steps++;
      block = next(block);
      continue;
    }
    if (h.blockType === Jbd2BlockType.REVOKE) {
      const r = parseRevoke(buf, sb, w);
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
