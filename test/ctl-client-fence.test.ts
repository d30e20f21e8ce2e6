// Issue 18: a `sanbox ctl C N lvm …` client is a process of its own, not in node N's command group;
// stalled, it outlived N's power fence and kept the host's VG flock (lvm2's local file locking,
// src/volume/vg-lock.ts), so every later command on this host waited for it. Now the client tells
// N who it is before it takes anything (src/node/clients.ts), N records it in its node record, and
// the power fence kills it with N (src/heartbeat/fencer.ts). Separate OS processes on one cluster
// image and one PV: nodes 0, 1, 2 (`sanbox node --fence power`), the client `sanbox ctl C 1 lvm
// lvreduce` stopped at its commit point (SANBOX_PAUSE_AT=vg-commit) holding the VG flock, node 1
// stopped (SIGSTOP) and power-fenced by its peers. Checked: the node record names the client while
// it runs; the fence's steps name its kill; the client is gone (SIGKILL), nobody holds the flock,
// and node 2's lvextend on this host (the same lock directory) succeeds at once; the VG is node 2's
// change only, the real pvck/vgck clean. Without the fix the client survives and node 2's change
// waits for the flock until it fails (VG_LOCK_WAIT_MS).

import test from 'ava';
import path from 'node:path';
import { lockHolders } from '../src/disk/in-use-guard.js';
import { openDevice } from '../src/disk/open.js';
import { readClusterImage, readNodeRecords } from '../src/heartbeat/cluster-image.js';
import type { NodeRecord } from '../src/format/node-record.js';
import { lockDir, vgLockName } from '../src/volume/vg-lock.js';
import { VG_LOCK_WAIT_MS } from '../src/timing.js';
import { isEvent, spawnNode } from './helpers/heartbeat-nodes.js';
import { lvSizeBytes, makeLab, MiB, realToolsClean, vgSeqno } from './helpers/lv-lab.js';
import { sanboxCli } from './helpers/lvm-real.js';
import { pausedCommand } from './helpers/paused-command.js';
import { exited, ownLockDir, waitForAsync } from './helpers/tmp.js';

ownLockDir(test);

/** Bound on the nodes seeing each other, and on a stalled node being declared dead and fenced (the lab's 5 s dead time, with room). */
const UP_MS = 20_000;
const FENCED_MS = 30_000;
/** Bound on the killed client being reaped once its node is fenced. */
const EXIT_MS = 10_000;

async function nodeRecord(image: string, nodeId: number): Promise<NodeRecord | null> {
  const info = await readClusterImage(image);
  const dev = await openDevice(image, { readOnly: true, guard: 'none' });
  try {
    return (await readNodeRecords(dev, info))[nodeId] ?? null;
  } finally {
    await dev.close();
  }
}

test('a ctl lvm client stalled holding the VG flock dies with its node\'s power fence; the flock is free and the next command on this host proceeds', async (t) => {
  const l = await makeLab(t, 1, 24, [['-n', 'lv1', '-L', '8m'], ['-n', 'lv2', '-L', '4m']], 3);
  const nodes = [0, 1, 2].map((n) => spawnNode(t, l.cluster, n, ['--fence', 'power']));
  await Promise.all([1, 2].map((p) => nodes[0]!.waitLine(isEvent('up', p), UP_MS, `node ${p} up`)));
  const seqnoBefore = await vgSeqno(l);

  const stalled = await pausedCommand(t, ['ctl', l.cluster, '1', 'lvm', 'lvreduce', '-y', '-L', '4m', `${l.vg}/lv1`, '--devices', l.pvs.join(',')], 'vg-commit');
  const pid = stalled.child.pid!;
  const flock = path.join(lockDir(), vgLockName(l.vg));
  t.deepEqual(lockHolders(flock), [pid], 'the stalled client holds the VG flock');
  t.deepEqual((await nodeRecord(l.cluster, 1))?.clients?.map((c) => c.pid), [pid], "node 1's record names its client");

  nodes[1]!.child.kill('SIGSTOP');
  const fences = await Promise.all([0, 2].map((n) => nodes[n]!.waitLine((x) => /^node 1 fenced/.test(x.msg ?? ''), FENCED_MS, `node ${n} to fence node 1`)));
  const steps = fences.map((f) => f.msg ?? '');
  t.log(steps.join('\n'));
  t.true(steps.some((s) => s.includes(`client:killed(pid ${pid})`)), `a fence killed the client: ${steps.join(' | ')}`);
  t.false(steps.some((s) => s.includes('client:survived')), 'no client survived a fence');
  t.is((await exited(stalled.child, EXIT_MS)).signal, 'SIGKILL', 'the client was killed');
  t.is((await exited(nodes[1]!.child, EXIT_MS)).signal, 'SIGKILL', 'node 1 was killed');
  t.deepEqual(lockHolders(flock), [], 'nobody holds the VG flock');

  // The next command on this host, with the same lock directory, does not wait for the flock.
  const t0 = Date.now();
  const r = await sanboxCli(t, ['ctl', l.cluster, '2', 'lvm', 'lvextend', '-L', '6m', `${l.vg}/lv2`, '--devices', l.pvs.join(',')]);
  const tookMs = Date.now() - t0;
  t.is(r.code, 0, `node 2's lvextend: ${r.stderr}`);
  t.true(tookMs < VG_LOCK_WAIT_MS, `node 2's lvextend took ${tookMs} ms, below the flock wait of ${VG_LOCK_WAIT_MS} ms`);
  t.log(`node 2's lvextend on this host took ${tookMs} ms`);
  // The node lets go of its client once the client's connection has closed (after the command exited).
  await waitForAsync(async () => (await nodeRecord(l.cluster, 2))?.clients?.length === 0, EXIT_MS, "node 2's record to let go of its client");

  t.is(await vgSeqno(l), seqnoBefore + 1, "one commit: node 2's");
  t.is(await lvSizeBytes(l, 'lv1'), 8 * MiB, "node 1's reduce did not land");
  t.is(await lvSizeBytes(l, 'lv2'), 6 * MiB, "node 2's extend did");
  await realToolsClean(t, l);
});
