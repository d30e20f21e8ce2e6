// The real kernel judges files a sanbox node wrote through its slot journal (issue 17 item 2 and
// item 5c, for this slice): a `sanbox node` process mounts a volume made by the REAL mkfs.ocfs2,
// mkdirs, puts (creates and replaces), removes, and unmounts; then one kernel boot mounts the
// volume as another o2cb node, lists every directory and prints every file's sha256, which must
// equal sanbox's; the kernel then writes a file itself and unmounts, and fsck.ocfs2 -fn is clean.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { clusterInit } from './helpers/heartbeat-nodes.js';
import { mkfs, spawnMounted } from './helpers/mounted-volume.js';
import { debugfs, fsckOk, hasTool } from './helpers/ocfs2-oracle.js';
import { bootKernel, hasQemu, o2cbMountScript, tail } from './helpers/qemu-kernel.js';
import { ownLockDir, runSanbox, tempDir } from './helpers/tmp.js';

ownLockDir(test);

async function ok(t: ExecutionContext, img: string, node: number, ...args: string[]): Promise<string> {
  const r = await runSanbox(t, ['ctl', img, String(node), ...args], { timeoutMs: 60_000 });
  t.is(r.code, 0, `ctl ${node} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

test('the kernel mounts a volume a sanbox node changed through its journal and sees every file with the same sha256; fsck -fn is clean after the kernel wrote too', async (t) => {
  t.timeout(300_000);
  t.true(hasQemu(), 'qemu-system-x86_64 is needed (apt-get install qemu-system-x86)');
  t.true(hasTool('fsck.ocfs2'), 'fsck.ocfs2 is needed (ocfs2-tools)');
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '2', '--name', 'kern']);
  const vol = await mkfs(dir, 'kern', 2);
  const n1 = await spawnMounted(t, img, 1, vol, 0);

  const files = new Map<string, Buffer>([
    ['/top.txt', Buffer.from('written by sanbox node 1\n')],
    ['/d/one.bin', Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff))],
    ['/d/sub/empty', Buffer.alloc(0)],
    ['/d/replaced.txt', Buffer.from('the second version\n')],
    // Beyond the inline area: clusters of the global bitmap; replaced, so the first clusters are freed.
    ['/d/big.bin', Buffer.from(Array.from({ length: 200_000 }, (_, i) => (i * 13 + (i >> 9)) & 0xff))],
  ]);
  await ok(t, img, 1, 'fs', 'mkdir', vol, '/d');
  await ok(t, img, 1, 'fs', 'mkdir', vol, '/d/sub');
  await ok(t, img, 1, 'fs', 'mkdir', vol, '/gone-dir');
  const put = async (p: string, data: Buffer): Promise<void> => {
    const local = path.join(dir, 'local');
    fs.writeFileSync(local, data);
    await ok(t, img, 1, 'fs', 'put', vol, p, local);
  };
  await put('/d/replaced.txt', Buffer.from('the first version, longer than the second\n'));
  await put('/gone.txt', Buffer.from('removed before the kernel looks'));
  await put('/d/big.bin', Buffer.alloc(70_000, 0x5a));
  await put('/gone-big.bin', Buffer.alloc(40_000, 0x33));
  await ok(t, img, 1, 'fs', 'rm', vol, '/gone-big.bin');
  for (const [p, data] of files) await put(p, data);
  await ok(t, img, 1, 'fs', 'rm', vol, '/gone.txt');
  await ok(t, img, 1, 'fs', 'rm', vol, '/gone-dir');
  // The node took its files' clusters from a local alloc window of its slot (8 MiB of 4 KiB clusters) ...
  t.regex(await debugfs(vol, 'stat //local_alloc:0000'), /Bitmap Total: 2048\s+Used: [1-9]\d*\s/, 'a mounted node allocates from its local alloc window');
  await ok(t, img, 1, 'umount', vol);
  // ... and gave it back at umount: the kernel refuses a clean journal beside a window.
  t.regex(await debugfs(vol, 'stat //local_alloc:0000'), /Bitmap Total: 0\s+Used: 0\s/, 'umount returned the window');
  n1.child.kill('SIGTERM');
  await n1.exited;

  const names = [...files.keys()];
  const run = await bootKernel(t, { disks: [vol], script: [
    await o2cbMountScript(vol, { node: 3, dev: '/dev/vdb', mount: '/mnt/v' }),
    'echo "SANBOX-OUT ls-root $(ls -1 /mnt/v | tr "\\n" " ")"',
    'echo "SANBOX-OUT ls-d $(ls -1 /mnt/v/d | tr "\\n" " ")"',
    'echo "SANBOX-OUT ls-sub $(ls -1 /mnt/v/d/sub | tr "\\n" " ")"',
    ...names.map((p, i) => `echo "SANBOX-OUT sha${i} $(sha256sum /mnt/v${p} | cut -d" " -f1)"`),
    'echo "from the kernel" > /mnt/v/d/kernel.txt',
    'umount /mnt/v || echo "SANBOX-ERROR umount"',
  ].join('\n') });
  t.deepEqual(run.errors, [], tail(run.console));
  t.is(run.scriptExit, 0, tail(run.console));
  t.is(run.out.get('ls-root'), 'd lost+found top.txt', tail(run.console));
  t.is(run.out.get('ls-d'), 'big.bin one.bin replaced.txt sub');
  t.is(run.out.get('ls-sub'), 'empty');
  names.forEach((p, i) => t.is(run.out.get(`sha${i}`), createHash('sha256').update(files.get(p)!).digest('hex'), `sha256 of ${p} in the kernel`));
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
});
