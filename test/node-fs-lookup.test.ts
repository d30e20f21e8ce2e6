// Lookups against concurrent rmdir by another node (issue 17 item 2, PR locks on the path): two
// `sanbox node` processes on a volume made by the REAL mkfs.ocfs2; node 1 keeps making and
// removing /a/sub while node 2 keeps putting, listing and removing /a/sub/f. Every request either
// succeeds or is refused by name (no such file, exists, not empty, changed while its lock was
// awaited) — never a format error or an internal one — and afterwards fsck.ocfs2 -fn is clean:
// no file was created in a directory another node had removed (fsck checks connectivity and
// link counts), and debugfs.ocfs2 shows /a with exactly what the last requests left.

import path from 'node:path';
import test from 'ava';
import { connectNode } from '../src/node/ctl.js';
import { clusterInit } from './helpers/heartbeat-nodes.js';
import { mkfs, spawnMounted } from './helpers/mounted-volume.js';
import { debugfsNames, fsckOk } from './helpers/ocfs2-oracle.js';
import { ownLockDir, tempDir } from './helpers/tmp.js';

ownLockDir(test);

/** Rounds each node runs. */
const ROUNDS = 60;
/** One fs request: a lock wait or two under a loaded machine. */
const REQUEST_TIMEOUT_MS = 60_000;
/** Refusals a racing request may meet: the only outcomes besides success. */
const EXPECTED_REFUSAL = /no such file or directory|exists|is not empty|changed while its lock was awaited|is not a directory/;

test('node 1 makes and removes /a/sub while node 2 puts, lists and removes /a/sub/f: every request succeeds or is refused by name; fsck -fn clean afterwards', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'look']);
  const vol = await mkfs(dir, 'look', 2);
  const n1 = await spawnMounted(t, img, 1, vol, 0);
  const n2 = await spawnMounted(t, img, 2, vol, 1);
  const c1 = await connectNode(img, 1);
  const c2 = await connectNode(img, 2);
  let open = true;
  t.teardown(() => {
    if (!open) return;
    c1.close();
    c2.close();
  });
  const fsReq = async (c: typeof c1, sub: string, p: string, data?: string): Promise<'ok' | 'refused'> => {
    try {
      await c.request({ cmd: 'fs', args: [sub, vol, p], ...(data === undefined ? {} : { dataBase64: Buffer.from(data).toString('base64') }) }, REQUEST_TIMEOUT_MS);
      return 'ok';
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (!EXPECTED_REFUSAL.test(msg)) throw err;
      return 'refused';
    }
  };
  t.is(await fsReq(c1, 'mkdir', '/a'), 'ok');
  const counts = { node1: { ok: 0, refused: 0 }, node2: { ok: 0, refused: 0 } };
  await Promise.all([
    (async () => {
      for (let i = 0; i < ROUNDS; i++) {
        counts.node1[await fsReq(c1, 'mkdir', '/a/sub')]++;
        counts.node1[await fsReq(c1, 'rm', '/a/sub')]++;
      }
    })(),
    (async () => {
      for (let i = 0; i < ROUNDS; i++) {
        counts.node2[await fsReq(c2, 'put', '/a/sub/f', `round ${i}\n`)]++;
        counts.node2[await fsReq(c2, 'ls', '/a/sub')]++;
        counts.node2[await fsReq(c2, 'rm', '/a/sub/f')]++;
      }
    })(),
  ]);
  t.log(JSON.stringify(counts));
  t.true(counts.node1.ok > 0 && counts.node2.ok > 0, 'both nodes got requests through');
  // What is left in /a, as the nodes see it, must be what debugfs reads from the volume.
  const left = await c2.request({ cmd: 'fs', args: ['ls', vol, '/a'] }, REQUEST_TIMEOUT_MS);
  const names = (left.entries as { name: string }[]).map((e) => e.name).filter((n) => n !== '.' && n !== '..');
  for (const c of [c1, c2]) await c.request({ cmd: 'umount', args: [vol] }, REQUEST_TIMEOUT_MS);
  c1.close();
  c2.close();
  open = false;
  n1.child.kill('SIGTERM');
  n2.child.kill('SIGTERM');
  await Promise.all([n1.exited, n2.exited]);

  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
  t.deepEqual(await debugfsNames(vol, '/a'), names, 'debugfs.ocfs2 lists /a as the nodes did');
});
