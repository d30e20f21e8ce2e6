// Crash points with the survivor as the recoverer (issue 17 item 6, the node path; docs/journal.md
// "Crash tests"): `sanbox node` 1 mounted beside node 0 on a volume made by the REAL mkfs.ocfs2,
// putting files through `ctl fs put`, kills itself at an exact flush (SANBOX_CRASH_AT): after the
// ordered data of a put with clusters reached home (no commit yet), right after that put's commit,
// and right after its checkpoint (the log not yet emptied). Each time node 0 sees it die, fences
// it and recovers its slot; then node 0 reads every acknowledged file whole, the put in flight
// whole or absent as its point says, and after the last round the REAL fsck.ocfs2 -fn is clean.

import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { CRASH_AT_ENV } from '../src/disk/crash-point.js';
import { clusterInit, spawnNode } from './helpers/heartbeat-nodes.js';
import { contentOf, readTree, sha256, treeKey, type Tree } from './helpers/crash-script.js';
import { withDevice } from './helpers/crash-harness.js';
import { mkfs, spawnMounted } from './helpers/mounted-volume.js';
import { fsckOk } from './helpers/ocfs2-oracle.js';
import { ownLockDir, runSanbox, tempDir } from './helpers/tmp.js';

ownLockDir(test);

/** A node's mount, death detection, fencing and recovery under a loaded CI machine. */
const MOUNT_WAIT_MS = 30_000;
const RECOVERY_WAIT_MS = 60_000;

/**
 * Node 1's flushes on the volume (heartbeat writes never flush, so the count is exact): 2 in the
 * mount (slot map entry, DIRTY), 5 for the inline put (3-7), 6 for the put with clusters: data 8,
 * log 9, log start 10, commit 11, checkpoint 12, log emptied 13.
 */
const ROUNDS: { crashAt: string; inFlight: 'absent' | 'whole' }[] = [
  { crashAt: 'after-flush:8@v.img', inFlight: 'absent' },
  { crashAt: 'after-flush:11@v.img', inFlight: 'whole' },
  { crashAt: 'after-flush:12@v.img', inFlight: 'whole' },
];

async function ctl(t: ExecutionContext, img: string, node: number, ...args: string[]) {
  return runSanbox(t, ['ctl', img, String(node), ...args], { timeoutMs: 60_000 });
}

test('a mounted node killed -9 at exact flushes of a put (data home, commit, checkpoint): after the fence the survivor recovers its slot; acknowledged puts whole, the one in flight whole or absent, fsck -fn clean', async (t) => {
  t.timeout(600_000);
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'ncr']);
  const vol = await mkfs(dir, 'ncr', 2);
  const survivor = await spawnMounted(t, img, 0, vol, 0);
  const expected: Tree = await withDevice(vol, readTree, true);

  for (const [r, round] of ROUNDS.entries()) {
    const recoveredBefore = survivor.lines.filter((l) => /^recovered slot 1 of node 1:/.test(l.msg ?? '')).length;
    const linesBefore = survivor.lines.length;
    const node = spawnNode(t, img, 1, ['--mount', vol], { [CRASH_AT_ENV]: round.crashAt });
    await node.waitLine((l) => /^mounted .* in slot 1$/.test(l.msg ?? ''), MOUNT_WAIT_MS, `node 1 (round ${r}) mounted in slot 1`);
    const puts = [
      { path: `/r${r}-inline.txt`, sizeBytes: 500, seed: 100 + r },
      { path: `/r${r}-clusters.bin`, sizeBytes: 30_000, seed: 200 + r },
    ];
    let acked = 0;
    for (const p of puts) {
      const local = path.join(dir, `local-${r}-${acked}`);
      fs.writeFileSync(local, contentOf(p));
      if ((await ctl(t, img, 1, 'fs', 'put', vol, p.path, local)).code !== 0) break;
      acked++;
    }
    const died = await node.exited;
    t.is(died.signal, 'SIGKILL', `round ${r}: node 1 died at ${round.crashAt}: ${node.stderr()}`);
    t.is(acked, 1, `round ${r}: the inline put was acknowledged, the clustered one was not`);
    await survivor.waitLine(() => survivor.lines.filter((l) => /^recovered slot 1 of node 1:/.test(l.msg ?? '')).length > recoveredBefore, RECOVERY_WAIT_MS, `round ${r}: node 0 recovers slot 1`);
    // Nothing of node 1 is recovered before it is fenced: the survivor logs the fence first.
    const thisRound = survivor.lines.slice(linesBefore).map((l) => l.msg ?? '');
    const fencedAt = thisRound.findIndex((m) => /^node 1 fenced/.test(m));
    const recoveredAt = thisRound.findIndex((m) => /^recovered slot 1 of node 1:/.test(m));
    t.true(fencedAt >= 0 && fencedAt < recoveredAt, `round ${r}: "node 1 fenced" (line ${fencedAt}) is logged before "recovered slot 1" (line ${recoveredAt})`);

    // Node 0 reads through its own mount what the recovery left.
    const got = path.join(dir, `got-${r}`);
    const inline = await ctl(t, img, 0, 'fs', 'get', vol, puts[0]!.path, got);
    t.is(inline.code, 0, inline.stderr);
    t.is(sha256(fs.readFileSync(got)), sha256(contentOf(puts[0]!)), `round ${r}: the acknowledged put is whole`);
    expected.set(puts[0]!.path, sha256(contentOf(puts[0]!)));
    const flying = await ctl(t, img, 0, 'fs', 'get', vol, puts[1]!.path, got);
    if (round.inFlight === 'whole') {
      t.is(flying.code, 0, `round ${r}: the committed put is there: ${flying.stderr}`);
      t.is(sha256(fs.readFileSync(got)), sha256(contentOf(puts[1]!)), `round ${r}: the committed put is whole`);
      expected.set(puts[1]!.path, sha256(contentOf(puts[1]!)));
    } else {
      t.is(flying.code, 1, `round ${r}: the uncommitted put is absent`);
      t.regex(flying.stderr, /no such file or directory/);
    }
  }

  t.is((await ctl(t, img, 0, 'umount', vol)).code, 0);
  survivor.child.kill('SIGTERM');
  await survivor.exited;
  t.is(treeKey(await withDevice(vol, readTree, true)), treeKey(expected), 'exactly the acknowledged and committed files, with their content');
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
});
