// Orphan directory processing in a node's online recovery (issue 17 item 3): a volume made by the
// REAL mkfs.ocfs2 holds a file unlinked while open on node 2's slot, as the kernel leaves one
// (its entry gone from its directory, an entry named by its block number in 16 hex digits in
// orphan_dir:0001, i_flags ORPHANED, i_orphaned_slot 1, no links). Node 2 (a separate process)
// mounts into slot 1 and is killed -9; node 1, after the fence, recovers slot 1 and frees the
// orphan through its own journal under its cluster locks. And a node whose own slot holds an
// orphan, killed -9 and restarted with no survivor: its mount replays its slot and frees it.
// Judges: debugfs.ocfs2 (orphan dir empty, inode not valid, global bitmap back to its count
// before the file) and fsck.ocfs2 -fn (clean).

import path from 'node:path';
import test from 'ava';
import { openDevice } from '../src/disk/open.js';
import { DirFileType, InodeFlag, slotFileName } from '../src/format/ocfs2/constants.js';
import { addEntry, readDirView, removeEntry } from '../src/fs/dir-ops.js';
import { FileOps, type ClusterLocker } from '../src/fs/file-ops.js';
import { Ocfs2Volume } from '../src/fs/ocfs2-volume.js';
import { clusterInit, isEvent, spawnNode } from './helpers/heartbeat-nodes.js';
import { mkfs, spawnMounted } from './helpers/mounted-volume.js';
import { allocatorUsed, debugfs, debugfsNames, fsckOk } from './helpers/ocfs2-oracle.js';
import { ownLockDir, runSanbox, tempDir } from './helpers/tmp.js';

ownLockDir(test);

/** One process before any node runs: no cluster to lock against. */
const noLocks: ClusterLocker = () => Promise.resolve(() => Promise.resolve());
/** Dinode fields the kernel's ocfs2_orphan_add changes: i_links_count, i_flags, i_orphaned_slot. */
const LINKS_OFFSET = 0x2a;
const FLAGS_OFFSET = 0x2c;
const ORPHANED_SLOT_OFFSET = 0x74;

/** Puts /victim.bin, then moves it into slot `slot`'s orphan directory as the kernel's unlink of an open file does. */
async function orphanOf(vol: string, slot: number): Promise<number> {
  const dev = await openDevice(vol);
  try {
    await new FileOps(dev, 0, noLocks).put('/victim.bin', Buffer.alloc(20_000, 7));
    const v = await Ocfs2Volume.open(dev);
    const root = await readDirView(v, await v.readInode(v.sb.rootBlkno));
    const hit = root.entries.find((e) => e.name === 'victim.bin')!;
    const orphanDir = await readDirView(v, await v.systemInode(slotFileName('orphan_dir', slot)));
    const bitmap = () => Promise.reject(new Error('an orphan entry fits the inline orphan directory'));
    const blocks = [
      removeEntry(v, root, hit),
      await addEntry(v, orphanDir, { inode: hit.inode, name: hit.inode.toString(16).padStart(16, '0'), fileType: DirFileType.REG }, bitmap),
    ];
    const ino = Buffer.from((await v.readInode(hit.inode)).block);
    ino.writeUInt16LE(0, LINKS_OFFSET);
    ino.writeUInt32LE(ino.readUInt32LE(FLAGS_OFFSET) | InodeFlag.ORPHANED, FLAGS_OFFSET);
    ino.writeUInt16LE(slot, ORPHANED_SLOT_OFFSET);
    const bs = v.blockSizeBytes;
    await dev.write(blocks[0]!.inode, root.dir.blkno * bs);
    await dev.write(blocks[1]!.inode, orphanDir.dir.blkno * bs);
    await dev.write(ino, hit.inode * bs);
    await dev.flush();
    return hit.inode;
  } finally {
    await dev.close();
  }
}

test('a node killed -9 with an orphan in its slot\'s orphan directory: the survivor\'s recovery frees it through its own journal; orphan dir empty, inode not valid, clusters back, fsck -fn clean', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'orph']);
  const vol = await mkfs(dir, 'orph', 2);
  const usedBefore = await allocatorUsed(vol, 'global_bitmap');
  const victim = await orphanOf(vol, 1);
  t.deepEqual(await debugfsNames(vol, '//orphan_dir:0001'), [victim.toString(16).padStart(16, '0')], 'the crafted orphan as debugfs.ocfs2 lists it');
  t.is(await allocatorUsed(vol, 'global_bitmap'), usedBefore + 5, 'the orphan holds 5 clusters');

  const n1 = await spawnMounted(t, img, 1, vol, 0);
  const n2 = await spawnMounted(t, img, 2, vol, 1);
  await n1.waitLine(isEvent('up', 2), 20_000, 'node 1 sees node 2');
  n2.child.kill('SIGKILL');
  await n1.waitLine((l) => /^recovered slot 1 of node 2:/.test(l.msg ?? ''), 40_000, 'node 1 recovers slot 1');
  const freed = await n1.waitLine((l) => /^freed \d+ orphan inode\(s\) of slot 1/.test(l.msg ?? ''), 10_000, 'node 1 frees the orphan');
  t.regex(freed.msg!, new RegExp(`^freed 1 orphan inode\\(s\\) of slot 1 on .*: ${victim}$`));
  const um = await runSanbox(t, ['ctl', img, '1', 'umount', vol], { timeoutMs: 60_000 });
  t.is(um.code, 0, um.stderr);
  n1.child.kill('SIGTERM');
  await n1.exited;

  t.deepEqual(await debugfsNames(vol, '//orphan_dir:0001'), [], 'the orphan directory is empty');
  t.notRegex(await debugfs(vol, `stat <${victim}>`), /Flags: Valid/, 'the orphan inode is freed');
  t.is(await allocatorUsed(vol, 'global_bitmap'), usedBefore, 'its clusters are back in the global bitmap');
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
});

test('a node killed -9 with an orphan in its own slot, restarted: its mount replays its own journal and frees the orphan; fsck -fn clean', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'own']);
  const vol = await mkfs(dir, 'own', 2);
  const usedBefore = await allocatorUsed(vol, 'global_bitmap');
  const victim = await orphanOf(vol, 0);
  const first = await spawnMounted(t, img, 2, vol, 0);
  first.child.kill('SIGKILL');
  await first.exited;
  // Its restart replays its own dirty slot at mount ("mounted … (its journal was dirty and was replayed)").
  const again = spawnNode(t, img, 2, ['--mount', vol]);
  const freed = await again.waitLine((l) => /orphan inode\(s\) of own slot 0|orphans of own slot 0 left/.test(l.msg ?? ''), 20_000, 'node 2 frees its own slot\'s orphan at mount');
  t.regex(freed.msg!, new RegExp(`freed 1 orphan inode\\(s\\) of own slot 0: ${victim}$`));
  await again.waitLine((l) => /^mounted .* in slot 0 \(its journal was dirty and was replayed\)$/.test(l.msg ?? ''), 20_000, 'node 2 mounted again');
  const um = await runSanbox(t, ['ctl', img, '2', 'umount', vol], { timeoutMs: 60_000 });
  t.is(um.code, 0, um.stderr);
  again.child.kill('SIGTERM');
  await again.exited;
  t.deepEqual(await debugfsNames(vol, '//orphan_dir:0000'), []);
  t.is(await allocatorUsed(vol, 'global_bitmap'), usedBefore, 'the orphan\'s clusters are back');
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
});
