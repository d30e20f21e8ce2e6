// The real kernel on sanbox output: Debian's ocfs2 (o2cb stack, local heartbeat) mounts a volume
// `sanbox mkfs` made, writes files and directories, unmounts cleanly; then fsck.ocfs2 -fn is
// clean, and debugfs.ocfs2 and sanbox's offline readers see the files the kernel wrote.

import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { bootKernel, hasQemu, o2cbMountScript, tail } from './helpers/qemu-kernel.js';
import { debugfs, fsckOk, hasTool } from './helpers/ocfs2-oracle.js';
import { runSanbox, tempDir } from './helpers/tmp.js';

test('the kernel mounts a sanbox mkfs volume, writes files, unmounts cleanly; fsck.ocfs2 -fn is clean', async (t) => {
  t.timeout(300_000);
  t.true(hasQemu(), 'qemu-system-x86_64 is needed (apt-get install qemu-system-x86)');
  t.true(hasTool('fsck.ocfs2'), 'fsck.ocfs2 is needed (ocfs2-tools)');
  const dir = tempDir(t);
  const img = path.join(dir, 'vol.img');
  t.is((await runSanbox(t, ['disk', 'create', img, '--size', '256M'])).code, 0);
  const mk = await runSanbox(t, ['mkfs', img, '--slots', '4', '--journal-size', '8M', '--cluster-stack', 'o2cb', '--cluster-name', 'kern']);
  t.is(mk.code, 0, mk.stderr);
  const script = [
    await o2cbMountScript(img, { node: 1 }),
    'echo "hello from the kernel" > /mnt/v/hello.txt',
    'mkdir -p /mnt/v/dir/sub',
    'dd if=/dev/urandom of=/mnt/v/dir/big.bin bs=64k count=20 2>/dev/null',
    'head -c 3000 /dev/urandom > /mnt/v/dir/sub/inline.bin',
    'for f in hello.txt dir/big.bin dir/sub/inline.bin; do echo "SANBOX-OUT sha:$f $(sha256sum /mnt/v/$f | cut -d" " -f1)"; done',
    'umount /mnt/v || echo "SANBOX-ERROR umount"',
    // ocfs2_hb_ctl -K (the kernel's umount helper) stopped the region.
    '[ -d /sys/kernel/config/cluster/kern/heartbeat/* ] 2>/dev/null && echo "SANBOX-ERROR heartbeat still running"',
    'true',
  ].join('\n');
  const run = await bootKernel(t, { disks: [img], script });
  t.log(`kernel run: ${run.elapsedMs} ms`);
  t.deepEqual(run.errors, [], tail(run.console));
  t.is(run.scriptExit, 0, tail(run.console));
  t.regex(run.console, /ocfs2: Mounting device/);
  t.regex(run.console, /ocfs2: Unmounting device/);

  const fsck = await fsckOk(img);
  t.true(fsck.ok, fsck.out);
  // Every file the kernel wrote reads back the same through debugfs.ocfs2 (a judge outside sanbox).
  for (const f of ['hello.txt', 'dir/big.bin', 'dir/sub/inline.bin']) {
    const want = run.out.get(`sha:${f}`);
    if (want === undefined) return t.fail(`the guest printed no sha256 of ${f}`);
    const dumped = path.join(dir, 'dumped');
    await debugfs(img, `dump /${f} ${dumped}`);
    const got = crypto.createHash('sha256').update(fs.readFileSync(dumped)).digest('hex');
    t.is(got, want, `debugfs dump of ${f}`);
  }
});
