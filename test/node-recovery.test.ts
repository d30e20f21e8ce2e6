// Recovery of a dead node's slot by exactly one survivor (issue 17 item 3), with separate
// `sanbox node` processes on one volume made by the REAL mkfs.ocfs2, judged by the REAL
// debugfs.ocfs2 (slot map, journal flags, recovery generation) and fsck.ocfs2 -fn.

import crypto from 'node:crypto';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { openDevice } from '../src/disk/open.js';
import { JournalWriter, Ocfs2Volume } from '../src/fs/index.js';
import { clusterInit, isEvent, spawnNode, type NodeLogLine, type NodeProc } from './helpers/heartbeat-nodes.js';
import { journalState, mkfs, slotMap } from './helpers/mounted-volume.js';
import { fsckOk } from './helpers/ocfs2-oracle.js';
import type { NodeStatus } from '../src/node/node.js';
import { ownLockDir, readFileAt, runSanbox, tempDir, waitFor } from './helpers/tmp.js';

ownLockDir(test);

const joined = (p: NodeProc, peers: number[]) => Promise.all(peers.map((q) => p.waitLine(isEvent('up', q), 15_000, `node ${q} up`)));
const mountedLine = (l: NodeLogLine) => /^mounted .* in slot \d+$/.test(l.msg ?? '');

const BS = 4096;

/**
 * Commits one transaction of two blocks into `slot`'s journal, from this process, while the
 * slot's node is mounted (as if it had written it and not checkpointed): free data blocks near
 * the end of the volume (fsck ignores their bytes) get the contents fill('a') and fill('b').
 */
async function plantTransaction(vol: string, slot: number, seed: string): Promise<{ homes: number[]; fill: (s: string) => Buffer }> {
  const fill = (s: string): Buffer => Buffer.from(crypto.createHash('sha256').update(seed + s).digest('hex').repeat(BS / 64), 'latin1');
  const dev = await openDevice(vol);
  try {
    const v = await Ocfs2Volume.open(dev);
    if (v.blockSizeBytes !== BS) throw new Error(`block size ${v.blockSizeBytes}`);
    const homes = [1, 2].map((k) => v.blockCount - 16 * k);
    const w = await JournalWriter.open(v, slot);
    await w.append([{ home: homes[0]!, data: fill('a') }, { home: homes[1]!, data: fill('b') }]);
    return { homes, fill };
  } finally {
    await dev.close();
  }
}

/**
 * A cluster of `nodeCount` node processes on a 3-slot real-mkfs.ocfs2 volume; the nodes in
 * `mountIds` mount it at start. Resolves once every node sees every other up. `slots`: node → slot.
 */
async function startCluster(t: ExecutionContext, nodeCount: number, mountIds: number[]): Promise<{ img: string; vol: string; procs: NodeProc[]; slots: Map<number, number> }> {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', String(nodeCount), '--name', 'rcl']);
  const vol = await mkfs(dir, 'rcl', 3);
  const ids = [...Array(nodeCount).keys()];
  const procs = ids.map((n) => spawnNode(t, img, n, mountIds.includes(n) ? ['--mount', vol] : []));
  await Promise.all(mountIds.map((n) => procs[n]!.waitLine(mountedLine, 20_000, `node ${n} mounted`)));
  await Promise.all(procs.map((p) => joined(p, ids.filter((q) => q !== p.nodeId))));
  const slots = new Map([...(await slotMap(vol))].map(([slot, node]) => [node, slot]));
  return { img, vol, procs, slots };
}

/** Stalls node n's writes to the volume's block `home` (a fault rule set through `ctl`). */
async function stallWrites(t: ExecutionContext, img: string, n: number, home: number): Promise<void> {
  const r = await runSanbox(t, ['ctl', img, String(n), 'fault', 'set', '--action', 'stall', '--op', 'write', '--device', 'v.img', '--offset', String(home * BS), '--length', String(BS), '--id', 'mid-replay'], { timeoutMs: 30_000 });
  t.is(r.code, 0, r.stderr);
}

/** Index of the first line matching pred in a node's log (-1: none). */
const indexOf = (p: NodeProc, pred: (l: NodeLogLine) => boolean): number => p.lines.findIndex(pred);

test.serial('node 2 killed -9 with a committed transaction in its journal: exactly one survivor recovers its slot after it is fenced, the other skips; slot freed, journal clean, recovery generation + 1, home blocks hold the transaction, fsck -fn clean', async (t) => {
  const { vol, procs: nodes, slots } = await startCluster(t, 3, [0, 1, 2]);
  const slot2 = slots.get(2)!;
  t.deepEqual(await journalState(vol, slot2), { dirty: true, recoveryGeneration: 0 });

  const { homes, fill } = await plantTransaction(vol, slot2, 'a');
  t.notDeepEqual(readFileAt(vol, homes[0]! * BS, BS), fill('a'), 'not at home before the recovery');

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
  t.deepEqual(readFileAt(vol, homes[0]! * BS, BS), fill('a'));
  t.deepEqual(readFileAt(vol, homes[1]! * BS, BS), fill('b'));

  for (const p of survivors) p.child.kill('SIGTERM');
  for (const p of survivors) t.is((await p.exited).code, 0, p.stderr());
  t.deepEqual([...(await slotMap(vol))], []);
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
});

test.serial('the recoverer is killed -9 mid-replay (a write stall, then SIGKILL): a node mounting later recovers both the recoverer\'s slot and the half-replayed one, exactly once each, and fsck -fn is clean', async (t) => {
  // Five nodes: three that never mount keep quorum after two deaths.
  const { img, vol, procs, slots } = await startCluster(t, 5, [1, 3]);
  const [n1, n3] = [procs[1]!, procs[3]!];
  const idle = [procs[0]!, procs[2]!, procs[4]!];
  const slot1 = slots.get(1)!;
  const slot3 = slots.get(3)!;
  const { homes, fill } = await plantTransaction(vol, slot3, 'k');

  // Node 1 (the only mounted survivor) will stall on the second home block of node 3's replay.
  await stallWrites(t, img, 1, homes[1]!);
  n3.child.kill('SIGKILL');
  await n3.exited;
  await n1.waitLine((l) => new RegExp(`^recovering slot ${slot3} of node 3\\b`).test(l.msg ?? ''), 30_000, 'node 1 starts recovering node 3');
  await waitFor(() => readFileAt(vol, homes[0]! * BS, BS).equals(fill('a')), 15_000, 'the first home block replayed');
  t.notDeepEqual(readFileAt(vol, homes[1]! * BS, BS), fill('b'), 'the second is not: the recoverer is stalled mid-replay');
  t.deepEqual(await journalState(vol, slot3), { dirty: true, recoveryGeneration: 0 });
  n1.child.kill('SIGKILL');
  await n1.exited;
  t.false(n1.lines.some((l) => /^recovered /.test(l.msg ?? '')));

  // Node 2 mounts: it waits for the superblock lock the dead recoverer held until node 1 is fenced,
  // then recovers both dead slots (ocfs2's recovery of dead nodes found at mount).
  const n2 = idle[1]!;
  const m = await runSanbox(t, ['ctl', img, '2', 'mount', vol], { timeoutMs: 60_000 });
  t.is(m.code, 0, m.stderr);
  const recovered = (node: number, slot: number, tx: number) => (l: NodeLogLine) => new RegExp(`^recovered slot ${slot} of node ${node}: ${tx} transactions`).test(l.msg ?? '');
  await n2.waitLine(recovered(3, slot3, 1), 30_000, 'node 2 recovers node 3\'s slot');
  await n2.waitLine(recovered(1, slot1, 0), 30_000, 'node 2 recovers node 1\'s slot');
  t.true(indexOf(n2, isEvent('fenced', 1)) < indexOf(n2, recovered(3, slot3, 1)), 'after node 1 was fenced');
  t.is(n2.lines.filter((l) => /^recovered slot/.test(l.msg ?? '')).length, 2, 'each slot once');
  t.deepEqual(readFileAt(vol, homes[0]! * BS, BS), fill('a'));
  t.deepEqual(readFileAt(vol, homes[1]! * BS, BS), fill('b'));
  t.deepEqual(await journalState(vol, slot3), { dirty: false, recoveryGeneration: 1 }, 'the interrupted recovery completed once: generation + 1, not + 2');
  t.deepEqual(await journalState(vol, slot1), { dirty: false, recoveryGeneration: 1 }, 'the dead recoverer\'s own (empty, DIRTY) journal is recovered too');
  t.deepEqual([...(await slotMap(vol))].filter(([, node]) => node !== 2), [], 'only node 2 holds a slot');

  for (const p of idle) p.child.kill('SIGTERM');
  for (const p of idle) t.is((await p.exited).code, 0, p.stderr());
  t.deepEqual([...(await slotMap(vol))], []);
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
});

test.serial('two mounted survivors, the one that wins the superblock lock is killed -9 mid-replay: the other completes the recovery exactly once and then recovers the dead recoverer\'s slot', async (t) => {
  const { img, vol, procs, slots } = await startCluster(t, 5, [1, 2, 3]);
  const mounted = [procs[1]!, procs[2]!, procs[3]!];
  const idle = [procs[0]!, procs[4]!];
  const slot3 = slots.get(3)!;
  const { homes, fill } = await plantTransaction(vol, slot3, 'w');

  // Both survivors stall on the second home block; only the one holding the superblock lock gets there.
  for (const n of [1, 2]) await stallWrites(t, img, n, homes[1]!);
  mounted[2]!.child.kill('SIGKILL');
  await mounted[2]!.exited;
  await waitFor(() => readFileAt(vol, homes[0]! * BS, BS).equals(fill('a')), 30_000, 'the first home block replayed');
  const holdsSuper = async (n: number): Promise<boolean> => {
    const r = await runSanbox(t, ['ctl', img, String(n), 'status', '--json'], { timeoutMs: 30_000 });
    t.is(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as NodeStatus).locks.some((l) => l.resource.includes(':S000000') && l.state === 'granted');
  };
  const holders: number[] = [];
  for (const n of [1, 2]) if (await holdsSuper(n)) holders.push(n);
  t.is(holders.length, 1, `exactly one survivor holds the superblock lock: ${JSON.stringify(holders)}`);
  const first = mounted.find((p) => p.nodeId === holders[0])!;
  const second = mounted.find((p) => p.nodeId !== holders[0] && p.nodeId !== 3)!;
  const cleared = await runSanbox(t, ['ctl', img, String(second.nodeId), 'fault', 'clear', 'mid-replay'], { timeoutMs: 30_000 });
  t.is(cleared.code, 0, cleared.stderr);
  t.notDeepEqual(readFileAt(vol, homes[1]! * BS, BS), fill('b'), 'stalled mid-replay');
  first.child.kill('SIGKILL');
  await first.exited;

  const recovered = (node: number, tx: number) => (l: NodeLogLine) => new RegExp(`^recovered slot ${slots.get(node)!} of node ${node}: ${tx} transactions, ${tx * 2} home blocks, \\d+ ms after the death`).test(l.msg ?? '');
  await second.waitLine(recovered(3, 1), 40_000, 'the second survivor completes node 3\'s recovery');
  await second.waitLine(recovered(first.nodeId, 0), 40_000, 'and recovers the dead recoverer\'s slot');
  t.true(indexOf(second, isEvent('fenced', first.nodeId)) < indexOf(second, recovered(3, 1)), 'only after the recoverer was fenced');
  t.is(second.lines.filter((l) => /^recovered slot/.test(l.msg ?? '')).length, 2, 'each slot once');
  t.deepEqual(readFileAt(vol, homes[1]! * BS, BS), fill('b'));
  t.deepEqual(await journalState(vol, slot3), { dirty: false, recoveryGeneration: 1 }, 'completed once: + 1, not + 2');
  t.deepEqual(await journalState(vol, slots.get(first.nodeId)!), { dirty: false, recoveryGeneration: 1 });
  t.deepEqual([...(await slotMap(vol))], [[slots.get(second.nodeId)!, second.nodeId]]);

  for (const p of [second, ...idle]) p.child.kill('SIGTERM');
  for (const p of [second, ...idle]) t.is((await p.exited).code, 0, p.stderr());
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);
});
