// The mount rules without a cluster (src/fs/mount-rules.ts), judged by the real debugfs.ocfs2:
// lock names equal `encode`, slot map entries written in both formats read back by `slotmap`, the
// kernel's slot choice; and a fuzz: a mutated superblock or slot map makes authorize/chooseSlot
// return or throw a typed error, never anything else.

import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { openDevice } from '../src/disk/open.js';
import { SanboxError } from '../src/errors.js';
import { authorizeVolume, chooseSlot, journalLockResource, LockType, ocfs2LockName, superLockResource, writeSlotEntry } from '../src/fs/mount-rules.js';
import { Ocfs2Volume } from '../src/fs/ocfs2-volume.js';
import { fuzzRandom } from './helpers/fuzz.js';
import { debugfs, realMkfs } from './helpers/ocfs2-oracle.js';
import { tempDir } from './helpers/tmp.js';
import { copyImage } from './helpers/image-copy.js';

const BS = 4096;
const CLUSTER = 'rules';

async function volume(dir: string, features: string): Promise<string> {
  const img = path.join(dir, `v-${features.replace(/[^a-z]/g, '')}.img`);
  await realMkfs(img, 64 * 1024 * 1024, ['-q', '-F', '-N', '3', '-b', String(BS), '-C', String(BS), '--cluster-stack=o2cb', `--cluster-name=${CLUSTER}`, '--fs-feature-level=max-compat', `--fs-features=${features}`]);
  return img;
}

async function withVol<T>(img: string, fn: (vol: Ocfs2Volume) => Promise<T>, readOnly = false): Promise<T> {
  const dev = await openDevice(img, { guard: 'none', readOnly });
  try {
    return await fn(await Ocfs2Volume.open(dev));
  } finally {
    await dev.close();
  }
}

test('lock names equal debugfs.ocfs2 encode; the superblock lock is S on blkno 2, generation 0', async (t) => {
  const img = await volume(tempDir(t), 'sparse,inline-data,extended-slotmap');
  await withVol(img, async (vol) => {
    for (const slot of [0, 1, 2]) {
      const want = (await debugfs(img, `encode //journal:000${slot}`)).trim();
      t.is((await journalLockResource(vol, slot)).split(':')[1], want);
    }
    const uuid = (await debugfs(img, 'stats')).match(/UUID: ([0-9A-F]{32})/)![1]!;
    t.is(superLockResource(vol), `${uuid}:S0000000000000000000002${'0'.repeat(8)}`);
    t.is(superLockResource(vol).length, 64, 'the lockspace\'s longest resource name');
    t.is(ocfs2LockName(LockType.META, 0x19, 0xca956086), 'M0000000000000000000019ca956086', 'reference/ocfs2.md §6 example');
    t.notThrows(() => authorizeVolume(vol, CLUSTER));
    t.throws(() => authorizeVolume(vol, 'other'), { instanceOf: SanboxError, message: /belongs to cluster 'rules', this node's cluster is 'other'/ });
  }, true);
});

for (const [format, features] of [['extended', 'sparse,inline-data,extended-slotmap'], ['old', 'sparse,inline-data,noextended-slotmap']] as const) {
  test(`slot map (${format} format): entries written one by one read back by debugfs.ocfs2 slotmap; the kernel's slot choice`, async (t) => {
    const img = await volume(tempDir(t), features);
    await withVol(img, async (vol) => {
      t.deepEqual(await chooseSlot(vol, 7), { slot: 0, reused: false });
      await writeSlotEntry(vol, 1, 7);
      t.regex(await debugfs(img, 'slotmap'), /^\s+1\s+7\s*$/m);
      t.deepEqual(await chooseSlot(vol, 7), { slot: 1, reused: true }, 'a node\'s own slot first');
      t.deepEqual(await chooseSlot(vol, 3), { slot: 0, reused: false }, 'else the first free one');
      await writeSlotEntry(vol, 0, 3);
      await writeSlotEntry(vol, 2, 4);
      await t.throwsAsync(chooseSlot(vol, 5), { instanceOf: SanboxError, message: /every one of its 3 slots is taken \(slot 0: node 3, slot 1: node 7, slot 2: node 4\)/ });
      for (const s of [0, 1, 2]) await writeSlotEntry(vol, s, undefined);
      t.notRegex(await debugfs(img, 'slotmap'), /^\s+\d+\s+\d+\s*$/m, 'all free again');
    });
  });
}

test('fuzz: a mutated superblock or slot map makes authorize and chooseSlot return or throw a typed error', async (t) => {
  const rnd = fuzzRandom(t);
  const dir = tempDir(t);
  const img = await volume(dir, 'sparse,inline-data,extended-slotmap');
  const slotMapBlk = await withVol(img, async (vol) => vol.mapBlock(await vol.extents(await vol.systemInode('slot_map')), 0)!, true);
  // Only the superblock and the slot map block are mutated: the copy is made once and those two
  // blocks are rewritten from their pristine bytes each iteration.
  const copy = path.join(dir, 'mutated.img');
  copyImage(img, copy);
  const fd = fs.openSync(copy, 'r+');
  t.teardown(() => fs.closeSync(fd));
  const blocks = [2, slotMapBlk].map((b) => ({ blk: b, pristine: Buffer.from(fs.readFileSync(img).subarray(b * BS, (b + 1) * BS)) }));
  const ITERATIONS = 200;
  const counts = { mountable: 0, refused: 0 };
  for (let i = 0; i < ITERATIONS; i++) {
    const [sb, map] = blocks.map((b) => Buffer.from(b.pristine)) as [Buffer, Buffer];
    for (let f = rnd.int(1, 5); f > 0; f--) {
      // The superblock's slot count, feature words and cluster info, or the slot map's entries.
      if (rnd.next() < 0.5) sb[[0xd0, 0xdc, 0xe0, 0xe4, 0x160, 0x168][rnd.int(6)]! + rnd.int(16)] = rnd.int(256);
      else map[rnd.int(32)] = rnd.int(256);
    }
    fs.writeSync(fd, sb, 0, BS, 2 * BS);
    fs.writeSync(fd, map, 0, BS, slotMapBlk * BS);
    try {
      await withVol(copy, async (vol) => {
        authorizeVolume(vol, CLUSTER);
        await chooseSlot(vol, 1);
      }, true);
      counts.mountable++;
    } catch (err) {
      if (!(err instanceof SanboxError)) return t.fail(`iteration ${i}: ${err instanceof Error ? err.stack : String(err)}`);
      counts.refused++;
    }
  }
  t.log(`${counts.mountable} mountable, ${counts.refused} refused`);
  t.true(counts.refused > 0 && counts.mountable > 0);
});
