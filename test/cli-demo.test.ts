// The README's first command runs `sanbox demo`: it must work and tell the truth. The demo's own
// claims (files intact, a transaction replayed, the slot freed) are judged again here by the REAL
// debugfs.ocfs2 (dump of every file, sha256 against what the demo recorded; slot map) and
// fsck.ocfs2 -fn.

import test from 'ava';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { readClusterImage } from '../src/heartbeat/cluster-image.js';
import type { DemoResult } from '../src/node/demo.js';
import { debugfs, fsckOk, runTool } from './helpers/ocfs2-oracle.js';
import { slotMap } from './helpers/mounted-volume.js';
import { runSanbox, tempDir } from './helpers/tmp.js';

/** Death, fencing and recovery come after the dead threshold, and within this much of it. */
const AFTER_DEAD_MS_MAX = 3000;

/** The file at `volPath` as the real debugfs.ocfs2 dumps it (undefined when it is not there). */
async function dumpSha256(vol: string, volPath: string, dir: string): Promise<string | undefined> {
  const out = path.join(dir, `dump-${volPath.replaceAll('/', '_')}`);
  await runTool('debugfs.ocfs2', ['-R', `dump ${volPath} ${out}`, vol], { timeoutMs: 60_000 });
  if (!fs.existsSync(out)) return undefined;
  return createHash('sha256').update(fs.readFileSync(out)).digest('hex');
}

test.serial('sanbox demo: nodes mount the volume and write files, one is killed mid-put, exactly one survivor replays its journal after the fence, every acknowledged file is intact (judged by debugfs.ocfs2 and fsck.ocfs2)', async (t) => {
  const dir = tempDir(t);
  const r = await runSanbox(t, ['demo', '--dir', dir, '--nodes', '3', '--json'], { timeoutMs: 60_000 });
  t.is(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as DemoResult;
  t.deepEqual(out.failures, []);
  t.is(out.verdict, 'PASS');
  t.is(out.nodes, 3);
  t.is(out.victim, 2);
  t.is(out.downMs.length, 2);
  // Every node mounted the volume in a slot of its own.
  t.deepEqual(out.mounts.map((m) => m.node).sort(), [0, 1, 2]);
  t.is(new Set(out.mounts.map((m) => m.slot)).size, 3);
  t.is(out.victimSlot, out.mounts.find((m) => m.node === 2)!.slot);
  // Death is declared only after the dead threshold, and within a bounded time of it.
  for (const ms of out.downMs) {
    t.true(ms >= out.timing.deadMs - out.timing.intervalMs, `down after ${ms} ms`);
    t.true(ms <= out.timing.deadMs + AFTER_DEAD_MS_MAX, `down after ${ms} ms`);
  }
  t.true(out.fencedMs >= Math.min(...out.downMs));

  // Exactly one survivor recovered the slot, after the fence, in the order of the flow; the other skipped it.
  const rec = out.recovery!;
  t.truthy(rec);
  t.true([0, 1].includes(rec.by));
  t.deepEqual(rec.skippedBy, [1 - rec.by]);
  t.is(rec.slot, out.victimSlot);
  const a = rec.afterKillMs;
  const order = [a.fenced!, a.superLock, a.replayed, a.clean, a.slotFreed];
  t.deepEqual(order, [...order].sort((x, y) => x - y), `recovery steps out of order: ${JSON.stringify(a)}`);
  t.true(a.fenced! >= out.timing.deadMs - out.timing.intervalMs, `fenced ${a.fenced} ms after the kill`);
  t.true(a.slotFreed <= out.timing.deadMs + AFTER_DEAD_MS_MAX, `slot freed ${a.slotFreed} ms after the kill`);
  // The transaction the demo saw committed before the kill was replayed, with the held block among its homes.
  const tx = rec.replayed.find((x) => x.sequence === out.inFlight.committedSequence);
  t.truthy(tx, `transaction ${out.inFlight.committedSequence} not replayed: ${JSON.stringify(rec.replayed)}`);
  t.true(tx!.homeBlocks.includes(out.inFlight.heldBlock));

  // Every acknowledged file is there with the content the node acknowledged, as debugfs.ocfs2
  // reads it; the unacknowledged one is whole or absent — and the demo says what debugfs sees.
  const acked = out.files.filter((f) => f.acknowledged);
  t.is(acked.length, 12);
  const inFlight = out.files.filter((f) => !f.acknowledged);
  t.deepEqual(inFlight.map((f) => f.path), [out.inFlight.path]);
  const vol = path.join(dir, 'volume.img');
  for (const f of out.files) {
    const sha = await dumpSha256(vol, f.path, dir);
    if (f.acknowledged) {
      t.is(f.afterRecovery, 'intact', f.path);
      t.is(sha, f.sha256, `debugfs.ocfs2 dump ${f.path}`);
    } else {
      t.is(f.afterRecovery, sha === undefined ? 'absent' : 'intact', f.path);
      if (sha !== undefined) t.is(sha, f.sha256, `debugfs.ocfs2 dump ${f.path} (unacknowledged: whole or absent)`);
    }
  }
  // Every slot is free after the survivors unmounted, the real fsck.ocfs2 accepts the volume, and
  // every node heartbeat on it.
  t.true(out.victimSlotFreed);
  t.true(out.allSlotsFreeAtEnd);
  t.is((await slotMap(vol)).size, 0, await debugfs(vol, 'slotmap'));
  t.is(out.volumeHeartbeatSlots, 3);
  const fsck = await fsckOk(vol);
  t.true(fsck.ok, fsck.out);

  t.true(fs.existsSync(path.join(dir, 'cluster.img')));
  // The control sockets' run directory (the killed node's stale socket with it) is not left behind.
  const { runDir } = (await readClusterImage(path.join(dir, 'cluster.img'))).config;
  t.false(fs.existsSync(runDir), `run directory ${runDir} is left`);
  // The image records the outcome: the victim is fenced, the survivors left (cleanly: "left", not "fenced").
  const st = JSON.parse((await runSanbox(t, ['cluster', 'status', path.join(dir, 'cluster.img'), '--json'])).stdout);
  t.deepEqual(
    st.slots.map((s: { state: string }) => s.state),
    ['left', 'left', 'fenced'],
  );
});

test.serial('sanbox demo prints the recovery (transactions replayed, ms after the kill), the files read back, and the verdict', async (t) => {
  const r = await runSanbox(t, ['demo', '--dir', tempDir(t), '--nodes', '2'], { timeoutMs: 60_000 });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^   kill -9 node 1 \(pid \d+\) with that put in flight\.$/m);
  t.regex(r.stdout, /^   Node 0 recovered slot \d \d+ ms after the kill:$/m);
  t.regex(r.stdout, /^     transaction \d+ replayed: home blocks \d+(, \d+)+$/m);
  t.regex(r.stdout, /^     after the kill: fenced \d+ ms, superblock lock \d+ ms, journal replayed \d+ ms, marked clean \d+ ms, slot \d free \d+ ms$/m);
  t.regex(r.stdout, /^6\. Read back through node 0 after the recovery: 8 of 8 acknowledged files intact \(sha256 equal\); the unacknowledged \/node1\/inflight\.bin is (whole|absent)\.$/m);
  t.regex(r.stdout, /^Verdict: PASS — 2 nodes up in \d+ ms; node 1 killed mid-put, .* 8\/8 acknowledged files intact\.$/m);
});

test('sanbox demo rejects a bad node count with a usage error', async (t) => {
  const r = await runSanbox(t, ['demo', '--dir', tempDir(t), '--nodes', '1']);
  t.is(r.code, 2);
  t.regex(r.stderr, /--nodes must be an integer from 2 to 16/);
});
