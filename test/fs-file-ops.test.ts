// The library's file operations (src/fs/file-ops.ts) in one process, on volumes made by the REAL
// mkfs.ocfs2, judged by the REAL fsck.ocfs2 -fn and debugfs.ocfs2:
// - a crash at every flush of an operation (all later I/O refused, as after power loss), then the
//   slot's recovery as a remount does it: the change is all there (always once it was
//   acknowledged) or not at all, and fsck finds the volume consistent;
// - bad requests are refused in one error naming the device, nothing written.

import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import type { BlockDevice } from '../src/disk/device.js';
import { openDevice } from '../src/disk/open.js';
import { SanboxError } from '../src/errors.js';
import { FileOps, type ClusterLocker } from '../src/fs/file-ops.js';
import { openJournal, writeJournalInode } from '../src/fs/journal-reader.js';
import { Ocfs2Volume } from '../src/fs/ocfs2-volume.js';
import { recoverSlot } from '../src/fs/recover.js';
import { mkfs } from './helpers/mounted-volume.js';
import { allocatorUsed, debugfs, debugfsNames, fsckOk } from './helpers/ocfs2-oracle.js';
import { tempDir } from './helpers/tmp.js';
import { copyImage } from './helpers/image-copy.js';

/** One process, one operation at a time: no cluster to lock against. */
const noLocks: ClusterLocker = () => Promise.resolve(() => Promise.resolve());

class Crashed extends Error {}

/** A device that dies after `flushes` flushes: every later write or flush throws. */
function crashingAfter(dev: BlockDevice, flushes: number): BlockDevice & { crashed: () => boolean } {
  let left = flushes;
  const dead = (): boolean => left < 0;
  return {
    name: dev.name, sizeBytes: dev.sizeBytes, sectorSizeBytes: dev.sectorSizeBytes, readOnly: dev.readOnly,
    read: (b, o) => dev.read(b, o),
    write: (b, o) => (dead() ? Promise.reject(new Crashed('crashed')) : dev.write(b, o)),
    flush: async () => {
      if (dead()) throw new Crashed('crashed');
      if (left-- === 0) throw new Crashed('crashed');
      await dev.flush();
    },
    discard: (o, l) => dev.discard(o, l),
    close: () => dev.close(),
    crashed: dead,
  };
}

/** A volume with slot 0's journal DIRTY (as a mount leaves it) and /keep.txt put through it. */
async function baseVolume(dir: string): Promise<string> {
  const vol = await mkfs(dir, 'fops', 2);
  const dev = await openDevice(vol);
  try {
    const v = await Ocfs2Volume.open(dev);
    await writeJournalInode(v, await openJournal(v, 0), { dirty: true });
    await new FileOps(dev, 0, noLocks).put('/keep.txt', Buffer.from('kept\n'));
  } finally {
    await dev.close();
  }
  return vol;
}

const BIG = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `${i % 10}`).join(''));

type State = 'whole' | 'absent' | 'half';

/** A put's file on the volume: listed with exactly the content, or not listed at all. */
async function fileState(vol: string, name: string, want: string): Promise<State> {
  if (!new RegExp(`\\s${name.replace('.', '\\.')}\n`).test(await debugfs(vol, 'ls -l /'))) return 'absent';
  return (await debugfs(vol, `cat /${name}`)) === want ? 'whole' : 'half';
}

/** Entries of 40 bytes (27-byte names) that fill a 4K inode's inline directory: (3896 − 32) / 40. */
const INLINE_DIR_ENTRIES_MAX = 96;
const longName = (i: number): string => `file-with-a-longish-name-${String(i).padStart(2, '0')}`;

/** baseVolume, and /full: an inline directory with room for no more entry. */
async function fullDirVolume(dir: string): Promise<string> {
  const vol = await baseVolume(dir);
  const dev = await openDevice(vol);
  try {
    const ops = new FileOps(dev, 0, noLocks);
    await ops.mkdir('/full');
    for (let i = 0; i < INLINE_DIR_ENTRIES_MAX; i++) await ops.put(`/full/${longName(i)}`, Buffer.from(`${i}\n`));
  } finally {
    await dev.close();
  }
  if (/InlineData/.test(await debugfs(vol, 'stat /full')) === false) throw new Error('/full was expanded already');
  return vol;
}

/** baseVolume with the free space cut into single clusters (one-cluster files, every other one removed). */
async function fragmentedVolume(dir: string): Promise<string> {
  const vol = await baseVolume(dir);
  const dev = await openDevice(vol);
  try {
    const ops = new FileOps(dev, 0, noLocks);
    await ops.mkdir('/frag');
    for (let i = 0; i < 600; i++) await ops.put(`/frag/f${i}`, Buffer.alloc(4096, i & 0xff));
    for (let i = 0; i < 600; i += 2) await ops.rm(`/frag/f${i}`);
  } finally {
    await dev.close();
  }
  return vol;
}

/** 260 clusters where only single free clusters are left: more runs than the inode holds (depth 1). */
const DEEP = Buffer.from(Array.from({ length: 260 * 4096 }, (_, i) => (i * 7 + (i >> 12)) & 0xff));

const OPS: [string, (ops: FileOps) => Promise<unknown>, (vol: string) => Promise<State>, ((dir: string) => Promise<string>)?][] = [
  ['put of a 20000-byte file (clusters)', (o) => o.put('/big.txt', BIG), (v) => fileState(v, 'big.txt', BIG.toString())],
  ['put of an inline file', (o) => o.put('/small.txt', Buffer.from('small\n')), (v) => fileState(v, 'small.txt', 'small\n')],
  ['replacing an inline file by clusters', (o) => o.put('/keep.txt', BIG), async (v) => {
    const s = await fileState(v, 'keep.txt', BIG.toString());
    return s === 'half' && (await fileState(v, 'keep.txt', 'kept\n')) === 'whole' ? 'absent' : s;
  }],
  ['mkdir', (o) => o.mkdir('/dir'), async (v) => (/\sdir\n/.test(await debugfs(v, 'ls -l /')) ? 'whole' : 'absent')],
  ['rm', (o) => o.rm('/keep.txt'), async (v) => (/keep\.txt/.test(await debugfs(v, 'ls -l /')) ? 'absent' : 'whole')],
  ['a put that expands a full inline directory into a block', (o) => o.put(`/full/${longName(INLINE_DIR_ENTRIES_MAX)}`, Buffer.from('new\n')), async (v) => {
    const names = await debugfsNames(v, '/full');
    const inline = /InlineData/.test(await debugfs(v, 'stat /full'));
    if (names.length === INLINE_DIR_ENTRIES_MAX && inline) return 'absent';
    const whole = names.length === INLINE_DIR_ENTRIES_MAX + 1 && !inline && (await debugfs(v, `cat /full/${longName(INLINE_DIR_ENTRIES_MAX)}`)) === 'new\n';
    return whole ? 'whole' : 'half';
  }, fullDirVolume],
  ['a put whose extents need leaf extent blocks (tree depth 1)', (o) => o.put('/deep.bin', DEEP), async (v) => {
    if (!/\sdeep\.bin\n/.test(await debugfs(v, 'ls -l /'))) return 'absent';
    const dumped = `${v}.deep`;
    await debugfs(v, `dump /deep.bin ${dumped}`);
    const same = fs.readFileSync(dumped).equals(DEEP) && /Tree Depth: 1/.test(await debugfs(v, 'stat /deep.bin'));
    fs.rmSync(dumped, { force: true });
    return same ? 'whole' : 'half';
  }, fragmentedVolume],
];

for (const [what, op, visible, makeBase] of OPS) {
  test(`a crash at every flush of ${what}: after the slot's recovery the change is whole or absent (whole whenever it was acknowledged) and fsck -fn is clean`, async (t) => {
    t.timeout(300_000);
    const dir = tempDir(t);
    const base = await (makeBase ?? baseVolume)(dir);
    const work = path.join(dir, 'work.img');
    let completedAt: number | undefined;
    for (let k = 0; completedAt === undefined; k++) {
      t.true(k < 20, 'an operation flushes fewer than 20 times');
      if (k >= 20) return;
      copyImage(base, work);
      const dev = await openDevice(work);
      const crashing = crashingAfter(dev, k);
      let acknowledged = false;
      try {
        await op(new FileOps(crashing, 0, noLocks));
        acknowledged = true;
        if (!crashing.crashed()) completedAt = k;
      } catch (err) {
        if (!(err instanceof Crashed)) throw err;
      }
      // The remount's own-slot recovery (src/node/mount.ts does the same).
      await recoverSlot(await Ocfs2Volume.open(dev), 0, { observeMs: 0, clearSlot: false });
      await dev.close();
      const fsck = await fsckOk(work);
      t.true(fsck.ok, `crash after ${k} flushes: ${fsck.out}`);
      const state = await visible(work);
      t.not(state, 'half', `crash after ${k} flushes: ${what} is half there`);
      if (acknowledged) t.is(state, 'whole', `crash after ${k} flushes: an acknowledged ${what} is whole`);
      t.log(`crash after ${k} flushes: ${acknowledged ? 'acknowledged' : 'not acknowledged'}, ${state}`);
    }
  });
}

test('bad requests are refused by name and write nothing', async (t) => {
  const dir = tempDir(t);
  const vol = await baseVolume(dir);
  const before = fs.readFileSync(vol);
  const dev = await openDevice(vol);
  t.teardown(() => dev.close());
  const ops = new FileOps(dev, 0, noLocks);
  const refused = async (p: Promise<unknown>, re: RegExp): Promise<void> => {
    const err = await t.throwsAsync(p);
    t.true(err instanceof SanboxError, String(err));
    t.regex(err!.message, re);
    t.true(err!.message.startsWith(vol), err!.message);
  };
  await refused(ops.get('/nope'), /\/nope: no such file or directory/);
  await refused(ops.rm('/nope'), /no such file or directory/);
  await refused(ops.put('/nope/x', Buffer.from('x')), /\/nope: no such file or directory/);
  await refused(ops.put('/keep.txt/x', Buffer.from('x')), /is not a directory/);
  await refused(ops.mkdir('/keep.txt'), /exists/);
  await refused(ops.put('/lost+found', Buffer.from('x')), /is a directory/);
  await refused(ops.put('/', Buffer.from('x')), /names the root directory/);
  await refused(ops.put(`/${'n'.repeat(256)}`, Buffer.from('x')), /is not a name/);
  await refused(ops.rm('/'), /names the root directory/);
  t.true(fs.readFileSync(vol).equals(before), 'nothing written');
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
});

for (const [what, features] of [['with inline data', undefined], ['without inline data (directories start as one block)', '--fs-features=sparse,extended-slotmap,unwritten']] as const) {
  test(`a directory ${what} grows into blocks as entries are added (a full inline area is expanded into a block in one transaction), entries are removed from blocks, and debugfs ls -l and fsck -fn agree`, async (t) => {
    t.timeout(120_000);
    const dir = tempDir(t);
    const vol = await mkfs(dir, 'fops', 2, features);
    const dev = await openDevice(vol);
    t.teardown(() => dev.close());
    const ops = new FileOps(dev, 0, noLocks);
    await ops.mkdir('/d');
    const names = new Set<string>();
    // About 40 bytes an entry: ~100 fill a 4 KiB block, so 300 need at least three blocks.
    for (let i = 0; i < 300; i++) {
      const n = `file-with-a-longish-name-${i}`;
      await ops.put(`/d/${n}`, Buffer.from(`${i}\n`));
      names.add(n);
    }
    for (let i = 0; i < 300; i += 7) {
      await ops.rm(`/d/file-with-a-longish-name-${i}`);
      names.delete(`file-with-a-longish-name-${i}`);
    }
    await ops.mkdir('/d/sub');
    names.add('sub');
    await ops.put('/d/sub/x', Buffer.from('x'));
    await ops.rm('/d/sub/x');
    await ops.rm('/d/sub');
    names.delete('sub');
    const v = await Ocfs2Volume.open(dev);
    const d = await v.readInode((await ops.ls('/d')).find((e) => e.name === '.')!.inode);
    t.is(d.inode.dynFeatures & 1, 0, 'no longer inline');
    t.true(d.inode.sizeBytes >= 3n * 4096n, `i_size ${d.inode.sizeBytes}: three blocks or more`);
    t.deepEqual((await ops.ls('/d')).map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort(), [...names].sort());
    t.deepEqual((await debugfsNames(vol, '/d')).sort(), [...names].sort(), 'debugfs.ocfs2 ls -l lists the same names');
    t.is(await debugfs(vol, 'cat /d/file-with-a-longish-name-299'), '299\n');
    const fsck = await fsckOk(vol);
    t.true(fsck.ok, fsck.out);
    // An empty block directory is removed, its clusters freed (fsck compares nothing here; debugfs shows it gone).
    for (const n of names) await ops.rm(`/d/${n}`);
    await ops.rm('/d');
    t.false((await debugfsNames(vol, '/')).includes('d'));
    const after = await fsckOk(vol);
    t.true(after.ok, after.out);
  });
}

test('a lookup searches every directory of the path under its META lock PR, one after another, before the target is locked', async (t) => {
  const dir = tempDir(t);
  const vol = await baseVolume(dir);
  const dev = await openDevice(vol);
  t.teardown(() => dev.close());
  const setup = new FileOps(dev, 0, noLocks);
  await setup.mkdir('/d');
  await setup.mkdir('/d/sub');
  await setup.put('/d/sub/f', Buffer.from('f\n'));
  const events: string[] = [];
  // Lock names carry the inode's block number as 16 hex digits (reference/ocfs2.md §6).
  const blknoOf = (resource: string): number => Number.parseInt(/M0{6}([0-9a-f]{16})/.exec(resource)![1]!, 16);
  const recording: ClusterLocker = (resource, mode) => {
    events.push(`lock ${blknoOf(resource)} ${mode}`);
    return Promise.resolve(() => {
      events.push(`unlock ${blknoOf(resource)}`);
      return Promise.resolve();
    });
  };
  const ino = async (p: string): Promise<number> => (await setup.ls(p)).find((e) => e.name === '.' || p.endsWith(e.name))!.inode;
  const [root, d, sub, f] = [await ino('/'), await ino('/d'), await ino('/d/sub'), await ino('/d/sub/f')];
  t.is((await new FileOps(dev, 0, recording).get('/d/sub/f')).toString(), 'f\n');
  t.deepEqual(events, [`lock ${root} PR`, `unlock ${root}`, `lock ${d} PR`, `unlock ${d}`, `lock ${sub} PR`, `unlock ${sub}`, `lock ${f} PR`, `unlock ${f}`]);
  events.length = 0;
  await new FileOps(dev, 0, recording).put('/d/sub/g', Buffer.from('g\n'));
  t.deepEqual(events.slice(0, 5), [`lock ${root} PR`, `unlock ${root}`, `lock ${d} PR`, `unlock ${d}`, `lock ${sub} EX`], 'a change locks the parent EX after PR on every directory above it');
});

test('local alloc: a node takes a window of the global bitmap once (under its lock), then puts take clusters from it without the global lock; releasing it returns the unused bits; debugfs shows the window, fsck -fn clean', async (t) => {
  const dir = tempDir(t);
  const vol = await baseVolume(dir);
  const usedAtStart = await allocatorUsed(vol, 'global_bitmap');
  const dev = await openDevice(vol);
  let closed = false;
  t.teardown(() => (closed ? undefined : dev.close()));
  const v = await Ocfs2Volume.open(dev);
  const bitmapInode = (await v.systemInode('global_bitmap')).blkno;
  const locked: number[] = [];
  const recording: ClusterLocker = (resource) => {
    locked.push(Number.parseInt(/M0{6}([0-9a-f]{16})/.exec(resource)![1]!, 16));
    return Promise.resolve(() => Promise.resolve());
  };
  const ops = new FileOps(dev, 0, recording, { localAlloc: true });
  await ops.put('/one.bin', Buffer.alloc(50_000, 1));
  t.true(locked.includes(bitmapInode), 'the first put takes the window under the global bitmap lock');
  locked.length = 0;
  await ops.put('/two.bin', Buffer.alloc(50_000, 2));
  t.false(locked.includes(bitmapInode), 'the second put takes its clusters from the window alone');
  const la = await debugfs(vol, 'stat //local_alloc:0000');
  t.regex(la, /Bitmap Total: 2048\s+Used: 26\s/, 'an 8 MiB window of 4 KiB clusters, 2 × 13 clusters handed out');
  t.regex(la, /Local Bitmap Offset: [1-9]\d*/);
  t.is(await allocatorUsed(vol, 'global_bitmap'), usedAtStart + 2048, 'the whole window is used in the global bitmap');
  await ops.rm('/two.bin');
  t.is(await new FileOps(dev, 0, recording).releaseLocalAlloc(), 2048 - 26, 'the bits never handed out go back');
  await dev.close();
  closed = true;
  t.regex(await debugfs(vol, 'stat //local_alloc:0000'), /Bitmap Total: 0\s+Used: 0\s/);
  t.is(await allocatorUsed(vol, 'global_bitmap'), usedAtStart + 13, 'only /one.bin\'s clusters stay used');
  t.is(await debugfs(vol, 'cat /one.bin'), Buffer.alloc(50_000, 1).toString());
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
});
