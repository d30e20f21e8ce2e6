// Cluster heartbeating and locking over NBD: a cluster image made by `sanbox cluster init`, served by real
// nbdkit processes on 127.0.0.1 (one per node, so a node can be fenced at the target), and two
// separate node processes that open it only by its nbd:// URI, heartbeat in their slots (src/heartbeat)
// and see each other. `sanbox cluster status nbd://…` shows both. Cutting one node's server fences
// it: its heartbeat writes stop landing, it fences itself, and the other node sees it go down.
//
// The node processes run the heartbeat and membership library (test/helpers/nbd-heartbeat-node.ts),
// not `sanbox node`: startNode() still takes the cluster image as a local path (see docs/nbd.md).

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { startNbdkit } from './helpers/nbdkit.js';
import { REPO_ROOT, runSanbox, spawnChild, tempDir, waitFor } from './helpers/tmp.js';

const NODE = path.join(REPO_ROOT, 'dist/test/helpers/nbd-heartbeat-node.js');
/** Local timing: dead after 1.5 s. Generous bounds for a loaded 2-CPU machine. */
const SEE_EACH_OTHER_MS = 15_000;
const SEE_DOWN_MS = 15_000;
/** 30 lock hand-offs; each is bounded by the lock manager's poll (at most 50 ms over NBD, where no inotify reaches). */
const LOCK_ROUNDS_MS = 45_000;
/** Time for both nodes to start, join and see each other before their rounds begin. */
const START_DELAY_MS = 6_000;

interface NodeEvent {
  event: string;
  node: number;
  of?: number;
  reason?: string;
}

function events(child: ChildProcess): NodeEvent[] {
  const list: NodeEvent[] = [];
  let partial = '';
  child.stdout!.on('data', (d: Buffer) => {
    partial += d.toString();
    const lines = partial.split('\n');
    partial = lines.pop()!;
    for (const l of lines) if (l.trim()) list.push(JSON.parse(l) as NodeEvent);
  });
  return list;
}

test('two node processes heartbeat over one NBD export, see each other, and a node cut off at its server is seen going down', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'cluster.img');
  const init = await runSanbox(t, ['cluster', 'init', img, '--nodes', '3', '--name', 'nbdlab']);
  t.is(init.code, 0, init.stderr);
  const serverA = await startNbdkit({ dir });
  t.teardown(() => serverA.stop('SIGKILL'));
  const serverB = await startNbdkit({ dir });
  t.teardown(() => serverB.stop('SIGKILL'));

  const node0 = spawnChild(t, process.execPath, [NODE, serverA.uri('cluster.img'), '0']);
  const node1 = spawnChild(t, process.execPath, [NODE, serverB.uri('cluster.img'), '1']);
  let err1 = '';
  node1.stderr!.on('data', (d: Buffer) => (err1 += d.toString()));
  const ev0 = events(node0);
  const ev1 = events(node1);
  await waitFor(() => ev0.some((e) => e.event === 'up' && e.node === 1) && ev1.some((e) => e.event === 'up' && e.node === 0), SEE_EACH_OTHER_MS, 'both nodes up');
  t.pass('each node saw the other come up through NBD');

  const status = await runSanbox(t, ['cluster', 'status', serverA.uri('cluster.img'), '--json']);
  t.is(status.code, 0, status.stderr);
  const slots = (JSON.parse(status.stdout) as { slots: { node: number; state: string }[] }).slots;
  t.deepEqual(
    slots.map((s) => [s.node, s.state === 'free' ? 'free' : 'in use']),
    [
      [0, 'in use'],
      [1, 'in use'],
      [2, 'free'],
    ],
  );

  // Fence node 1 at the target: its connection is cut and it never reconnects.
  await serverB.stop('SIGKILL');
  await waitFor(() => ev0.some((e) => e.event === 'down' && e.node === 1), SEE_DOWN_MS, 'node 0 to see node 1 down');
  await waitFor(() => ev1.some((e) => e.event === 'self-fence'), SEE_DOWN_MS, 'node 1 to fence itself');
  t.regex(err1, /NBD connection lost|self-fence|fenc/i);
  t.log(`node 1 self-fenced: ${ev1.find((e) => e.event === 'self-fence')?.reason}`);
});

test('two node processes lock over NBD: EX on one resource, a read-increment-write counter loses no update', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'cluster.img');
  const init = await runSanbox(t, ['cluster', 'init', img, '--nodes', '2', '--name', 'nbdlocks']);
  t.is(init.code, 0, init.stderr);
  fs.writeFileSync(path.join(dir, 'counter.img'), Buffer.alloc(4096));
  const serverA = await startNbdkit({ dir });
  t.teardown(() => serverA.stop('SIGKILL'));
  const serverB = await startNbdkit({ dir });
  t.teardown(() => serverB.stop('SIGKILL'));
  const rounds = 15;
  // Both start their rounds at the same moment, after joining and seeing each other.
  const startAt = String(Date.now() + START_DELAY_MS);
  const node0 = spawnChild(t, process.execPath, [NODE, serverA.uri('cluster.img'), '0', serverA.uri('counter.img'), String(rounds), '1', startAt]);
  const node1 = spawnChild(t, process.execPath, [NODE, serverB.uri('cluster.img'), '1', serverB.uri('counter.img'), String(rounds), '0', startAt]);
  const errs = [node0, node1].map((c) => {
    let e = '';
    c.stderr!.on('data', (d: Buffer) => (e += d.toString()));
    return () => e;
  });
  const ev0 = events(node0);
  const ev1 = events(node1);
  const t0 = Date.now();
  await waitFor(
    () => ev0.some((e) => e.event === 'done') && ev1.some((e) => e.event === 'done'),
    LOCK_ROUNDS_MS,
    `both nodes to finish ${rounds} locked increments (stderr: ${errs[0]!()} ${errs[1]!()})`,
  );
  const counter = fs.readFileSync(path.join(dir, 'counter.img')).readBigUInt64LE(0);
  t.is(counter, BigInt(2 * rounds), 'every increment made under the EX lock survived');
  t.log(`${2 * rounds} locked increments by two processes over NBD in ${Date.now() - t0} ms`);
});

test('sanbox lock over nbd://: two nodes run a read-increment-write command under EX, their critical sections never overlap', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'cluster.img');
  const work = tempDir(t);
  // `sanbox lock` over nbd:// keeps its slot lock files in the image's run directory: a temp one.
  const init = await runSanbox(t, ['cluster', 'init', img, '--nodes', '2', '--name', 'nbdflock', '--run-dir', path.join(work, 'run')]);
  t.is(init.code, 0, init.stderr);
  const counter = path.join(work, 'counter');
  const log = path.join(work, 'log');
  fs.writeFileSync(counter, '0\n');
  const serverA = await startNbdkit({ dir });
  t.teardown(() => serverA.stop('SIGKILL'));
  const serverB = await startNbdkit({ dir });
  t.teardown(() => serverB.stop('SIGKILL'));
  // The critical section: log its start and end (CLOCK_REALTIME in ns), and increment a counter
  // with a pause between read and write, so two holders at once would lose an increment.
  const critical = `echo "start $(date +%s%N)" >> ${log}; v=$(cat ${counter}); sleep 0.1; echo $((v+1)) > ${counter}; echo "end $(date +%s%N)" >> ${log}`;
  const iterations = 3;
  const runNode = async (uri: string, node: number): Promise<void> => {
    for (let i = 0; i < iterations; i++) {
      const r = await runSanbox(t, ['lock', '--cluster', uri, '--node', String(node), '--timeout', '30s', 'counter', '--', 'sh', '-c', critical], { timeoutMs: 60_000 });
      t.is(r.code, 0, `node ${node} round ${i}: ${r.stderr}`);
    }
  };
  await Promise.all([runNode(serverA.uri('cluster.img'), 0), runNode(serverB.uri('cluster.img'), 1)]);
  t.is(fs.readFileSync(counter, 'utf8').trim(), String(2 * iterations), 'no increment was lost');
  const events = fs
    .readFileSync(log, 'utf8')
    .trim()
    .split('\n')
    .map((l) => l.split(' ') as ['start' | 'end', string]);
  t.is(events.length, 4 * iterations);
  // Held one at a time: the log alternates start, end, start, end… in time order.
  const sorted = [...events].sort((a, b) => (BigInt(a[1]) < BigInt(b[1]) ? -1 : 1));
  sorted.forEach((e, i) => t.is(e[0], i % 2 === 0 ? 'start' : 'end', `event ${i}`));
});
