// The real kernel judges sanbox's mount hook (issue 17 item 1): two `sanbox node` processes mount
// a `sanbox mkfs` volume into two slots and unmount it; then Debian's kernel (QEMU, one boot:
// docs/kernel-tests.md) mounts the same volume as one more o2cb node. It must find every journal
// clean (no "not unmounted cleanly", no replay of another slot), take a slot, write and read a
// file, and unmount; fsck.ocfs2 -fn is clean afterwards and the slot map empty.

import crypto from 'node:crypto';
import path from 'node:path';
import test from 'ava';
import { bootKernel, kernelTestVolume, o2cbMountScript, tail } from './helpers/qemu-kernel.js';
import { clusterInit, spawnNode } from './helpers/heartbeat-nodes.js';
import { debugfs, fsckOk } from './helpers/ocfs2-oracle.js';
import { runSanbox } from './helpers/tmp.js';

test('the kernel mounts a volume two sanbox nodes mounted and unmounted: clean journals, a free slot, fsck -fn clean', async (t) => {
  t.timeout(300_000);
  const { dir, img: vol } = await kernelTestVolume(t);
  const img = path.join(dir, 'c.img');
  // The cluster name the volume records (kernelTestVolume: o2cb cluster 'kern').
  await clusterInit(t, [img, '--nodes', '4', '--name', 'kern']);

  const n1 = spawnNode(t, img, 1, ['--mount', vol]);
  await n1.waitLine((l) => /^mounted .* in slot 0$/.test(l.msg ?? ''), 20_000, 'node 1 mounted');
  const n2 = spawnNode(t, img, 2);
  await n2.waitLine((l) => /ready after/.test(l.msg ?? ''), 20_000, 'node 2 ready');
  const m2 = await runSanbox(t, ['ctl', img, '2', 'mount', vol], { timeoutMs: 30_000 });
  t.is(m2.code, 0, m2.stderr);
  t.regex(await debugfs(vol, 'slotmap'), /^\s+0\s+1\s*$[\s\S]*^\s+1\s+2\s*$/m);
  const u2 = await runSanbox(t, ['ctl', img, '2', 'umount', vol], { timeoutMs: 30_000 });
  t.is(u2.code, 0, u2.stderr);
  for (const p of [n1, n2]) p.child.kill('SIGTERM');
  for (const p of [n1, n2]) t.is((await p.exited).code, 0, p.stderr());
  t.notRegex(await debugfs(vol, 'slotmap'), /^\s+\d+\s+\d+\s*$/m, 'slot map empty after the sanbox umounts');

  const content = 'written by the kernel after two sanbox mounts\n';
  const run = await bootKernel(t, {
    disks: [vol],
    script: [
      await o2cbMountScript(vol, { node: 3, dev: '/dev/vdb', mount: '/mnt/v' }),
      `printf '${content.replace(/\n/g, '\\n')}' > /mnt/v/k.txt && sync`,
      'echo "SANBOX-OUT sha $(sha256sum /mnt/v/k.txt | cut -d" " -f1)"',
      'umount /mnt/v || echo "SANBOX-ERROR umount /mnt/v"',
    ].join('\n'),
  });
  t.log(`boot: ${run.elapsedMs} ms`);
  t.deepEqual(run.errors, [], tail(run.console));
  t.regex(run.console, /ocfs2: Mounting device/, tail(run.console));
  t.notRegex(run.console, /not unmounted cleanly|Begin replay journal|recovering/i, 'the kernel found every journal clean');
  t.is(run.out.get('sha'), crypto.createHash('sha256').update(content).digest('hex'));

  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
  t.notRegex(await debugfs(vol, 'slotmap'), /^\s+\d+\s+\d+\s*$/m, 'the kernel freed its slot too');
  const cat = await runSanbox(t, ['cat', vol, '/k.txt']);
  t.is(cat.stdout, content);
});
