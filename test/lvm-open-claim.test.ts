// Issue 18 item 3 ("no write ever lands through a stale layout") for openers without the LV lock
// on another host: a node that has VG/LV open plainly (a provider open, a node's fixed
// `--volume VG/LV`) holds the LV's open claim in the cluster's lockspace (src/volume/open-claim.ts),
// and a `--cluster` layout change from another host refuses naming that node, nothing written.
// "Another host" is simulated honestly for what is host-local: the opener runs with its own
// SANBOX_LOCK_DIR, so the host flock the changer checks (vg-lock.ts) is not the opener's and
// cannot see it — only the cluster image can. Separate OS processes, bounded waits, every child
// killed at teardown. Checked:
//   - an io node (node 1) with VG/lv1 open plainly: lvreduce, lvremove, lvextend and pvmove as
//     node 2 (joined for the command) refuse in one line naming node 1; the seqno is unchanged;
//     `cluster status` lists node 1's open claim (mode open); the real pvck and vgck are clean;
//     once node 1 closes it, the claim is gone and lvreduce goes through;
//   - `sanbox node --volume VG/lv1` (node 1, heartbeating on the ocfs2 volume on the LV) beside
//     running nodes 0 and 2: lvextend and lvreduce through running node 2 (its control channel:
//     the holders are asked of node 2's lockspace) refuse naming node 1, and so does lvextend
//     through node 1 itself (`ctl C 1 lvm`, from a lock directory not node 1's); node 1 killed with
//     SIGKILL: still refused until nodes 0 and 2 have fenced it (a stalled node could resume and
//     write through the layout it read), then lvextend goes through; pvck and vgck clean.

import test, { type ExecutionContext } from 'ava';
import { LOCK_DIR_ENV } from '../src/volume/vg-lock.js';
import { makeLab, realToolsClean, vgSeqno as seqno, WRITER_READY_MS, type Lab } from './helpers/lv-lab.js';
import { sanboxCli } from './helpers/lvm-real.js';
import { isEvent, spawnNode } from './helpers/heartbeat-nodes.js';
import { answered, joinedWithOpen, spawnIoNode } from './helpers/io-node.js';
import { ownLockDir, tempDir } from './helpers/tmp.js';

ownLockDir(test);

/** Heartbeat intervals (100 ms) to death in the fence test: 15 s, room for a command between the kill and the fence. */
const DEAD_THRESHOLD = 150;
/** Bound on a killed node being declared dead and fenced (15 s dead time, with room on a loaded machine). */
const FENCED_MS = 45_000;

/** The one-line refusal naming `who` for `lv`, as the CLI prints it. */
function refusedFor(l: Lab, lv: string, who: string): RegExp {
  return new RegExp(`^sanbox: ${l.vg}/${lv}: in use by ${who} without the logical volume's cluster lock, which a layout change cannot lock out; not changed[^\\n]*\\n$`);
}

/** The open claims `cluster status --json` lists (activeLvs of mode open): [node, lock]. */
async function openClaims(t: ExecutionContext, l: Lab): Promise<[number, string][]> {
  const r = await sanboxCli(t, ['cluster', 'status', l.cluster, '--json']);
  t.is(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { activeLvs: { node: number; mode: string; lock: string }[] };
  return s.activeLvs.filter((a) => a.mode === 'open').map((a) => [a.node, a.lock]);
}

/** `args` as node `node` of the lab's cluster (joined for the command, or through node `node` if it runs). */
function asNode(t: ExecutionContext, l: Lab, node: number, args: string[]): ReturnType<typeof sanboxCli> {
  return sanboxCli(t, [...args, '--cluster', l.cluster, '--node', String(node), '--devices', l.pvs.join(',')]);
}

test('a node on another host (its own lock directory) with VG/LV open without the LV lock makes every --cluster layout change refuse naming it, nothing changed; once it closes the change goes through', async (t) => {
  const l = await makeLab(t, 2, 24, [['-n', 'lv1', '-L', '8m'], ['-n', 'lv2', '-L', '4m']]);
  const n = spawnIoNode(t, l.cluster, 1, l.pvs, { env: { [LOCK_DIR_ENV]: tempDir(t) } });
  await joinedWithOpen(n, 'v', `${l.vg}/lv1`, WRITER_READY_MS);
  const before = await seqno(l);
  for (const change of [
    ['lvreduce', `${l.vg}/lv1`, '-L', '4m', '-y'],
    ['lvremove', `${l.vg}/lv1`, '-y'],
    ['lvextend', `${l.vg}/lv1`, '-L', '+1m'],
    ['pvmove', l.pvs[0]!, l.pvs[1]!],
  ]) {
    const r = await asNode(t, l, 2, change);
    t.is(r.code, 1, `${change[0]}: ${r.stdout}`);
    t.regex(r.stderr, refusedFor(l, 'lv1', 'node 1'), change[0]!);
    // pvmove records the move (a VG tag, resumable) before its first chunk; no extent moved.
    if (change[0] === 'pvmove') t.notRegex(r.stdout, /Moved:/);
    else t.is(await seqno(l), before, `${change[0]}: nothing committed`);
  }
  t.is((await asNode(t, l, 2, ['pvmove', '--abort'])).code, 0);
  const claims = await openClaims(t, l);
  t.is(claims.length, 1, JSON.stringify(claims));
  t.is(claims[0]![0], 1, 'cluster status shows node 1 with the LV open without its lock');
  t.regex(claims[0]![1], new RegExp(`^lvm_${l.vg}:[\\w!#-]{38}:plain$`));
  // lv2 is nobody's: its change goes through beside node 1's open lv1.
  const other = await asNode(t, l, 2, ['lvextend', `${l.vg}/lv2`, '-L', '+1m']);
  t.is(other.code, 0, other.stderr);
  await realToolsClean(t, l);
  n.send('close v');
  t.is((await answered(n, 'close:v', WRITER_READY_MS)).ev, 'done');
  t.deepEqual(await openClaims(t, l), [], 'the claim went with the close');
  const mid = await seqno(l);
  const r = await asNode(t, l, 2, ['lvreduce', `${l.vg}/lv1`, '-L', '4m', '-y']);
  t.is(r.code, 0, r.stderr);
  t.true((await seqno(l)) > mid, 'the change committed once node 1 closed the LV');
  await realToolsClean(t, l);
});

test('`node --volume VG/LV` on another host holds the claim for its life: changes through a running node refuse naming it; killed, it is named until it is fenced, then the change goes through', async (t) => {
  // 15 s to death: the change right after the kill comes well before the fence.
  const l = await makeLab(t, 1, 96, [['-n', 'lv1', '-L', '64m'], ['-n', 'lv2', '-L', '4m']], 3, DEAD_THRESHOLD);
  const devices = l.pvs.join(',');
  const mkfs = await sanboxCli(t, ['mkfs', `${l.vg}/lv1`, '--slots', '3', '--devices', devices, '--cluster-stack', 'o2cb', '--cluster-name', 'lockout']);
  t.is(mkfs.code, 0, mkfs.stderr);
  const opener = spawnNode(t, l.cluster, 1, ['--volume', `${l.vg}/lv1`, '--devices', devices], { [LOCK_DIR_ENV]: tempDir(t) });
  const peers = [0, 2].map((id) => spawnNode(t, l.cluster, id, ['--devices', devices]));
  for (const p of peers) await p.waitLine(isEvent('up', 1), WRITER_READY_MS, `node ${p.nodeId} sees node 1 up`);
  await peers[1]!.waitLine((x) => /^ready/.test(x.msg ?? ''), WRITER_READY_MS, 'node 2 ready');
  const before = await seqno(l);
  for (const change of [
    ['lvextend', `${l.vg}/lv1`, '-L', '+4m'],
    ['lvreduce', `${l.vg}/lv1`, '-L', '60m', '-y'],
  ]) {
    const r = await asNode(t, l, 2, change);
    t.is(r.code, 1, `${change[0]}: ${r.stdout}`);
    t.regex(r.stderr, refusedFor(l, 'lv1', 'node 1'), change[0]!);
  }
  // Through node 1 itself, from this process's lock directory (not node 1's): node 1 names its own claim.
  const own = await sanboxCli(t, ['ctl', l.cluster, '1', 'lvm', 'lvextend', '-L', '+4m', `${l.vg}/lv1`, '--devices', devices]);
  t.is(own.code, 1, `through node 1: ${own.stdout} ${own.stderr}`);
  t.regex(own.stderr, refusedFor(l, 'lv1', 'node 1'), 'through node 1');
  t.is(await seqno(l), before, 'nothing committed while node 1 heartbeats on the LV');

  t.deepEqual((await openClaims(t, l)).map((c) => c[0]), [1], 'cluster status: node 1 has the LV open without its lock');
  opener.child.kill('SIGKILL');
  await opener.exited;
  // Dead but not yet fenced: it could be a stalled node about to write again, so still named.
  const early = await asNode(t, l, 2, ['lvextend', `${l.vg}/lv1`, '-L', '+4m']);
  const earlyDoneMs = Date.now();
  const fences = await Promise.all(peers.map((p) => p.waitLine(isEvent('fenced', 1), FENCED_MS, `node ${p.nodeId} to see node 1 fenced`)));
  // Refused naming node 1 — or, on a machine so loaded that the command outlived 15 s, done only
  // after node 1's fence.
  if (early.code === 0) t.true(Math.min(...fences.map((f) => f.atMs!)) <= earlyDoneMs, 'a change went through before node 1 was fenced');
  else t.regex(early.stderr, refusedFor(l, 'lv1', 'node 1'));
  if (early.code !== 0) t.is(await seqno(l), before, 'nothing committed while node 1 was dead but not fenced');
  const r = early.code === 0 ? early : await asNode(t, l, 2, ['lvextend', `${l.vg}/lv1`, '-L', '+4m']);
  t.is(r.code, 0, `after the fence: ${r.stderr}`);
  t.true((await seqno(l)) > before, 'the change committed once node 1 was fenced');
  for (const p of peers) p.child.kill('SIGTERM');
  await Promise.all(peers.map((p) => p.exited));
  await realToolsClean(t, l);
});
