// Writing JBD2 transactions into a slot's journal as ocfs2 writes them (reference/ocfs2.md §5,
// §11): per transaction one or more descriptor blocks whose tags follow the journal superblock's
// features (tag size, 64-bit block numbers, csum v2/v3 tag and tail checksums), the first tag of
// each descriptor carrying a UUID and the others SAME_UUID, each logged block right after its
// descriptor — escaped (first 4 bytes zeroed, ESCAPE tag flag) when it starts with the JBD2
// magic — and then a commit block with the wall-clock commit time. No revoke records, as ocfs2.
// The log is circular over [s_first, s_maxlen).
//
// Order and durability: log blocks, flush, then the commit block, flush; only then is the
// transaction durable (an operation is acknowledged after `append` resolves). When the log was
// empty, the superblock's s_start/s_sequence are set (flushed) before the commit, so a crash
// after the commit finds it; a crash before leaves a log whose scan ends at the missing commit.
// The home blocks are not written here: a checkpoint (or replay.ts after a crash) does that.

import { SanboxError } from '../errors.js';
import { encodeCommit, encodeDescriptor, dataBlockChecksum, JBD2_HEADER_BYTES, JBD2_TAIL_BYTES, JBD2_UUID_BYTES, TagFlag, tagBytes } from '../format/jbd2/log-blocks.js';
import { JBD2_MAGIC, hasCsumV2orV3, jbd2ChecksumSeed, Jbd2FeatureIncompat } from '../format/jbd2/superblock.js';
import { openJournal, writeJournalInode, writeLogStart, type OpenJournal } from './journal-reader.js';
import { scanJournal } from './journal-scan.js';
import type { Ocfs2Volume } from './ocfs2-volume.js';

export interface LoggedBlock {
  /** Home block number on the volume. */
  home: number;
  /** The block's new contents (exactly one fs block). */
  data: Buffer;
}

export interface AppendedTransaction {
  sequence: number;
  /** Log blocks used: descriptors, copies, commit. */
  firstLogBlock: number;
  commitLogBlock: number;
  logBlocks: number;
}

/** Tags that fit one descriptor block, the first with its 16-byte UUID. */
export function tagsPerDescriptor(sb: OpenJournal['superblock']): number {
  const usable = sb.blockSize - JBD2_HEADER_BYTES - (hasCsumV2orV3(sb) ? JBD2_TAIL_BYTES : 0) - JBD2_UUID_BYTES;
  return Math.floor(usable / tagBytes(sb));
}

/**
 * A slot's journal open for appending. Not safe against a concurrent writer: the caller holds the
 * journal (ocfs2: the journal's META lock EX for as long as it is mounted).
 */
export class JournalWriter {
  private constructor(
    private readonly vol: Ocfs2Volume,
    private j: OpenJournal,
    /** Next free log block and the next transaction ID. */
    private head: number,
    private nextSequence: number,
    /** Log blocks in use from s_start to head (not yet checkpointed). */
    private used: number,
  ) {}

  /**
   * Opens slot's journal. A DIRTY journal's committed transactions are kept and appended to (the
   * caller replays them first when it must); a clean journal's log is stale and starts over at
   * s_first with s_sequence (the kernel wipes it at mount, §5.11).
   */
  static async open(vol: Ocfs2Volume, slot: number): Promise<JournalWriter> {
    const j = await openJournal(vol, slot);
    const sb = j.superblock;
    if (sb.start === 0 || !j.dirty) return new JournalWriter(vol, j, sb.first, sb.sequence, 0);
    const scan = await scanJournal(sb, (l) => j.readLog(l, 1));
    const last = scan.transactions.at(-1);
    const head = last ? (last.commitBlock + 1 >= sb.maxLen ? sb.first : last.commitBlock + 1) : Math.max(sb.start, sb.first);
    const logBlocks = sb.maxLen - sb.first;
    const used = (head - Math.max(sb.start, sb.first) + logBlocks) % logBlocks;
    return new JournalWriter(vol, j, head, scan.endSequence, used);
  }

  get slot(): number {
    return this.j.slot;
  }

  /** Marks the journal inode DIRTY ("in use"), as a mount does before its first transaction. */
  async markDirty(): Promise<void> {
    await writeJournalInode(this.vol, this.j, { dirty: true });
  }

  /** Appends one transaction and makes it durable. Refuses one the free log space cannot hold. */
  async append(blocks: LoggedBlock[], nowMs = Date.now()): Promise<AppendedTransaction> {
    const sb = this.j.superblock;
    const bs = this.vol.blockSizeBytes;
    if (blocks.length === 0) throw new SanboxError('EINVAL', 'a transaction needs at least one block');
    for (const b of blocks) {
      if (b.data.length !== bs) throw new SanboxError('EINVAL', `logged block for home ${b.home} is ${b.data.length} bytes, not ${bs}`);
      if (!Number.isSafeInteger(b.home) || b.home < 0 || b.home >= this.vol.blockCount) throw new SanboxError('EINVAL', `home block ${b.home} is outside the volume (${this.vol.blockCount} blocks)`);
      if (!(sb.featureIncompat & Jbd2FeatureIncompat.BIT64) && b.home > 0xffffffff) throw new SanboxError('EINVAL', `home block ${b.home} needs a 64-bit journal`);
    }
    const per = tagsPerDescriptor(sb);
    const descriptors = Math.ceil(blocks.length / per);
    const need = descriptors + blocks.length + 1;
    const logBlocks = sb.maxLen - sb.first;
    if (this.used + need > logBlocks) {
      throw new SanboxError('ENOSPC', `${this.vol.dev.name}: journal:${this.j.slot} has ${logBlocks - this.used} free log blocks, the transaction needs ${need} (checkpoint first)`, { device: this.vol.dev.name });
    }
    const seq = this.nextSequence >>> 0;
    const seed = jbd2ChecksumSeed(sb);
    const csum = hasCsumV2orV3(sb);
    const first = this.head;
    let at = this.head;
    const advance = (): number => {
      const cur = at;
      at = at + 1 >= sb.maxLen ? sb.first : at + 1;
      return cur;
    };
    const writes: [number, Buffer][] = [];
    for (let d = 0; d < descriptors; d++) {
      const chunk = blocks.slice(d * per, (d + 1) * per);
      const tags = chunk.map((b) => {
        const escape = b.data.readUInt32BE(0) === JBD2_MAGIC;
        return { blocknr: b.home, flags: escape ? TagFlag.ESCAPE : 0, checksum: csum ? dataBlockChecksum(seed, seq, b.data) : 0 };
      });
      writes.push([advance(), encodeDescriptor(seq, tags, sb)]);
      for (const b of chunk) {
        const copy = Buffer.from(b.data);
        // The checksum covers the block as it is (before escaping), as jbd2 computes it.
        if (copy.readUInt32BE(0) === JBD2_MAGIC) copy.writeUInt32BE(0, 0);
        writes.push([advance(), copy]);
      }
    }
    const commitAt = advance();
    for (const [l, data] of writes) await this.vol.dev.write(data, this.j.phys(l) * bs);
    await this.vol.dev.flush();
    if (this.used === 0) await this.setLogStart(first, seq);
    const sec = BigInt(Math.floor(nowMs / 1000));
    await this.vol.dev.write(encodeCommit(seq, sb, sec, (nowMs % 1000) * 1_000_000), this.j.phys(commitAt) * bs);
    await this.vol.dev.flush();
    this.head = at;
    this.nextSequence = (seq + 1) >>> 0;
    this.used += need;
    return { sequence: seq, firstLogBlock: first, commitLogBlock: commitAt, logBlocks: need };
  }

  /** s_start = start and s_sequence = seq: the log begins at this transaction. */
  private async setLogStart(start: number, seq: number): Promise<void> {
    await writeLogStart(this.vol, this.j, start, seq);
    this.j = { ...this.j, superblock: { ...this.j.superblock, start, sequence: seq } };
  }
}
