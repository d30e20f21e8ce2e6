// The real kernel on sanbox output, and sanbox on the kernel's:
// 1. Debian's ocfs2 (o2cb stack, local heartbeat) mounts a volume `sanbox mkfs` made, writes files
//    and directories, unmounts cleanly; fsck.ocfs2 -fn is clean; `sanbox ls` and `sanbox cat`
//    read what the kernel wrote exactly as debugfs.ocfs2 "ls -l" and "dump" do.
// 2. Test (a)'s core (issue 17 item 5): sanbox changes a kernel-written file through a dead
//    slot's journal (JournalWriter: one committed transaction, never checkpointed, DIRTY left
//    set, the slot held by node 5 in the slot map). The kernel mounts, recovers that slot, and
//    sees the new content; the home block equals sanbox's own recovery of a copy.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openDevice } from '../src/disk/index.js';
import { BlockCheckOffset, writeBlockCheck } from '../src/format/ocfs2/block-check.js';
import { FeatureIncompat } from '../src/format/ocfs2/constants.js';
import { JournalWriter, lookupPath, Ocfs2Volume, readSlotMap } from '../src/fs/index.js';
import { encodeInlineData } from '../src/format/ocfs2/system-payloads.js';
import { bootKernel, kernelTestVolume, o2cbMountScript, tail } from './helpers/qemu-kernel.js';
import { debugfs, fsckOk } from './helpers/ocfs2-oracle.js';
import { readFileAt, runSanbox, SANBOX_BIN } from './helpers/tmp.js';

const FILES = ['hello.txt', 'dir/big.bin', 'dir/sub/inline.bin'];
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

/** `debugfs.ocfs2 -R "ls -l PATH"` rows as inode, mode, links, uid, gid, size, name. */
function parseDebugfsLs(out: string): string[] {
  return out.split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 9 && /^\d+$/.test(f[0]!))
    .map((f) => [f[0], f[1], f[2], f[3], f[4], f[5], f.slice(8).join(' ')].join(' '));
}

test('the kernel mounts a sanbox volume and writes; sanbox ls/cat read it as debugfs does; the kernel recovers a journal sanbox wrote', async (t) => {
  t.timeout(400_000);
  const { dir, img } = await kernelTestVolume(t);
  const script = [
    await o2cbMountScript(img, { node: 1 }),
    'echo "hello from the kernel" > /mnt/v/hello.txt',
    'mkdir -p /mnt/v/dir/sub',
    'dd if=/dev/urandom of=/mnt/v/dir/big.bin bs=64k count=20 2>/dev/null',
    'head -c 3000 /dev/urandom > /mnt/v/dir/sub/inline.bin',
    `for f in ${FILES.join(' ')}; do echo "SANBOX-OUT sha:$f $(sha256sum /mnt/v/$f | cut -d" " -f1)"; done`,
    'umount /mnt/v || echo "SANBOX-ERROR umount"',
    // ocfs2_hb_ctl -K (the kernel's umount helper) stopped the region.
    '[ -n "$(find /sys/kernel/config/cluster/kern/heartbeat -mindepth 1 -type d)" ] && echo "SANBOX-ERROR heartbeat region still there"',
    'true',
  ].join('\n');
  const run = await bootKernel(t, { disks: [img], script });
  t.log(`kernel mount, write, umount: ${run.elapsedMs} ms`);
  t.deepEqual(run.errors, [], tail(run.console));
  t.is(run.scriptExit, 0, tail(run.console));
  t.regex(run.console, /ocfs2: Mounting device/);
  t.regex(run.console, /ocfs2: Unmounting device/);

  const fsck = await fsckOk(img);
  t.true(fsck.ok, fsck.out);

  // sanbox ls = debugfs ls -l (inode, mode, links, uid, gid, size, name), for every directory.
  for (const d of ['/', '/dir', '/dir/sub']) {
    const ls = await runSanbox(t, ['ls', img, d, '--json']);
    t.is(ls.code, 0, ls.stderr);
    const ours = (JSON.parse(ls.stdout) as { inode: number; modeString: string; links: number; uid: number; gid: number; sizeBytes: string; name: string }[])
      .map((e) => [e.inode, e.modeString, e.links, e.uid, e.gid, e.sizeBytes, e.name].join(' '));
    t.deepEqual(ours, parseDebugfsLs(await debugfs(img, `ls -l ${d}`)), `ls ${d}`);
  }
  // sanbox cat = debugfs dump = what the kernel wrote.
  for (const f of FILES) {
    const want = run.out.get(`sha:${f}`);
    if (want === undefined) return t.fail(`the guest printed no sha256 of ${f}`);
    const dumped = path.join(dir, 'dumped');
    await debugfs(img, `dump /${f} ${dumped}`);
    t.is(sha(fs.readFileSync(dumped)), want, `debugfs dump of ${f}`);
    t.is(sha(execFileSync(process.execPath, [SANBOX_BIN, 'cat', img, `/${f}`], { timeout: 30_000, maxBuffer: 64 * 1024 * 1024 })), want, `sanbox cat ${f}`);
  }

  // Test (a)'s core: a dead node 5 in slot 2 left one committed, uncheckpointed transaction
  // that rewrites hello.txt's inode (inline data, new size and mtime).
  const newText = Buffer.from('rewritten by sanbox through slot 2\'s journal\n');
  const inodeBlk = await (async () => {
    const dev = await openDevice(img);
    try {
      const vol = await Ocfs2Volume.open(dev);
      const ino = await lookupPath(vol, '/hello.txt');
      const b = Buffer.from(ino.block);
      encodeInlineData(b, Buffer.concat([newText, Buffer.alloc(b.readUInt16LE(0xc0) - newText.length)]));
      b.writeBigUInt64LE(BigInt(newText.length), 0x20);
      const nowSec = BigInt(Math.floor(Date.now() / 1000));
      b.writeBigUInt64LE(nowSec, 0x38); // i_ctime
      b.writeBigUInt64LE(nowSec, 0x40); // i_mtime
      if (vol.metaEcc) writeBlockCheck(b, BlockCheckOffset.DINODE);
      const w = await JournalWriter.open(vol, 2);
      await w.markDirty();
      await w.append([{ home: ino.blkno, data: b }]);
      // Node 5 holds slot 2 (extended slot map: es_valid 1, es_node_num 5).
      t.true((vol.sb.featureIncompat & FeatureIncompat.EXTENDED_SLOT_MAP) !== 0);
      const sm = await vol.systemInode('slot_map');
      const blk = vol.mapBlock(await vol.extents(sm), 0)!;
      const m = await vol.readBlocks(blk, 1);
      m.writeUInt8(1, 2 * 8);
      m.writeUInt32LE(5, 2 * 8 + 4);
      await dev.write(m, blk * vol.blockSizeBytes);
      await dev.flush();
      t.is((await readSlotMap(vol)).slots[2]!.nodeNum, 5);
      return ino.blkno;
    } finally {
      await dev.close();
    }
  })();
  const copy = path.join(dir, 'copy.img');
  fs.copyFileSync(img, copy);
  const rec = await runSanbox(t, ['recover', copy, '--slot', '2', '--observe-ms', '0']);
  t.is(rec.code, 0, rec.stderr);
  t.regex(rec.stdout, new RegExp(`transaction \\d+: 1 block\\(s\\) ${inodeBlk}\\b`));

  const run2 = await bootKernel(t, { disks: [img], script: [
    await o2cbMountScript(img, { node: 1, mountOptions: 'noatime' }),
    'echo "SANBOX-OUT hello $(sha256sum /mnt/v/hello.txt | cut -d" " -f1)"',
    'umount /mnt/v || echo "SANBOX-ERROR umount"',
  ].join('\n') });
  t.log(`kernel mount with slot 2 dirty: ${run2.elapsedMs} ms`);
  t.deepEqual(run2.errors, [], tail(run2.console));
  t.regex(run2.console, /Begin replay journal \(node 5, slot 2\)/, tail(run2.console));
  t.is(run2.out.get('hello'), sha(newText), 'the kernel sees the content sanbox journaled');
  t.deepEqual(readFileAt(img, inodeBlk * 4096, 4096), readFileAt(copy, inodeBlk * 4096, 4096), 'home block: the kernel\'s replay = sanbox recover');
  t.is(sha(execFileSync(process.execPath, [SANBOX_BIN, 'cat', copy, '/hello.txt'], { timeout: 30_000 })), sha(newText));
  const fsck2 = await fsckOk(img);
  t.true(fsck2.ok, fsck2.out);
  const fsck3 = await fsckOk(copy);
  t.true(fsck3.ok, fsck3.out);
});
