// Extent trees deeper than the inode (issue 17 item 2): with the free space fragmented into single
// clusters, a put needs more extents than the inode's list holds (243 at 4K), so the file gets a
// tree of depth 1 — leaf extent blocks (EXBLK01) from the slot's extent_alloc, which first grows
// by a group of the global bitmap. Judges: the REAL fsck.ocfs2 -fn (extent blocks, their
// allocator bits and chains), debugfs.ocfs2 (stat: tree depth; dump: content) and the REAL kernel
// (reads the file back, removes one, and fsck is clean after it).

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { openDevice } from '../src/disk/open.js';
import { FileOps, type ClusterLocker } from '../src/fs/file-ops.js';
import { mkfs } from './helpers/mounted-volume.js';
import { debugfs, fsckOk, hasTool } from './helpers/ocfs2-oracle.js';
import { bootKernel, hasQemu, o2cbMountScript, tail } from './helpers/qemu-kernel.js';
import { tempDir } from './helpers/tmp.js';

/** One process, one operation at a time: no cluster to lock against. */
const noLocks: ClusterLocker = () => Promise.resolve(() => Promise.resolve());
/** One-cluster files put and every other one removed: 900 free single clusters between used ones. */
const FRAGMENT_FILES = 1800;
const CLUSTER_BYTES = 4096;

const pattern = (bytes: number, seed: number): Buffer => Buffer.from(Array.from({ length: bytes }, (_, i) => (i * seed + (i >> 12)) & 0xff));
const sha = (b: Buffer | string): string => createHash('sha256').update(b).digest('hex');

/** `debugfs.ocfs2 -R "stat PATH"`: the inode's tree depth. */
async function treeDepth(vol: string, path: string): Promise<number> {
  const m = /Tree Depth: (\d+)/.exec(await debugfs(vol, `stat ${path}`));
  if (m === null) throw new Error(`debugfs stat ${path} shows no tree depth`);
  return Number(m[1]);
}

test('files with more extents than the inode holds get leaf extent blocks (depth 1) from a grown extent_alloc; get, debugfs dump and the kernel read them back; replace and rm free them; fsck -fn clean', async (t) => {
  t.timeout(300_000);
  t.true(hasQemu(), 'qemu-system-x86_64 is needed (apt-get install qemu-system-x86)');
  t.true(hasTool('fsck.ocfs2'), 'fsck.ocfs2 is needed (ocfs2-tools)');
  const dir = tempDir(t);
  const vol = await mkfs(dir, 'ext', 2);
  const dev = await openDevice(vol);
  let closed = false;
  t.teardown(() => (closed ? undefined : dev.close()));
  const ops = new FileOps(dev, 0, noLocks);
  await ops.mkdir('/frag');
  for (let i = 0; i < FRAGMENT_FILES; i++) await ops.put(`/frag/f${i}`, Buffer.alloc(CLUSTER_BYTES, i & 0xff));
  for (let i = 0; i < FRAGMENT_FILES; i += 2) await ops.rm(`/frag/f${i}`);

  // Where only single free clusters are left first, 350 clusters are 350 runs (> 243): depth 1, two leaves.
  const deep = pattern(350 * CLUSTER_BYTES - 123, 7);
  await ops.put('/deep.bin', deep);
  t.true((await ops.get('/deep.bin')).equals(deep), 'get reads the depth-1 file back');
  // Two more depth-1 files: one removed, one replaced by a file of few runs (its leaves freed in the same transaction).
  await ops.put('/gone.bin', pattern(250 * CLUSTER_BYTES, 3));
  await ops.put('/deep2.bin', pattern(250 * CLUSTER_BYTES, 5));
  const again = pattern(300 * CLUSTER_BYTES, 13);
  await ops.put('/deep2.bin', again);
  await ops.rm('/gone.bin');
  await dev.close();
  closed = true;

  t.is(await treeDepth(vol, '/deep.bin'), 1);
  t.is(await treeDepth(vol, '/deep2.bin'), 0);
  // The group's descriptor and deep.bin's two leaves; the other files' four leaves were freed.
  t.regex(await debugfs(vol, 'stat //extent_alloc:0000'), /Bitmap Total: 1024\s+Used: 3\s/, 'extent_alloc:0000 grew a group');
  const dumped = path.join(dir, 'dumped.bin');
  await debugfs(vol, `dump /deep.bin ${dumped}`);
  t.is(sha(fs.readFileSync(dumped)), sha(deep), 'debugfs.ocfs2 dump reads the same bytes');
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);

  const run = await bootKernel(t, { disks: [vol], script: [
    await o2cbMountScript(vol, { node: 3, dev: '/dev/vdb', mount: '/mnt/v' }),
    'echo "SANBOX-OUT deep $(sha256sum /mnt/v/deep.bin | cut -d" " -f1)"',
    'echo "SANBOX-OUT deep2 $(sha256sum /mnt/v/deep2.bin | cut -d" " -f1)"',
    'echo "SANBOX-OUT size $(stat -c %s /mnt/v/deep.bin)"',
    'rm /mnt/v/deep.bin || echo "SANBOX-ERROR rm"',
    'umount /mnt/v || echo "SANBOX-ERROR umount"',
  ].join('\n') });
  t.deepEqual(run.errors, [], tail(run.console));
  t.is(run.scriptExit, 0, tail(run.console));
  t.is(run.out.get('deep'), sha(deep), 'the kernel reads the depth-1 file');
  t.is(run.out.get('deep2'), sha(again), 'the kernel reads the file that replaced a depth-1 one');
  t.is(run.out.get('size'), String(deep.length));
  const after = await fsckOk(vol);
  t.true(after.ok, after.out);
});
