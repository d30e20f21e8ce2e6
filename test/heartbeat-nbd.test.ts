// `sanbox node` over nbd://: two node processes name the cluster image only by its URI (one real
// nbdkit per node), see each other, and a kill -9 is declared dead and power-fenced (same
// machine: pid + start time from the node record read over NBD). There is no disk fence over NBD
// (the target would cut the connection); that is documented in docs/heartbeat.md.

import test from 'ava';
import path from 'node:path';
import { startNbdkit } from './helpers/nbdkit.js';
import { clusterInit, isEvent, spawnNode } from './helpers/heartbeat-nodes.js';
import { runSanbox, tempDir } from './helpers/tmp.js';

test('sanbox node over nbd://: nodes see each other; kill -9 is declared dead and power-fenced', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'cluster.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'nbdnodes']);
  const servers = await Promise.all([startNbdkit({ dir }), startNbdkit({ dir })]);
  for (const s of servers) t.teardown(() => s.stop('SIGKILL'));
  const nodes = [0, 1].map((n) => spawnNode(t, servers[n]!.uri('cluster.img'), n));
  await Promise.all([nodes[0]!.waitLine(isEvent('up', 1), 15_000, 'node 1 up'), nodes[1]!.waitLine(isEvent('up', 0), 15_000, 'node 0 up')]);
  const sr = await runSanbox(t, ['cluster', 'status', servers[0]!.uri('cluster.img'), '--json']);
  t.is(sr.code, 0, sr.stderr);
  const st = JSON.parse(sr.stdout) as { slots: { state: string; pid: number | null }[] };
  t.deepEqual(st.slots.map((s) => s.state), ['up', 'up', 'free']);
  t.deepEqual(st.slots.slice(0, 2).map((s) => s.pid), [nodes[0]!.child.pid, nodes[1]!.child.pid]);
  nodes[1]!.child.kill('SIGKILL');
  await nodes[0]!.waitLine(isEvent('down', 1), 8000, 'node 1 down');
  await nodes[0]!.waitLine(isEvent('fenced', 1), 5000, 'node 1 fenced');
  const msg = nodes[0]!.lines.find((l) => /node 1 fenced/.test(l.msg ?? ''))!.msg!;
  t.regex(msg, /power:gone\(pid \d+\)/);
  // One vocabulary over NBD too: the fence is recorded in the image's reservations (through the
  // export), so `cluster status` says fenced where the survivor's log does.
  t.regex(msg, /recorded/);
  const after = JSON.parse((await runSanbox(t, ['cluster', 'status', servers[0]!.uri('cluster.img'), '--json'])).stdout) as { slots: { state: string }[] };
  t.deepEqual(after.slots.map((s) => s.state), ['up', 'fenced', 'free']);
  nodes[0]!.child.kill('SIGTERM');
  t.is((await nodes[0]!.exited).code, 0);
});
