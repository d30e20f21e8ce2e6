// sanbox ls / cat on a sanbox-made volume (the kernel-written case is test/kernel-judge.test.ts):
// the root directory as debugfs.ocfs2 lists it, one-line errors for a missing path, a file
// where a directory is needed, a directory given to cat, and a volume whose features the readers
// cannot follow (refused by name, nothing read past the superblock).

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { debugfs, hasTool } from './helpers/ocfs2-oracle.js';
import { runSanbox, tempDir } from './helpers/tmp.js';

async function volume(t: ExecutionContext): Promise<string> {
  const img = path.join(tempDir(t), 'vol.img');
  t.is((await runSanbox(t, ['disk', 'create', img, '--size', '64M'])).code, 0);
  const mk = await runSanbox(t, ['mkfs', img, '--slots', '2', '--block-size', '4K', '--cluster-size', '4K']);
  t.is(mk.code, 0, mk.stderr);
  return img;
}

test('ls / lists what debugfs.ocfs2 ls -l lists', async (t) => {
  t.true(hasTool('debugfs.ocfs2'), 'debugfs.ocfs2 is needed (ocfs2-tools)');
  const img = await volume(t);
  const r = await runSanbox(t, ['ls', img, '--json']);
  t.is(r.code, 0, r.stderr);
  const ours = (JSON.parse(r.stdout) as { inode: number; name: string; modeString: string; links: number; sizeBytes: string }[]).map((e) => `${e.inode} ${e.modeString} ${e.links} ${e.sizeBytes} ${e.name}`);
  const theirs = (await debugfs(img, 'ls -l /')).split('\n').map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 9 && /^\d+$/.test(f[0]!)).map((f) => `${f[0]} ${f[1]} ${f[2]} ${f[5]} ${f.slice(8).join(' ')}`);
  t.deepEqual(ours, theirs);
  t.true(ours.some((l) => l.endsWith(' lost+found')));
  const human = await runSanbox(t, ['ls', img, '/']);
  t.regex(human.stdout, /^\s+Inode\s+Mode\s+Links\s+UID\s+GID\s+Size\s+Modified\s+Name$/m);
});

test('ls and cat: one-line errors for a missing path, a non-directory, a directory to cat', async (t) => {
  const img = await volume(t);
  const missing = await runSanbox(t, ['cat', img, '/nope/file']);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /vol\.img: \/nope: no such file or directory/);
  t.is(missing.stderr.trim().split('\n').length, 1);
  const dirCat = await runSanbox(t, ['cat', img, '/lost+found']);
  t.is(dirCat.code, 1);
  t.regex(dirCat.stderr, /is a directory/);
  const usage = await runSanbox(t, ['cat', img]);
  t.is(usage.code, 2);
});

test('a volume with a feature the readers cannot follow is refused by name', async (t) => {
  const img = await volume(t);
  // s_feature_incompat is at 0xE0 of the superblock inode (block 2 at 4K): add tunefs-in-progress
  // (0x20) and an unknown bit (0x80000000).
  const fd = fs.openSync(img, 'r+');
  const b = Buffer.alloc(4);
  fs.readSync(fd, b, 0, 4, 2 * 4096 + 0xe0);
  b.writeUInt32LE((b.readUInt32LE(0) | 0x20 | 0x8000_0000) >>> 0, 0);
  fs.writeSync(fd, b, 0, 4, 2 * 4096 + 0xe0);
  fs.closeSync(fd);
  for (const args of [['ls', img], ['cat', img, '/x'], ['recover', img]]) {
    const r = await runSanbox(t, args);
    t.is(r.code, 1, args.join(' '));
    t.regex(r.stderr, /feature\(s\) tunefs-in-progress, unknown\(0x80000000\) that sanbox cannot read \(at (byte )?offset 8416\)/, args.join(' '));
  }
});
