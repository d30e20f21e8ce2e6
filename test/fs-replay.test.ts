// sanbox's journal writer and replay (src/fs/journal-writer.ts, replay.ts, recover.ts) on real
// volumes, judged by fsck.ocfs2: it replays a copy of the same dirty journal (reference/ocfs2.md
// §11: same home blocks, then exit 8), and the home blocks must come out equal. Covers later
// transactions winning, escaped blocks, a revoke block another writer left, wrap-around, an
// uncommitted tail, a bad block (nothing written), the liveness refusal, real mkfs.ocfs2 volumes
// (512-byte blocks, a 64-bit journal), and seeded mutations of a journal.

import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openDevice } from '../src/disk/index.js';
import { encodeCommit, encodeRevoke } from '../src/format/jbd2/log-blocks.js';
import { encodeJbd2Superblock, JBD2_CRC32C_CHKSUM, JBD2_MAGIC, Jbd2FeatureIncompat } from '../src/format/jbd2/superblock.js';
import { SanboxError } from '../src/errors.js';
import { heartbeatRegionOf, JournalWriter, Ocfs2Volume, openJournal, readSlotMap, replayJournal, tagsPerDescriptor } from '../src/fs/index.js';
import { fuzzRandom } from './helpers/fuzz.js';
import { fsckOk, hasTool, realMkfs, runTool } from './helpers/ocfs2-oracle.js';
import { collect, exited, readFileAt, REPO_ROOT, runSanbox, spawnChild, tempDir, waitFor } from './helpers/tmp.js';
import type { ExecutionContext } from 'ava';
import { copyImage } from './helpers/image-copy.js';

const BS = 4096;

async function volume(t: ExecutionContext): Promise<{ dir: string; img: string }> {
  const dir = tempDir(t);
  const img = path.join(dir, 'vol.img');
  t.is((await runSanbox(t, ['disk', 'create', img, '--size', '64M'])).code, 0);
  const mk = await runSanbox(t, ['mkfs', img, '--slots', '2', '--journal-size', '4M', '--block-size', '4K', '--cluster-size', '4K']);
  t.is(mk.code, 0, mk.stderr);
  return { dir, img };
}

/** Opens the image read-write in this process for the duration of fn. */
async function withVol<T>(img: string, fn: (vol: Ocfs2Volume) => Promise<T>): Promise<T> {
  const dev = await openDevice(img);
  try {
    return await fn(await Ocfs2Volume.open(dev));
  } finally {
    await dev.close();
  }
}

/** A recognisable block: the seed's sha256 in hex, repeated. */
const data = (seed: string): Buffer => Buffer.from(crypto.createHash('sha256').update(seed).digest('hex').repeat(BS / 64), 'latin1');

/** Free data blocks near the end of the 64M volume (no file owns them; fsck ignores their bytes). */
const HOME = [16000, 16001, 16002, 16003, 16004];

test('recover replays like fsck.ocfs2: later transactions win, escaped blocks, uncommitted tail dropped; journal marked clean', async (t) => {
  t.true(hasTool('fsck.ocfs2'), 'fsck.ocfs2 is needed (ocfs2-tools)');
  const { dir, img } = await volume(t);
  const magicBlock = data('escaped');
  magicBlock.writeUInt32BE(JBD2_MAGIC, 0);
  const tail = await withVol(img, async (vol) => {
    const w = await JournalWriter.open(vol, 0);
    await w.markDirty();
    await w.append([{ home: HOME[0]!, data: data('t1-a') }, { home: HOME[1]!, data: data('t1-b') }]);
    await w.append([{ home: HOME[1]!, data: data('t2-b') }, { home: HOME[2]!, data: magicBlock }]);
    const t3 = await w.append([{ home: HOME[3]!, data: data('t3-d') }]);
    // T3's commit is lost (torn): the scan must stop there and not replay T3.
    const j = await openJournal(vol, 0);
    await vol.dev.write(Buffer.alloc(BS), j.phys(t3.commitLogBlock) * BS);
    await vol.dev.flush();
    return t3;
  });
  t.true(tail.sequence >= 3);
  const copy = path.join(dir, 'copy.img');
  copyImage(img, copy);

  const sha = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
  const beforeDry = sha(img);
  const dry = await runSanbox(t, ['recover', img, '--dry-run']);
  t.is(dry.code, 0, dry.stderr);
  t.regex(dry.stdout, /slot 0 \(no node in the slot map\): replayed transactions \d+\.\.\d+ \(2\), 3 home blocks.*\[dry run: nothing written\]/);
  t.is(sha(img), beforeDry, '--dry-run writes nothing');
  const r = await runSanbox(t, ['recover', img, '--json']);
  t.is(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as { slot: number; dirty: boolean; replay?: { transactions: { sequence: number; homeBlocks: number[] }[]; nextSequence: number; endSequence: number } }[];
  t.deepEqual(res[0]!.replay!.transactions.map((x) => x.homeBlocks), [[HOME[0], HOME[1]], [HOME[1], HOME[2]]]);
  t.is(res[0]!.replay!.nextSequence, res[0]!.replay!.endSequence + 1);
  t.false(res[1]!.dirty);

  t.deepEqual(readFileAt(img, HOME[0]! * BS, BS), data('t1-a'));
  t.deepEqual(readFileAt(img, HOME[1]! * BS, BS), data('t2-b'), 'the later transaction wins');
  t.deepEqual(readFileAt(img, HOME[2]! * BS, BS), magicBlock, 'the escaped block got its magic back');
  t.deepEqual(readFileAt(img, HOME[3]! * BS, BS), Buffer.alloc(BS), 'the uncommitted transaction is not replayed');

  // fsck.ocfs2 replays the copy: the same home blocks (-F: no cluster locking; it asks, so "y";
  // 1.8.7 then exits 8 after replaying, reference/ocfs2.md §8).
  await runTool('fsck.ocfs2', ['-yF', copy], { input: 'y\n', timeoutMs: 120_000 });
  for (const h of HOME) t.deepEqual(readFileAt(copy, h * BS, BS), readFileAt(img, h * BS, BS), `home block ${h}: sanbox and fsck.ocfs2 agree`);

  // Marked clean per §5.11, and fsck finds the volume clean.
  await withVol(img, async (vol) => {
    const j = await openJournal(vol, 0);
    t.false(j.dirty);
    t.is(j.superblock.start, 0);
    t.is(j.superblock.sequence, res[0]!.replay!.nextSequence);
    t.is(j.recoveryGeneration, 1);
  });
  const fsck = await fsckOk(img);
  t.true(fsck.ok, fsck.out);
});

test('a revoke block another writer left suppresses the earlier copy; a transaction wrapping the log end replays', async (t) => {
  const { img } = await volume(t);
  await withVol(img, async (vol) => {
    const j0 = await openJournal(vol, 0);
    const sb = j0.superblock;
    // Start the log two blocks before its end so the first transaction wraps.
    const sbBuf = await vol.readBlocks(j0.phys(0), 1);
    sbBuf.writeUInt32BE(200, 0x18);
    sbBuf.writeUInt32BE(sb.maxLen - 2, 0x1c);
    await vol.dev.write(sbBuf, j0.phys(0) * BS);
    await (await JournalWriter.open(vol, 0)).markDirty();
    // JournalWriter.open of a DIRTY journal appends at s_start with s_sequence.
    const w = await JournalWriter.open(vol, 0);
    const t1 = await w.append([{ home: HOME[0]!, data: data('r1-a') }]);
    t.deepEqual([t1.sequence, t1.firstLogBlock, t1.commitLogBlock], [200, sb.maxLen - 2, sb.first], 'descriptor and copy at the end, commit wrapped to s_first');
    const t2 = await w.append([{ home: HOME[1]!, data: data('r2-b') }, { home: HOME[2]!, data: data('r2-c') }]);
    // Another writer's transaction 202: a revoke of HOME[0], then its commit.
    const at = t2.commitLogBlock + 1;
    await vol.dev.write(encodeRevoke(202, [HOME[0]!], sb), j0.phys(at) * BS);
    await vol.dev.write(encodeCommit(202, sb), j0.phys(at + 1) * BS);
    await vol.dev.flush();
  });
  const r = await runSanbox(t, ['recover', img, '--slot', '0']);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /transaction 200: 0 block\(s\) ; revoked: 16000/);
  t.regex(r.stdout, /transaction 201: 2 block\(s\) 16001 16002/);
  t.deepEqual(readFileAt(img, HOME[0]! * BS, BS), Buffer.alloc(BS), 'revoked: never written');
  t.deepEqual(readFileAt(img, HOME[1]! * BS, BS), data('r2-b'));
  t.deepEqual(readFileAt(img, HOME[2]! * BS, BS), data('r2-c'));
  // No fsck oracle here: fsck.ocfs2 1.8.7 misreads revoke blocks (reference/ocfs2.md §8); the
  // kernel's rules (§5.10) are asserted directly above.
});

test('a journal with a bad block: recover stops before writing anything', async (t) => {
  const { img } = await volume(t);
  await withVol(img, async (vol) => {
    const w = await JournalWriter.open(vol, 0);
    await w.markDirty();
    await w.append([{ home: HOME[0]!, data: data('ok') }]);
    const t2 = await w.append([{ home: HOME[1]!, data: data('bad') }]);
    // The descriptor's tags no longer end: a LAST_TAG-less tag list running off the block.
    const j = await openJournal(vol, 0);
    const desc = await vol.readBlocks(j.phys(t2.firstLogBlock), 1);
    desc.fill(0, 12);
    await vol.dev.write(desc, j.phys(t2.firstLogBlock) * BS);
    await vol.dev.flush();
  });
  const before = crypto.createHash('sha256').update(fs.readFileSync(img)).digest('hex');
  const r = await runSanbox(t, ['recover', img]);
  t.is(r.code, 1);
  t.regex(r.stderr, /vol\.img: journal descriptor tag \d+ runs past the end of the block.* at (byte )?offset \d+/);
  t.is(r.stderr.trim().split('\n').length, 1, 'one line');
  t.is(crypto.createHash('sha256').update(fs.readFileSync(img)).digest('hex'), before, 'nothing written');
});

test('a journal with a bad checksum (descriptor or commit of a committed transaction) or a bad magic in its superblock: recover refuses in one line naming device, slot or offset and the reason, and writes nothing', async (t) => {
  for (const damage of ['descriptor', 'commit', 'superblock magic'] as const) {
    const { img } = await volume(t);
    await withVol(img, async (vol) => {
      // A csum v3 journal (ocfs2 itself never makes one; JBD2's own checksums are under test here).
      const j0 = await openJournal(vol, 0);
      const sbBlock = await vol.readBlocks(j0.phys(0), 1);
      encodeJbd2Superblock({ ...j0.superblock, featureIncompat: j0.superblock.featureIncompat | Jbd2FeatureIncompat.CSUM_V3, checksumType: JBD2_CRC32C_CHKSUM }).copy(sbBlock);
      await vol.dev.write(sbBlock, j0.phys(0) * BS);
      const w = await JournalWriter.open(vol, 0);
      await w.markDirty();
      await w.append([{ home: HOME[0]!, data: data('first') }]);
      const t2 = await w.append([{ home: HOME[1]!, data: data('second') }]);
      const j = await openJournal(vol, 0);
      const [logBlock, byte] = damage === 'descriptor' ? [t2.firstLogBlock, BS - 1] : damage === 'commit' ? [t2.commitLogBlock, 0x40] : [0, 0];
      const b = await vol.readBlocks(j.phys(logBlock), 1);
      b[byte]! ^= 0xff;
      await vol.dev.write(b, j.phys(logBlock) * BS);
      await vol.dev.flush();
    });
    const before = crypto.createHash('sha256').update(fs.readFileSync(img)).digest('hex');
    const r = await runSanbox(t, ['recover', img, '--observe-ms', '0']);
    t.is(r.code, 1, `${damage}: ${r.stdout}`);
    t.is(r.stderr.trim().split('\n').length, 1, `${damage}: one line: ${r.stderr}`);
    t.regex(r.stderr, damage === 'superblock magic' ? /vol\.img: .*magic.* at (byte )?offset \d+/ : new RegExp(`vol\\.img: journal:0 transaction \\d+'s ${damage} block \\(log block \\d+\\) has a bad checksum; nothing replayed \\(at byte offset \\d+\\)`), damage);
    t.is(crypto.createHash('sha256').update(fs.readFileSync(img)).digest('hex'), before, `${damage}: nothing written`);
  }
});

test('recover refuses a slot whose node still heartbeats on the volume, and writes nothing', async (t) => {
  const { img } = await volume(t);
  const node = 7;
  const region = await withVol(img, async (vol) => {
    const w = await JournalWriter.open(vol, 0);
    await w.markDirty();
    await w.append([{ home: HOME[0]!, data: data('live') }]);
    // The slot map names node 7 in slot 0 (extended format: es_valid, es_node_num).
    const sm = await vol.systemInode('slot_map');
    const blk = vol.mapBlock(await vol.extents(sm), 0)!;
    const b = await vol.readBlocks(blk, 1);
    b.writeUInt8(1, 0);
    b.writeUInt32LE(node, 4);
    await vol.dev.write(b, blk * BS);
    await vol.dev.flush();
    t.is((await readSlotMap(vol)).slots[0]!.nodeNum, node);
    return heartbeatRegionOf(vol);
  });
  // Node 7 heartbeats from its own process: a new sequence every 200 ms.
  const beater = spawnChild(t, process.execPath, [path.join(REPO_ROOT, 'dist/test/helpers/o2hb-beater.js'), img, String(region.offsetBytes), String(region.blockSizeBytes), String(node), '200']);
  const io = collect(beater);
  await waitFor(() => io.out().includes('beating'), 10_000, 'the heartbeat writer to start');
  const home0 = readFileAt(img, HOME[0]! * BS, BS);
  const r = await runSanbox(t, ['recover', img, '--observe-ms', '1500']);
  t.is(r.code, 1, r.stdout);
  t.regex(r.stderr, /slot 0: node 7 still heartbeats on the volume/);
  t.deepEqual(readFileAt(img, HOME[0]! * BS, BS), home0, 'nothing replayed');
  // Once it stops (a clean stop writes generation 0), the slot is recovered.
  beater.kill('SIGTERM');
  await exited(beater, 10_000);
  const r2 = await runSanbox(t, ['recover', img, '--observe-ms', '1500']);
  t.is(r2.code, 0, r2.stderr);
  t.regex(r2.stdout, /slot 0 \(node 7\): replayed transactions/);
  t.regex(r2.stdout, /slot 0 freed in the slot map/);
  t.deepEqual(readFileAt(img, HOME[0]! * BS, BS), data('live'));
});

for (const c of [
  { name: 'bs 512 (superblock spans log blocks 0-1), 32-bit journal', args: ['-b', '512', '-C', '4096', '-N', '2', '-J', 'size=4M'] },
  { name: 'bs 2048, 64-bit journal (12-byte tags)', args: ['-b', '2048', '-C', '4096', '-N', '2', '-J', 'size=4M,block64'] },
  { name: 'bs 4096 with metaecc', args: ['-b', '4096', '-C', '4096', '-N', '2', '-J', 'size=4M', '--fs-features=metaecc'] },
]) {
  test(`on a real mkfs.ocfs2 volume, ${c.name}: JournalWriter's log replays the same under sanbox and fsck.ocfs2`, async (t) => {
    t.true(hasTool('mkfs.ocfs2'), 'mkfs.ocfs2 is needed (ocfs2-tools)');
    const dir = tempDir(t);
    const img = path.join(dir, 'real.img');
    await realMkfs(img, 64 * 1024 * 1024, c.args);
    const { homes, bs } = await withVol(img, async (vol) => {
      const bs = vol.blockSizeBytes;
      const homes = [1, 2, 3].map((k) => vol.blockCount - 16 * k);
      const w = await JournalWriter.open(vol, 1);
      await w.markDirty();
      const fill = (seed: string): Buffer => Buffer.from(data(seed).subarray(0, bs));
      await w.append([{ home: homes[0]!, data: fill('a') }, { home: homes[1]!, data: fill('b') }]);
      await w.append([{ home: homes[1]!, data: fill('b2') }, { home: homes[2]!, data: fill('c') }]);
      return { homes, bs };
    });
    const copy = path.join(dir, 'copy.img');
    copyImage(img, copy);
    const r = await runSanbox(t, ['recover', img, '--slot', '1']);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /replayed transactions \d+\.\.\d+ \(2\), 3 home blocks/);
    await runTool('fsck.ocfs2', ['-yF', copy], { input: 'y\n', timeoutMs: 120_000 });
    for (const h of homes) t.deepEqual(readFileAt(copy, h * bs, bs), readFileAt(img, h * bs, bs), `home block ${h}`);
    t.deepEqual(readFileAt(img, homes[1]! * bs, 8), data('b2').subarray(0, 8));
    const fsck = await fsckOk(img);
    t.true(fsck.ok, fsck.out);
  });
}

test('fuzz: a mutated journal makes replay return or throw a typed error, and a refused replay writes nothing', async (t) => {
  const rnd = fuzzRandom(t);
  const { img } = await volume(t);
  const ITERATIONS = 150;
  await withVol(img, async (vol) => {
    const w = await JournalWriter.open(vol, 0);
    await w.markDirty();
    for (let k = 0; k < 3; k++) await w.append(HOME.slice(k, k + 2).map((h, i) => ({ home: h, data: data(`f${k}${i}`) })));
    const j = await openJournal(vol, 0);
    const logBlocks = 12;
    const pristine = await j.readLog(0, logBlocks);
    const homesBefore = Buffer.concat(HOME.map((h) => readFileAt(img, h * BS, BS)));
    const counts = { replayed: 0, refused: 0 };
    for (let i = 0; i < ITERATIONS; i++) {
      const mutated = Buffer.from(pristine);
      const flips = rnd.int(1, 6);
      for (let f = 0; f < flips; f++) {
        // Mostly headers and tags (the first bytes of each block), sometimes anywhere.
        const blockIdx = rnd.int(logBlocks);
        const off = blockIdx * BS + (rnd.next() < 0.7 ? rnd.int(64) : rnd.int(BS));
        mutated[off] = rnd.int(256);
      }
      for (let l = 0; l < logBlocks; l++) await vol.dev.write(mutated.subarray(l * BS, (l + 1) * BS), j.phys(l) * BS);
      try {
        await replayJournal(vol, 0, { dryRun: true });
        counts.replayed++;
      } catch (err) {
        if (!(err instanceof SanboxError)) return t.fail(`iteration ${i}: ${err instanceof Error ? err.stack : String(err)}`);
        counts.refused++;
        // The real run refuses the same way, before writing any home block.
        await t.throwsAsync(replayJournal(vol, 0), { instanceOf: SanboxError });
        t.deepEqual(Buffer.concat(HOME.map((h) => readFileAt(img, h * BS, BS))), homesBefore, `iteration ${i}: nothing written`);
      }
    }
    t.log(`${counts.replayed} replayable, ${counts.refused} refused`);
    t.true(counts.refused > 0 && counts.replayed > 0);
  });
});

test('a transaction of more blocks than one descriptor holds spans two descriptors and replays like fsck.ocfs2; one larger than the log is refused', async (t) => {
  t.true(hasTool('fsck.ocfs2'), 'fsck.ocfs2 is needed (ocfs2-tools)');
  const { dir, img } = await volume(t);
  const COUNT = 600;
  const first = 15000;
  await withVol(img, async (vol) => {
    const w = await JournalWriter.open(vol, 0);
    await w.markDirty();
    t.is(tagsPerDescriptor((await openJournal(vol, 0)).superblock), Math.floor((BS - 12 - 16) / 8));
    const tx = await w.append(Array.from({ length: COUNT }, (_, i) => ({ home: first + i, data: data(`big-${i}`) })));
    t.is(tx.logBlocks, 2 + COUNT + 1, 'two descriptors, the copies, one commit');
    const err = await t.throwsAsync(w.append(Array.from({ length: 1024 }, (_, i) => ({ home: first + (i % COUNT), data: data('x') }))), { instanceOf: SanboxError });
    t.is(err?.code, 'ENOSPC');
  });
  const copy = path.join(dir, 'copy.img');
  copyImage(img, copy);
  const r = await runSanbox(t, ['recover', img, '--json']);
  t.is(r.code, 0, r.stderr);
  await runTool('fsck.ocfs2', ['-yF', copy], { input: 'y\n', timeoutMs: 120_000 });
  for (const i of [0, 1, 507, 508, 509, COUNT - 1]) {
    t.deepEqual(readFileAt(img, (first + i) * BS, BS), data(`big-${i}`), `block ${first + i}`);
    t.deepEqual(readFileAt(copy, (first + i) * BS, BS), data(`big-${i}`), `fsck: block ${first + i}`);
  }
});

test('recover replays a dead slot\'s truncate log: its clusters go back to the global bitmap, counters consistent for fsck.ocfs2', async (t) => {
  t.true(hasTool('fsck.ocfs2'), 'fsck.ocfs2 is needed (ocfs2-tools)');
  const { img } = await volume(t);
  const START = 15000; // clusters (4K clusters = blocks here), free after mkfs
  const N = 10;
  const groupOf = async (vol: Ocfs2Volume): Promise<{ gdBlk: number; bit: number; chain: number; gbBlk: number }> => {
    const gb = await vol.systemInode('global_bitmap');
    const cpg = gb.block.readUInt16LE(0xc0);
    const index = Math.floor(START / cpg);
    const gdBlk = index === 0 ? vol.sb.firstClusterGroup : index * cpg * vol.geometry.blocksPerCluster;
    const gd = await vol.readBlocks(gdBlk, 1);
    return { gdBlk, bit: START - index * cpg, chain: gd.readUInt16LE(0x0e), gbBlk: gb.blkno };
  };
  const bitsSet = async (vol: Ocfs2Volume): Promise<number> => {
    const g = await groupOf(vol);
    const gd = await vol.readBlocks(g.gdBlk, 1);
    let n = 0;
    for (let i = g.bit; i < g.bit + N; i++) if (gd[0x40 + (i >>> 3)]! & (1 << (i & 7))) n++;
    return n;
  };
  await withVol(img, async (vol) => {
    // The state a truncate leaves: N clusters still allocated in the global bitmap (bits, group,
    // chain and inode counters), recorded in truncate_log:0000, the journal DIRTY.
    const g = await groupOf(vol);
    const gd = await vol.readBlocks(g.gdBlk, 1);
    for (let i = g.bit; i < g.bit + N; i++) gd[0x40 + (i >>> 3)]! |= 1 << (i & 7);
    gd.writeUInt16LE(gd.readUInt16LE(0x0c) - N, 0x0c);
    await vol.dev.write(gd, g.gdBlk * BS);
    const gb = await vol.readBlocks(g.gbBlk, 1);
    gb.writeUInt32LE(gb.readUInt32LE(0xd0 + g.chain * 16) - N, 0xd0 + g.chain * 16);
    gb.writeUInt32LE(gb.readUInt32LE(0xb8) + N, 0xb8);
    await vol.dev.write(gb, g.gbBlk * BS);
    const tl = await vol.systemInode('truncate_log:0000');
    const tlb = Buffer.from(tl.block);
    tlb.writeUInt16LE(1, 0xc2);
    tlb.writeUInt32LE(START, 0xc8);
    tlb.writeUInt32LE(N, 0xcc);
    await vol.dev.write(tlb, tl.blkno * BS);
    await vol.dev.flush();
    await (await JournalWriter.open(vol, 0)).markDirty();
    t.is(await bitsSet(vol), N);
  });
  const r = await runSanbox(t, ['recover', img]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /slot 0 \(no node in the slot map\): no committed transaction in the log/);
  t.regex(r.stdout, /truncate log: 1 record\(s\) replayed/);
  await withVol(img, async (vol) => {
    t.is(await bitsSet(vol), 0, 'the truncated clusters are free again');
    const tl = await vol.systemInode('truncate_log:0000');
    t.is(tl.block.readUInt16LE(0xc2), 0, 'tl_used 0');
  });
  const fsck = await fsckOk(img);
  t.true(fsck.ok, fsck.out);
});
