// The README's first command runs `sanbox demo`: it must work and tell the truth.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { readClusterImage } from '../src/heartbeat/cluster-image.js';
import { fsckOk } from './helpers/ocfs2-oracle.js';
import { runSanbox, tempDir } from './helpers/tmp.js';

test('sanbox demo starts node processes, kills one, sees it declared dead and fenced, and passes', async (t) => {
  const dir = tempDir(t);
  const r = await runSanbox(t, ['demo', '--dir', dir, '--nodes', '3', '--json'], { timeoutMs: 60_000 });
  t.is(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  t.is(out.verdict, 'PASS');
  t.is(out.nodes, 3);
  t.is(out.victim, 2);
  t.is(out.downMs.length, 2);
  // Death is declared only after the dead threshold, and within a bounded time of it.
  for (const ms of out.downMs) {
    t.true(ms >= out.timing.deadMs - out.timing.intervalMs, `down after ${ms} ms`);
    t.true(ms <= out.timing.deadMs + 3000, `down after ${ms} ms`);
  }
  t.true(out.fencedMs >= Math.min(...out.downMs));
  t.true(fs.existsSync(path.join(dir, 'cluster.img')));
  // The control sockets' run directory (the killed node's stale socket with it) is not left behind.
  const { runDir } = (await readClusterImage(path.join(dir, 'cluster.img'))).config;
  t.false(fs.existsSync(runDir), `run directory ${runDir} is left`);
  // Every node heartbeat on the shared ocfs2 volume too, and the real fsck.ocfs2 still accepts it.
  t.is(out.volumeHeartbeatSlots, 3);
  const fsck = await fsckOk(path.join(dir, 'volume.img'));
  t.true(fsck.ok, fsck.out);
  // The image records the outcome: the victim is fenced, the survivors left (cleanly: "left", not "fenced").
  const st = JSON.parse((await runSanbox(t, ['cluster', 'status', path.join(dir, 'cluster.img'), '--json'])).stdout);
  t.deepEqual(
    st.slots.map((s: { state: string }) => s.state),
    ['left', 'left', 'fenced'],
  );
});

test('sanbox demo rejects a bad node count with a usage error', async (t) => {
  const r = await runSanbox(t, ['demo', '--dir', tempDir(t), '--nodes', '1']);
  t.is(r.code, 2);
  t.regex(r.stderr, /--nodes must be an integer from 2 to 16/);
});
