// The one long test: with both cores kept busy by spinning processes, 4 nodes at the default
// (local) timing run for 60 s without a false death or a self-fence.

import test from 'ava';
import path from 'node:path';
import os from 'node:os';
import { controlRequest, controlSocketPath } from '../src/node/control.js';
import { readClusterImage } from '../src/heartbeat/cluster-image.js';
import { clusterInit, isEvent, spawnNode } from './helpers/heartbeat-nodes.js';
import { spawnChild, tempDir } from './helpers/tmp.js';

const RUN_MS = 60_000;

test('60 s with both cores loaded by busy processes: no false death', async (t) => {
  t.timeout(RUN_MS + 40_000);
  const img = path.join(tempDir(t), 'c.img');
  await clusterInit(t, [img, '--nodes', '4', '--name', 'load']);
  const info = await readClusterImage(img);
  const nodes = [0, 1, 2, 3].map((n) => spawnNode(t, img, n));
  await Promise.all(nodes.flatMap((a) => nodes.filter((b) => b !== a).map((b) => a.waitLine(isEvent('up', b.nodeId), 15_000, `node ${b.nodeId} up`))));
  // One spinning process per core (at least two), at the same priority as the nodes.
  const spinners = Array.from({ length: Math.max(2, os.availableParallelism()) }, () => spawnChild(t, process.execPath, ['-e', 'for (;;) {}']));
  await new Promise((r) => setTimeout(r, RUN_MS));
  for (const s of spinners) s.kill('SIGKILL');
  for (const n of nodes) {
    t.is(n.child.exitCode, null, `node ${n.nodeId} still running`);
    const bad = n.lines.filter((l) => l.event === 'down' || /SELF-FENCED|down|heartbeat write/.test(l.msg ?? ''));
    if (bad.length > 0) t.log(`node ${n.nodeId}:\n${bad.map((l) => JSON.stringify(l)).join('\n')}`);
    t.deepEqual(n.lines.filter((l) => l.event === 'down' || l.event === 'fenced' || /SELF-FENCED/.test(l.msg ?? '')), [], `node ${n.nodeId}: no death seen`);
  }
  const gaps: number[] = [];
  for (const n of nodes) {
    const r = (await controlRequest(controlSocketPath(info.config.runDir, n.nodeId), { cmd: 'status' })) as { status: { maxGaps: { maxGapMs: number }[]; heartbeat: { writesOk: number; writesFailed: number } } };
    gaps.push(...r.status.maxGaps.map((g) => g.maxGapMs));
    t.is(r.status.heartbeat.writesFailed, 0);
  }
  t.log(`longest gap between seq changes seen by any node: ${Math.max(...gaps)} ms (dead after ${info.timing.deadMs} ms)`);
});
