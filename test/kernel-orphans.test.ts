// Orphan directory processing in recovery (issue 17 item 3), judged by the REAL kernel: a kernel
// node creates files, keeps two open, unlinks them (ocfs2 moves such inodes into
// orphan_dir:NNNN) and crashes (sysrq b). `sanbox recover` replays the slot and frees every orphan
// inode (clusters, allocator bit, the entry) in journal transactions. Judges: debugfs.ocfs2 (the
// orphan directory is empty), fsck.ocfs2 -fn (clean), and the kernel's own recovery of a copy
// (boot 2: the same global bitmap and inode allocator counts, and it mounts sanbox's result).

import path from 'node:path';
import test from 'ava';
import { bootKernel, kernelTestVolume, o2cbMountScript, tail } from './helpers/qemu-kernel.js';
import { allocatorUsed, debugfs, debugfsNames, fsckOk } from './helpers/ocfs2-oracle.js';
import { runSanbox } from './helpers/tmp.js';
import { copyImage } from './helpers/image-copy.js';

test('files unlinked while open on a kernel node that crashed: sanbox recover frees the orphans as the kernel does; orphan dir empty, fsck -fn clean, same allocator counts as the kernel\'s own recovery', async (t) => {
  t.timeout(300_000);
  const { dir, img } = await kernelTestVolume(t);
  const run1 = await bootKernel(t, { disks: [img], script: [
    await o2cbMountScript(img, { node: 1, dev: '/dev/vdb', mount: '/mnt/v', mountOptions: 'commit=60' }),
    'echo "kept" > /mnt/v/keep.txt',
    'dd if=/dev/urandom of=/mnt/v/orphan.bin bs=64k count=4 conv=fsync 2>/dev/null',
    'echo "small and inline" > /mnt/v/small.txt',
    'sync',
    'exec 3< /mnt/v/orphan.bin',
    'exec 4< /mnt/v/small.txt',
    'rm /mnt/v/orphan.bin /mnt/v/small.txt || echo "SANBOX-ERROR rm"',
    // The unlinks (and the orphan entries) committed to the journal, the files still open.
    'sync',
    'echo "SANBOX-OUT crashing"',
    'echo b > /proc/sysrq-trigger',
  ].join('\n') });
  t.deepEqual(run1.errors, [], tail(run1.console));
  t.is(run1.out.get('crashing'), '', tail(run1.console));
  t.is(run1.scriptExit, undefined, 'the guest died before its script ended');
  const kernelCopy = path.join(dir, 'kernel-copy.img');
  copyImage(img, kernelCopy);

  const rec = await runSanbox(t, ['recover', img, '--json', '--observe-ms', '2500'], { timeoutMs: 60_000 });
  t.is(rec.code, 0, rec.stderr);
  const slot0 = (JSON.parse(rec.stdout) as { slot: number; dirty: boolean; orphans: number; orphansFreed: number[] }[]).find((r) => r.slot === 0)!;
  t.true(slot0.dirty);
  t.is(slot0.orphans, 2, 'two orphans after the replay');
  t.is(slot0.orphansFreed.length, 2, 'both freed');
  t.deepEqual(await debugfsNames(img, '//orphan_dir:0000'), [], 'the orphan directory is empty');
  for (const ino of slot0.orphansFreed) t.notRegex(await debugfs(img, `stat <${ino}>`), /Flags: Valid/, `inode ${ino} freed`);
  t.deepEqual((await debugfsNames(img, '/')).sort(), ['keep.txt', 'lost+found']);
  const fsck = await fsckOk(img);
  t.true(fsck.ok, fsck.out);
  t.notRegex(/Journal Flags:(.*)/.exec(await debugfs(img, 'stat //journal:0000'))?.[1] ?? 'none', /Dirty/, 'the journal is clean again');

  // Boot 2, node 2: the kernel recovers the copy itself (replay, then orphan recovery of slot 0),
  // and mounts sanbox's result; both unmounted cleanly.
  const run2 = await bootKernel(t, { disks: [kernelCopy, img], script: [
    await o2cbMountScript(kernelCopy, { node: 2, dev: '/dev/vdb', mount: '/mnt/k' }),
    // Orphan recovery runs in the kernel's recovery completion work: give it a moment.
    'sleep 3',
    'umount /mnt/k || echo "SANBOX-ERROR umount k"',
    await o2cbMountScript(img, { node: 2, dev: '/dev/vdc', mount: '/mnt/s' }),
    'echo "SANBOX-OUT keep $(cat /mnt/s/keep.txt)"',
    'echo "SANBOX-OUT ls $(ls /mnt/s | tr "\\n" " ")"',
    'umount /mnt/s || echo "SANBOX-ERROR umount s"',
  ].join('\n') });
  t.deepEqual(run2.errors, [], tail(run2.console));
  t.is(run2.scriptExit, 0, tail(run2.console));
  t.is(run2.out.get('keep'), 'kept');
  t.is(run2.out.get('ls'), 'keep.txt lost+found');
  t.deepEqual(await debugfsNames(kernelCopy, '//orphan_dir:0000'), [], 'the kernel emptied the orphan directory of its copy too');
  for (const name of ['global_bitmap', 'inode_alloc:0000']) t.is(await allocatorUsed(img, name), await allocatorUsed(kernelCopy, name), `${name} used: sanbox's recovery = the kernel's`);
  const after = await fsckOk(img);
  t.true(after.ok, after.out);
});
