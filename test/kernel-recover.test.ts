// Test (b) of issue 17 item 5: the real kernel writes files, fsyncs some, and crashes (sysrq b)
// with its journal dirty. `sanbox recover` replays that journal; the kernel replays a copy of the
// same image at its next mount. Judged by home blocks (every block sanbox's replay wrote must hold
// the same bytes in the kernel's copy) and by file contents (every fsynced file, read back by
// sanbox cat and by the kernel), never by whole-image hashes (reference/ocfs2.md §11).
// fsck.ocfs2 -fn on sanbox's result is the second judge.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openDevice } from '../src/disk/index.js';
import { Ocfs2Volume, recoverAllocators, replayJournal } from '../src/fs/index.js';
import { bootKernel, kernelTestVolume, o2cbMountScript, tail } from './helpers/qemu-kernel.js';
import { fsckOk } from './helpers/ocfs2-oracle.js';
import { readFileAt, runSanbox, SANBOX_BIN } from './helpers/tmp.js';

const FILES = ['a.txt', 'dir/b.bin', 'dir/c.bin', 'small.txt'];

test('the kernel crashes with a dirty journal; sanbox recover and the kernel replay reach the same home blocks and files', async (t) => {
  t.timeout(400_000);
  const { dir, img } = await kernelTestVolume(t);

  // Node 1 writes; a long commit interval (commit=60) keeps jbd2 from committing and
  // checkpointing on its own, so the fsyncs decide what is committed; then the machine dies.
  const crash = [
    await o2cbMountScript(img, { node: 1, mountOptions: 'commit=60' }),
    // One fsync after each file: each forces a commit, so the log holds several transactions
    // that rewrite the same blocks (directory, allocators): replay must apply them in order.
    'echo "first file" > /mnt/v/a.txt && sync -f /mnt/v/a.txt',
    'mkdir -p /mnt/v/dir && sync -f /mnt/v/dir',
    'dd if=/dev/urandom of=/mnt/v/dir/b.bin bs=4k count=40 conv=fsync 2>/dev/null',
    'dd if=/dev/urandom of=/mnt/v/dir/c.bin bs=64k count=3 conv=fsync 2>/dev/null',
    'echo tiny > /mnt/v/small.txt && sync -f /mnt/v/small.txt',
    `for f in ${FILES.join(' ')}; do echo "SANBOX-OUT sha:$f $(sha256sum /mnt/v/$f | cut -d" " -f1)"; done`,
    // An unsynced change after the last fsync: may or may not survive, never half.
    'echo "late" > /mnt/v/late.txt',
    'echo "SANBOX-OUT crashing"',
    'echo b > /proc/sysrq-trigger',
  ].join('\n');
  const run1 = await bootKernel(t, { disks: [img], script: crash });
  t.log(`kernel write+crash: ${run1.elapsedMs} ms`);
  t.deepEqual(run1.errors, [], tail(run1.console));
  t.is(run1.out.get('crashing'), '', tail(run1.console));
  t.is(run1.scriptExit, undefined, 'the guest died before its script ended');

  // The crashed journal is dirty and holds committed transactions.
  const dump = await runSanbox(t, ['logdump', img, '0', '--json']);
  t.is(dump.code, 0, dump.stderr);
  const before = JSON.parse(dump.stdout) as { dirty: boolean; scan: { transactions: unknown[] } };
  t.true(before.dirty, 'slot 0 is DIRTY after the crash');
  t.true(before.scan.transactions.length > 0, 'the crashed journal holds committed transactions');

  const copy = path.join(dir, 'copy.img');
  fs.copyFileSync(img, copy);
  // A recovery interrupted after the replay and after the allocators (the recoverer died), then
  // rerun from the start, must end exactly where an uninterrupted one does (recover.ts's order).
  const interrupted = path.join(dir, 'interrupted.img');
  fs.copyFileSync(img, interrupted);
  await (async () => {
    const dev = await openDevice(interrupted);
    try {
      const vol = await Ocfs2Volume.open(dev);
      await replayJournal(vol, 0);
      await recoverAllocators(vol, 0);
    } finally {
      await dev.close();
    }
  })();

  // sanbox recovers the original (the crashed node's heartbeat block no longer changes).
  const rec = await runSanbox(t, ['recover', img, '--json', '--observe-ms', '2500'], { timeoutMs: 60_000 });
  t.is(rec.code, 0, rec.stderr);
  const results = JSON.parse(rec.stdout) as { slot: number; dirty: boolean; replay?: { transactions: { sequence: number; homeBlocks: number[] }[]; blocksWritten: number; nextSequence: number; endSequence: number }; recoveryGenerationAfter: number; slotCleared: boolean; allocators?: unknown }[];
  const slot0 = results.find((r) => r.slot === 0)!;
  t.true(slot0.dirty);
  t.true(slot0.slotCleared, 'slot 0 freed in the slot map');
  t.is(slot0.recoveryGenerationAfter, 1);
  const homes = [...new Set(slot0.replay!.transactions.flatMap((tx) => tx.homeBlocks))];
  t.log(`sanbox replayed ${slot0.replay!.transactions.length} transactions, ${homes.length} home blocks`);
  t.true(slot0.replay!.transactions.length >= 2, 'several committed transactions were replayed');
  t.log(`allocators: ${JSON.stringify(slot0.allocators)}`);
  // The kernel allocated file data from its local alloc window: recovery returned the unused rest.
  t.truthy((slot0.allocators as { localAlloc?: unknown } | undefined)?.localAlloc, 'the crashed slot\'s local alloc was recovered');
  const rerun = await runSanbox(t, ['recover', interrupted, '--observe-ms', '0', '--json']);
  t.is(rerun.code, 0, rerun.stderr);
  // Both results are sanbox's own, from the same input: here whole images must be equal.
  t.true(fs.readFileSync(interrupted).equals(fs.readFileSync(img)), 'an interrupted recovery, rerun, ends byte-identical to an uninterrupted one');
  const human = await runSanbox(t, ['recover', img]);
  t.regex(human.stdout, /slot 0: journal clean, nothing to recover/, 'a second recover finds nothing to do');

  // The kernel replays the copy at mount, as node 2 (slot 0 is node 1's: a foreign-slot recovery).
  const replay = [
    // noatime: reading the files must not change their inodes (compared below).
    await o2cbMountScript(copy, { node: 2, mountOptions: 'noatime' }),
    // The recovery thread runs after mount; umount waits for it.
    `for f in ${FILES.join(' ')}; do echo "SANBOX-OUT sha:$f $(sha256sum /mnt/v/$f | cut -d" " -f1)"; done`,
    'umount /mnt/v || echo "SANBOX-ERROR umount"',
  ].join('\n');
  const run2 = await bootKernel(t, { disks: [copy], script: replay });
  t.log(`kernel replay of the copy: ${run2.elapsedMs} ms`);
  t.deepEqual(run2.errors, [], tail(run2.console));
  t.regex(run2.console, /[Rr]eplay(ing)? journal|recover/i, tail(run2.console));

  // Home blocks: each block sanbox's replay wrote holds the same bytes in the kernel's copy.
  const bs = 4096;
  const differ = homes.filter((b) => !readFileAt(img, b * bs, bs).equals(readFileAt(copy, b * bs, bs)));
  t.deepEqual(differ, [], `home blocks that differ between sanbox's and the kernel's replay`);

  // File contents: every fsynced file as the kernel saw it before the crash, read by sanbox cat
  // on sanbox's result and by the kernel on its own.
  for (const f of FILES) {
    const want = run1.out.get(`sha:${f}`);
    if (want === undefined) return t.fail(`the guest printed no sha256 of ${f}`);
    // Binary output: run it directly (runSanbox decodes stdout as text).
    const catBytes = execFileSync(process.execPath, [SANBOX_BIN, 'cat', img, `/${f}`], { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 });
    t.is(crypto.createHash('sha256').update(catBytes).digest('hex'), want, `sanbox cat ${f} after sanbox recover`);
    t.is(run2.out.get(`sha:${f}`), want, `the kernel's ${f} after its own replay`);
  }

  const fsck = await fsckOk(img);
  t.true(fsck.ok, fsck.out);
});
