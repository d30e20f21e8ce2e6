// Recovery of a dead node's slot by exactly one survivor (issue 17 item 3), with separate
// `sanbox node` processes on one volume made by the REAL mkfs.ocfs2, judged by the REAL
// debugfs.ocfs2 (slot map, journal flags, recovery generation) and fsck.ocfs2 -fn.

import crypto from 'node:crypto';
import path from 'node:path';
import test from 'ava';
import { openDevice } from '../src/disk/open.js';
import { JournalWriter, Ocfs2Volume } from '../src/fs/index.js';
import { clusterInit, isEvent, spawnNode, type NodeLogLine, type NodeProc } from './helpers/heartbeat-nodes.js';
import { journalState, mkfs, slotMap } from './helpers/mounted-volume.js';
import { fsckOk } from './helpers/ocfs2-oracle.js';
import { ownLockDir, readFileAt, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const joined = (p: NodeProc, peers: number[]) => Promise.all(peers.map((q) => p.waitLine(isEvent('up', q), 15_000, `node ${q} up`)));
const mountedLine = (l: NodeLogLine) => /^mounted .* in slot \d+$/.test(l.msg ?? '');

/** Index of the first line matching pred in a node's log (-1: none). */
const indexOf = (p: NodeProc, pred: (l: NodeLogLine) => boolean): number => p.lines.findIndex(pred);

test.serial('node 2 killed -9 with a committed transaction in its journal: exactly one survivor recovers its slot after it is fenced, the other skips; slot freed, journal clean, recovery generation + 1, home blocks hold the transaction, fsck -fn clean', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'rcl']);
  const vol = await mkfs(dir, 'rcl', 3);
  const nodes = [0, 1, 2].map((n) => spawnNode(t, img, n, ['--mount', vol]));
  await Promise.all(nodes.map((p) => p.waitLine(mountedLine, 20_000, `node ${p.nodeId} mounted`)));
  await Promise.all(nodes.map((p) => joined(p, [0, 1, 2].filter((q) => q !== p.nodeId))));
  const slot2 = [...(await slotMap(vol))].find(([, node]) => node === 2)![0];
  t.deepEqual(await journalState(vol, slot2), { dirty: true, recoveryGeneration: 0 });

  // A transaction committed in node 2's journal (planted while node 2 is mounted; not checkpointed).
  const dev = await openDevice(vol);
  const bs = 4096;
  const fill = (seed: string): Buffer => Buffer.from(crypto.createHash('sha256').update(seed).digest('hex').repeat(bs / 64), 'latin1');
  let homes: number[] = [];
  try {
    const v = await Ocfs2Volume.open(dev);
    // Free data blocks near the end of the volume: fsck ignores their bytes.
    homes = [1, 2].map((k) => v.blockCount - 16 * k);
    const w = await JournalWriter.open(v, slot2);
    await w.append([{ home: homes[0]!, data: fill('a') }, { home: homes[1]!, data: fill('b') }]);
  } finally {
    await dev.close();
  }
  t.notDeepEqual(readFileAt(vol, homes[0]! * bs, bs), fill('a'), 'not at home before the recovery');

  nodes[2]!.child.kill('SIGKILL');
  await nodes[2]!.exited;
  const survivors = [nodes[0]!, nodes[1]!];
  const recovered = (l: NodeLogLine) => new RegExp(`^recovered slot ${slot2} of node 2: 1 transactions, 2 home blocks, \\d+ ms after the death`).test(l.msg ?? '');
  const skipped = (l: NodeLogLine) => /^skipped recovery of (slot \d+ of )?node 2\b/.test(l.msg ?? '');
  const outcome = (p: NodeProc) => p.waitLine((l) => recovered(l) || skipped(l), 40_000, 'recovery of node 2 or a skip');
  await Promise.all(survivors.map(outcome));
  const recoverers = survivors.filter((p) => p.lines.some(recovered));
  t.is(recoverers.length, 1, `exactly one survivor recovers: ${survivors.map((p) => p.lines.filter((l) => recovered(l) || skipped(l)).map((l) => l.msg).join('; ')).join(' | ')}`);
  const others = survivors.filter((p) => !recoverers.includes(p));
  for (const p of survivors) t.log(`node ${p.nodeId}: ${p.lines.filter((l) => /recover/.test(l.msg ?? '')).map((l) => l.msg).join(' / ')}`);
  t.is(others.length, 1);
  t.true(others[0]!.lines.some(skipped), 'the other survivor logs a skip');
  // Never before "fenced": in each survivor's own log, the recovery starts after its fenced event.
  for (const p of survivors) {
    const fenced = indexOf(p, isEvent('fenced', 2));
    const down = indexOf(p, isEvent('down', 2));
    const started = indexOf(p, (l) => /^(recovering|skipped recovery of) (slot \d+ of )?node 2\b/.test(l.msg ?? ''));
    t.true(down >= 0 && fenced > down, `node ${p.nodeId}: down then fenced`);
    t.true(started > fenced, `node ${p.nodeId}: recovery (line ${started}) after fenced (line ${fenced})`);
  }

  t.deepEqual((await slotMap(vol)).has(slot2), false, 'slot of node 2 freed');
  t.deepEqual(await journalState(vol, slot2), { dirty: false, recoveryGeneration: 1 });
  t.deepEqual(readFileAt(vol, homes[0]! * bs, bs), fill('a'));
  t.deepEqual(readFileAt(vol, homes[1]! * bs, bs), fill('b'));

  for (const p of survivors) p.child.kill('SIGTERM');
  for (const p of survivors) t.is((await p.exited).code, 0, p.stderr());
  t.deepEqual([...(await slotMap(vol))], []);
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
});
