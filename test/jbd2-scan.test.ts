// The kernel's scan pass (reference §5.10) over in-memory logs: wrap-around, an uncommitted tail,
// a sequence gap, revokes, a bad commit checksum, an empty log, and a bound on a log that is all
// one transaction chain going round.

import test from 'ava';
import { encodeCommit, encodeDescriptor, encodeRevoke } from '../src/format/jbd2/log-blocks.js';
import { freshJbd2Superblock, Jbd2FeatureIncompat, type Jbd2Superblock } from '../src/format/jbd2/superblock.js';
import { scanJournal } from '../src/fs/journal-scan.js';

const BS = 1024;
const UUID = Buffer.alloc(16, 0xab);

function log(maxLen: number, incompat = 0): { sb: Jbd2Superblock; blocks: Buffer[] } {
  const sb = freshJbd2Superblock({ blockSize: BS, maxLen, uuid: UUID, incompat });
  if (incompat & Jbd2FeatureIncompat.CSUM_V3) sb.checksumType = 4;
  return { sb, blocks: Array.from({ length: maxLen }, () => Buffer.alloc(BS)) };
}

const reader = (blocks: Buffer[]) => async (l: number): Promise<Buffer> => blocks[l]!;

test('a transaction that wraps past the end of the log is found; the uncommitted tail is not', async (t) => {
  const { sb, blocks } = log(16);
  sb.start = 14;
  sb.sequence = 41;
  blocks[14] = encodeDescriptor(41, [{ blocknr: 500 }, { blocknr: 501 }], sb);
  blocks[15] = Buffer.alloc(BS, 1);
  blocks[1] = Buffer.alloc(BS, 2); // wrapped: s_first = 1
  blocks[2] = encodeCommit(41, sb);
  blocks[3] = encodeRevoke(42, [500], sb);
  blocks[4] = encodeDescriptor(42, [{ blocknr: 502 }], sb);
  blocks[5] = Buffer.alloc(BS, 3);
  blocks[6] = encodeCommit(42, sb);
  blocks[7] = encodeDescriptor(43, [{ blocknr: 503 }], sb); // never committed
  blocks[8] = Buffer.alloc(BS, 4);
  const s = await scanJournal(sb, reader(blocks));
  t.true(s.needsRecovery);
  t.deepEqual(s.transactions.map((x) => [x.sequence, x.descriptorBlocks, x.homeBlocks, x.revokedHomeBlocks, x.commitBlock]), [
    [41, [14], [500, 501], [], 2],
    [42, [4], [502], [500], 6],
  ]);
  t.is(s.endSequence, 43);
  t.is(s.stopBlock, 9);
});

test('a sequence gap or an unknown block type ends the log; an empty log scans nothing', async (t) => {
  const { sb, blocks } = log(32);
  sb.start = 1;
  sb.sequence = 7;
  blocks[1] = encodeDescriptor(7, [{ blocknr: 9 }], sb);
  blocks[3] = encodeCommit(7, sb);
  blocks[4] = encodeDescriptor(9, [{ blocknr: 10 }], sb); // 8 expected
  blocks[6] = encodeCommit(9, sb);
  let s = await scanJournal(sb, reader(blocks));
  t.deepEqual(s.transactions.map((x) => x.sequence), [7]);
  t.regex(s.stopReason, /sequence 9, expected 8/);
  blocks[4] = encodeCommit(8, sb);
  blocks[4]!.writeUInt32BE(6, 4); // unknown type, right magic and sequence
  s = await scanJournal(sb, reader(blocks));
  t.regex(s.stopReason, /unknown block type 6/);
  t.is(s.endSequence, 8);
  sb.start = 0;
  s = await scanJournal(sb, reader(blocks));
  t.false(s.needsRecovery);
  t.is(s.transactions.length, 0);
});

test('checksum v3 (the kernel\'s PASS_SCAN): a bad commit checksum, or a bad descriptor/revoke checksum its commit confirms, makes the log corrupt; with an older commit time it is a stale block that ends the log', async (t) => {
  const scanWith = async (damage: 'commit' | 'descriptor' | 'revoke' | 'torn-descriptor', commitSec: bigint) => {
    const { sb, blocks } = log(32, Jbd2FeatureIncompat.CSUM_V3);
    sb.start = 1;
    sb.sequence = 3;
    blocks[1] = encodeDescriptor(3, [{ blocknr: 9 }], sb);
    blocks[3] = encodeCommit(3, sb, 100n);
    blocks[4] = encodeDescriptor(4, [{ blocknr: 10 }], sb);
    blocks[6] = encodeRevoke(4, [11], sb);
    blocks[7] = encodeCommit(4, sb, commitSec);
    if (damage === 'commit') blocks[7]![0x40] ^= 1;
    if (damage === 'descriptor' || damage === 'torn-descriptor') blocks[4]![BS - 1] ^= 1;
    if (damage === 'revoke') blocks[6]![BS - 1] ^= 1;
    if (damage === 'torn-descriptor') blocks[7] = Buffer.alloc(BS);
    return scanJournal(sb, reader(blocks), { device: 'j', offsetOf: (l) => l * BS });
  };
  for (const [damage, at] of [['commit', 7], ['descriptor', 4], ['revoke', 6]] as const) {
    const s = await scanWith(damage, 200n);
    t.deepEqual(s.transactions.map((x) => x.sequence), [3], damage);
    t.deepEqual(s.corrupt, { reason: `transaction 4's ${damage} block (log block ${at}) has a bad checksum`, logBlock: at, offsetBytes: at * BS }, damage);
    const stale = await scanWith(damage, 50n);
    t.deepEqual(stale.transactions.map((x) => x.sequence), [3], `stale ${damage}`);
    t.is(stale.corrupt, undefined, `stale ${damage}`);
    t.regex(stale.stopReason, new RegExp(`stale ${damage} block with a bad checksum`));
  }
  // A bad descriptor with no commit after it: a torn tail, the ordinary end of the log.
  const torn = await scanWith('torn-descriptor', 200n);
  t.deepEqual(torn.transactions.map((x) => x.sequence), [3]);
  t.is(torn.corrupt, undefined);
  t.regex(torn.stopReason, /without the JBD2 magic/);
});

test('a log whose blocks all chain into one another is scanned at most once round', async (t) => {
  const { sb, blocks } = log(8);
  sb.start = 1;
  sb.sequence = 1;
  for (let b = 1; b < 8; b++) blocks[b] = encodeRevoke(1, [b], sb);
  const s = await scanJournal(sb, reader(blocks));
  t.regex(s.stopReason, /once round/);
  t.is(s.transactions.length, 0);
});
