// Issue 18 item 3, as separate OS processes on the same images: node A (lv-writer, node 1) writes
// checksummed blocks at the end of LV1 under the LV's lock; node B (node 2) shrinks LV1 with
// `sanbox lvreduce --cluster C --node 2` and grows LV2 into the freed extents, then writes there
// (another lv-writer, sweeping the new part of LV2 again and again). Checked:
//   - B's change completes within the stated bound (src/timing.ts layoutChangeBoundMs), after A
//     let go (A is named as the node locked out);
//   - A made acknowledged writes both before the change and after it (at the new generation);
//   - after the change every write of A past LV1's new end fails with EBOUNDS; no write of A
//     acknowledged at the old generation came after B's change committed (A's wall-clock acks
//     against the moment B's command returned);
//   - not one block of LV2 holds anything of A's (the PV bytes, read directly), while A kept
//     writing well after B's writes began and after B's writer stopped (so B's sweep cannot
//     overwrite and hide a stray write of A);
//   - every write A acknowledged inside LV1's new size is on disk;
//   - the real pvck and vgck are clean.
// The same with lvremove (A's writes fail with ENOENT afterwards), and --nowait fails at once
// naming the holder with the metadata unchanged.

import test, { type ExecutionContext } from 'ava';
import { readClusterImage } from '../src/heartbeat/cluster-image.js';
import type { ActivationStatus } from '../src/node/node.js';
import { layoutChangeBoundMs } from '../src/timing.js';
import { ackedWritesKept, lvSizeBytes, makeLab, MiB, noBlockOf, realToolsClean, startWriter, vgSeqno as seqno, WRITER_READY_MS, type Lab, type Writer } from './helpers/lv-lab.js';
import { sanboxCli } from './helpers/lvm-real.js';
import { spawnNode } from './helpers/heartbeat-nodes.js';
import { ownLockDir, waitFor } from './helpers/tmp.js';
import { answered, joinedWithOpen, spawnIoNode } from './helpers/io-node.js';

ownLockDir(test);

/** Writes of A wanted before the change, and after B's writes began. */
const WRITES_BEFORE = 40;
const ATTEMPTS_AFTER = 60;

/** One 24 MiB PV, 1 MiB extents: LV1 8 MiB, LV2 the rest, so LV2 can only grow into what LV1 frees. */
function lab(t: ExecutionContext): Promise<Lab> {
  return makeLab(t, 1, 24, [['-n', 'lv1', '-L', '8m'], ['-n', 'lv2', '-l', '100%FREE']]);
}

/** The seqno in the VG lock's value block, as `sanbox dlm ls --json` shows it ({u16 version, u16 flags, u32 seqno} LE). */
async function vgLockSeqno(t: ExecutionContext, l: Lab): Promise<number | undefined> {
  const r = await sanboxCli(t, ['dlm', 'ls', l.cluster, '--json']);
  t.is(r.code, 0, r.stderr);
  const res = (JSON.parse(r.stdout) as { resources: { resource: string; lvb: { value: string } | null }[] }).resources.find((x) => x.resource === `lvm_${l.vg}:VGLK`);
  return res?.lvb ? Buffer.from(res.lvb.value, 'hex').readUInt32LE(4) : undefined;
}

/** "Locked out node 1 in 12 ms; change done in 40 ms at seqno 5." → its numbers. */
function lockoutLine(t: ExecutionContext, stdout: string): { nodes: number[]; changeMs: number } {
  const m = /Locked out (.*) in (\d+) ms; change done in (\d+) ms at seqno (\d+)\./.exec(stdout);
  if (m === null) {
    t.fail(`no lock-out line in: ${stdout}`);
    return { nodes: [], changeMs: Infinity };
  }
  return { nodes: [...m[1]!.matchAll(/node (\d+)/g)].map((x) => Number(x[1])), changeMs: Number(m[3]) };
}

/** B's change printed that it locked out node 1 (A) within the bound and moved the VG on; the new seqno. */
async function lockedOutA(t: ExecutionContext, l: Lab, stdout: string, genBefore: number): Promise<number> {
  const lo = lockoutLine(t, stdout);
  t.deepEqual(lo.nodes, [1], 'B locked out node 1 (A)');
  const boundMs = layoutChangeBoundMs((await readClusterImage(l.cluster)).timing);
  t.true(lo.changeMs <= boundMs, `B's change took ${lo.changeMs} ms; bound ${boundMs} ms`);
  const genAfter = await seqno(l);
  t.true(genAfter > genBefore);
  return genAfter;
}

/**
 * A writes over [3 MiB, 8 MiB) of LV1; B runs `change` (as node 2) and then grows LV2 by what LV1
 * lost and writes LV2's new part. Returns A's writer and the generation after B's change.
 */
async function scenario(t: ExecutionContext, l: Lab, change: string[], lostBytes: number, changer = 2): Promise<{ a: Writer; genBefore: number; genAfter: number; changeDoneMs: number }> {
  const genBefore = await seqno(l);
  const lv2Before = await lvSizeBytes(l, 'lv2');
  const a = startWriter(t, l, 1, 'lv1', 'A', 3 * MiB, 8 * MiB);
  await waitFor(() => a.count('ok') >= WRITES_BEFORE || a.child.exitCode !== null, WRITER_READY_MS, `A's first ${WRITES_BEFORE} writes (${a.stderr.slice(-500)})`);
  t.true(a.count('ok') >= WRITES_BEFORE, `A wrote: ${a.stderr.slice(-1000)}`);

  const r = await sanboxCli(t, [...change, '--cluster', l.cluster, '--node', String(changer), '--devices', l.pvs.join(',')]);
  // B's commit came before its command exited: a bound on the commit time in the writers' clock (wall ms).
  const changeDoneMs = Date.now();
  t.is(r.code, 0, `${change.join(' ')}: ${r.stderr}`);
  const genAfter = await lockedOutA(t, l, r.stdout, genBefore);
  t.is(await vgLockSeqno(t, l), genAfter, "the VG lock's value block (lvmlockd's val_blk) holds the new seqno");

  const grow = await sanboxCli(t, ['lvextend', `${l.vg}/lv2`, '-L', `+${lostBytes / MiB}m`, '--cluster', l.cluster, '--node', String(changer), '--devices', l.pvs.join(',')]);
  t.is(grow.code, 0, `lvextend lv2: ${grow.stderr}`);
  const lv2After = await lvSizeBytes(l, 'lv2');
  t.is(lv2After, lv2Before + lostBytes);
  const b = startWriter(t, l, 2, 'lv2', 'B', lv2Before, lv2After, 'sweep');
  await waitFor(() => b.count('swept') >= 1 || b.child.exitCode !== null, WRITER_READY_MS, `B's first sweep of LV2's new part (${b.stderr.slice(-500)})`);
  const attemptsAtSweep = a.count('ok') + a.count('err');
  await waitFor(() => a.count('ok') + a.count('err') >= attemptsAtSweep + ATTEMPTS_AFTER || a.child.exitCode !== null, WRITER_READY_MS, `A's attempts after B's sweep`);
  // B stops first, and A keeps trying: from here nothing overwrites LV2's new part, so a write of
  // A through the old layout (into the freed extents) stays there for noBlockOf to find.
  await b.stop(t);
  const attemptsAtBStop = a.count('ok') + a.count('err');
  await waitFor(() => a.count('ok') + a.count('err') >= attemptsAtBStop + ATTEMPTS_AFTER || a.child.exitCode !== null, WRITER_READY_MS, `A's attempts after B stopped`);
  await a.stop(t);
  t.is(b.count('err'), 0, `B's writes: ${JSON.stringify(b.events.filter((e) => e.ev === 'err').slice(0, 3))}`);
  t.true(a.count('ok') + a.count('err') >= attemptsAtBStop + ATTEMPTS_AFTER, 'A kept trying after B wrote and stopped');
  return { a, genBefore, genAfter, changeDoneMs };
}

test('lvreduce of LV1 while node A writes its end: A lets go and resumes at the new generation, its writes past the new end fail, LV2 grown into the freed extents holds nothing of A', async (t) => {
  const l = await lab(t);
  const { a, genBefore, genAfter, changeDoneMs } = await scenario(t, l, ['lvreduce', `${l.vg}/lv1`, '-L', '4m', '-y'], 4 * MiB);
  const ok = a.events.filter((e) => e.ev === 'ok');
  // Acknowledged at the old generation means admitted before A let go, so before B's commit.
  const lateOld = ok.filter((e) => e.gen === genBefore && e.at! > changeDoneMs);
  t.deepEqual(lateOld.slice(0, 3), [], "no old-generation write acknowledged after B's change committed");
  await noBlockOf(t, l, 'lv2', 'A');
  t.true(ok.some((e) => e.gen === genBefore), 'A wrote before the change');
  t.true(ok.some((e) => e.gen === genAfter), 'A wrote after the change, at its generation');
  t.true(ok.every((e) => e.gen === genBefore || e.off! < 4 * MiB), 'after the change no write of A past the new end was acknowledged');
  const past = a.events.filter((e) => e.ev === 'err');
  t.true(past.length > 0 && past.every((e) => e.code === 'EBOUNDS' && e.off! >= 4 * MiB), `A's failures: ${JSON.stringify(past.slice(0, 3))}`);
  t.regex(past[0]!.msg!, new RegExp(`${l.vg}/lv1: 4096 bytes at offset \\d+ are past the end of the logical volume \\(size 4194304 bytes at VG seqno ${genAfter}\\)`));
  const pauses = a.pauses;
  t.true(pauses.some((p) => p.fromGeneration === genBefore && p.toGeneration === genAfter), `A's pauses: ${JSON.stringify(pauses)}`);
  await ackedWritesKept(t, l, 'lv1', a, 'A', 4 * MiB);
  await realToolsClean(t, l);
});

test('lvremove of LV1 while node A writes it: A lets go, every later write fails with ENOENT, LV2 grown into the freed extents holds nothing of A', async (t) => {
  const l = await lab(t);
  const { a, genBefore, changeDoneMs } = await scenario(t, l, ['lvremove', `${l.vg}/lv1`, '-y'], 8 * MiB);
  const ok = a.events.filter((e) => e.ev === 'ok');
  t.true(ok.length >= WRITES_BEFORE && ok.every((e) => e.gen === genBefore), 'A wrote before the change only');
  const errs = a.events.filter((e) => e.ev === 'err');
  t.true(errs.length > 0 && errs.every((e) => e.code === 'ENOENT'), `A's failures: ${JSON.stringify(errs.slice(0, 3))}`);
  t.regex(errs[0]!.msg!, new RegExp(`${l.vg}/lv1: the logical volume was removed by another node`));
  t.deepEqual(ok.filter((e) => e.at! > changeDoneMs).slice(0, 3), [], "no write acknowledged after B's removal committed");
  await noBlockOf(t, l, 'lv2', 'A');
  await realToolsClean(t, l);
});

test('the change made through a running node (node 3 runs here: its control channel takes the locks): A is locked out the same way', async (t) => {
  const l = await lab(t);
  const b = spawnNode(t, l.cluster, 3);
  await b.waitLine((x) => /^ready/.test(x.msg ?? ''), WRITER_READY_MS, 'node 3 ready');
  const { a, genBefore, genAfter, changeDoneMs } = await scenario(t, l, ['lvreduce', `${l.vg}/lv1`, '-L', '4m', '-y'], 4 * MiB, 3);
  const ok = a.events.filter((e) => e.ev === 'ok');
  t.deepEqual(ok.filter((e) => e.gen === genBefore && e.at! > changeDoneMs).slice(0, 3), [], "no old-generation write acknowledged after B's change committed");
  t.true(ok.some((e) => e.gen === genBefore) && ok.some((e) => e.gen === genAfter), 'A wrote before and after');
  t.true(ok.every((e) => e.gen === genBefore || e.off! < 4 * MiB), 'no write past the new end acknowledged after the change');
  t.true(a.pauses.some((p) => p.fromGeneration === genBefore && p.toGeneration === genAfter), JSON.stringify(a.pauses));
  await noBlockOf(t, l, 'lv2', 'A');
  await ackedWritesKept(t, l, 'lv1', a, 'A', 4 * MiB);
  b.child.kill('SIGTERM');
  await realToolsClean(t, l);
});

test('--nowait: a change of an LV another node writes through fails at once naming that node; the metadata is unchanged', async (t) => {
  const l = await lab(t);
  const a = startWriter(t, l, 1, 'lv1', 'A', 0, 8 * MiB);
  await waitFor(() => a.count('ok') >= 5 || a.child.exitCode !== null, WRITER_READY_MS, `A's first writes (${a.stderr.slice(-500)})`);
  const before = await seqno(l);
  for (const change of [
    ['lvreduce', `${l.vg}/lv1`, '-L', '4m', '-y'],
    ['lvremove', `${l.vg}/lv1`, '-y'],
    ['lvextend', `${l.vg}/lv1`, '-L', '+1m'],
  ]) {
    const r = await sanboxCli(t, [...change, '--cluster', l.cluster, '--node', '2', '--nowait', '--devices', l.pvs.join(',')]);
    t.is(r.code, 1, `${change[0]}: ${r.stdout}`);
    t.regex(r.stderr, new RegExp(`^sanbox: ${l.vg}/lv1 is in use by node 1 \\(PR\\); not changed \\(--nowait\\)\\n$`));
  }
  t.is(await seqno(l), before);
  const usage = await sanboxCli(t, ['lvreduce', `${l.vg}/lv1`, '-L', '4m', '-y', '--node', '2', '--devices', l.pvs.join(',')]);
  t.is(usage.code, 2, 'usage error: --node without --cluster');
  // One --node rule for every LVM command (src/format/o2hb-block.ts O2NM_MAX_NODES): 255 is no node number.
  for (const args of [['lvreduce', `${l.vg}/lv1`, '-L', '4m', '-y'], ['pvmove', l.pvs[0]!], ['lvchange', '-aey', `${l.vg}/lv1`], ['vgs']]) {
    const bad = await sanboxCli(t, [...args, '--cluster', l.cluster, '--node', '255', '--devices', l.pvs.join(',')]);
    t.is(bad.code, 2, `${args[0]} --node 255: ${bad.stderr}`);
    t.regex(bad.stderr, /^sanbox: --node takes a node number, not '255' \(0\.\.254\)\n$/, args[0]!);
  }
  await a.stop(t);
  t.is(a.count('err'), 0);
  t.deepEqual(a.pauses, [], 'A never paused: nobody locked it out');
  await realToolsClean(t, l);
});

/** Node `node`'s activations as `sanbox ctl C N status --json` shows them. */
async function activationsOf(t: ExecutionContext, l: Lab, node: number): Promise<ActivationStatus[]> {
  const r = await sanboxCli(t, ['ctl', l.cluster, String(node), 'status', '--json']);
  t.is(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { activations: ActivationStatus[] }).activations;
}

test('an LV activated with `ctl … lvm lvchange -aey` gives way to another node\'s lvextend: the change completes within the bound, the activation survives at the new seqno, its writes go on into the new extents; a conflicting activation is still refused at once', async (t) => {
  // LV1 8 MiB of a 24 MiB PV; A writes [4 MiB, 16 MiB): past the end until B grows LV1 to 16 MiB.
  const l = await makeLab(t, 1, 24, [['-n', 'lv1', '-L', '8m']]);
  // A shared container: activation takes the LV lock (a local VG's takes none).
  const shared = await sanboxCli(t, ['vgchange', '--container', 'shared', l.vg, '--cluster', l.cluster, '--node', '2', '--devices', l.pvs.join(',')]);
  t.is(shared.code, 0, shared.stderr);
  const genBefore = await seqno(l);
  const a = startWriter(t, l, 1, 'lv1', 'A', 4 * MiB, 16 * MiB, 'random', 'activated');
  await waitFor(() => a.count('listening') === 1 || a.child.exitCode !== null, WRITER_READY_MS, `node 1 listening (${a.stderr.slice(-500)})`);
  const act = await sanboxCli(t, ['ctl', l.cluster, '1', 'lvm', 'lvchange', '-aey', `${l.vg}/lv1`]);
  t.is(act.code, 0, act.stderr);
  t.regex(act.stdout, new RegExp(`Logical volume ${l.vg}/lv1 activated exclusively on node 1`));
  await waitFor(() => a.count('ok') >= WRITES_BEFORE || a.child.exitCode !== null, WRITER_READY_MS, `A's first ${WRITES_BEFORE} writes (${a.stderr.slice(-500)})`);
  t.true(a.events.filter((e) => e.ev === 'err').every((e) => e.code === 'EBOUNDS' && e.off! >= 8 * MiB), 'before the change only writes past 8 MiB fail');

  // Another node's activation conflicts: refused at once naming node 1, and A does not let go for it.
  const b = spawnNode(t, l.cluster, 2, ['--devices', l.pvs.join(',')]);
  await b.waitLine((x) => /^ready/.test(x.msg ?? ''), WRITER_READY_MS, 'node 2 ready');
  const conflict = await sanboxCli(t, ['ctl', l.cluster, '2', 'lvm', 'lvchange', '-aey', `${l.vg}/lv1`]);
  t.is(conflict.code, 1);
  t.regex(conflict.stderr, new RegExp(`${l.vg}/lv1: LV locked by node 1 \\(exclusive\\); exclusive activation refused on node 2\\n$`));
  t.is((await activationsOf(t, l, 1))[0]?.lockouts, 0, 'a refused activation locks nobody out');

  const r = await sanboxCli(t, ['lvextend', `${l.vg}/lv1`, '-L', '16m', '--cluster', l.cluster, '--node', '2', '--devices', l.pvs.join(',')]);
  t.is(r.code, 0, `lvextend: ${r.stderr}`);
  const genAfter = await lockedOutA(t, l, r.stdout, genBefore);

  const acts = await activationsOf(t, l, 1);
  t.is(acts.length, 1, JSON.stringify(acts));
  t.like(acts[0], { lv: `${l.vg}/lv1`, mode: 'ex', seqno: genAfter, lockouts: 1, failed: null });
  const okAt = a.count('ok');
  await waitFor(() => a.events.some((e) => e.ev === 'ok' && e.gen === genAfter && e.off! >= 8 * MiB) || a.child.exitCode !== null, WRITER_READY_MS, `A's writes into the new extents (${a.stderr.slice(-500)})`);
  await waitFor(() => a.count('ok') >= okAt + WRITES_BEFORE || a.child.exitCode !== null, WRITER_READY_MS, 'A writes on');
  await a.stop(t);
  b.child.kill('SIGTERM');
  const ok = a.events.filter((e) => e.ev === 'ok');
  t.true(ok.some((e) => e.gen === genBefore), 'A wrote before the change');
  t.true(ok.some((e) => e.gen === genAfter && e.off! >= 8 * MiB), 'A wrote into the new extents at the new seqno');
  // A write past 8 MiB is admitted only under the new layout: none was acknowledged before the change.
  t.true(ok.every((e) => e.off! < 8 * MiB || e.gen === genAfter), 'no write past the old end acknowledged at the old seqno');
  t.true(a.events.filter((e) => e.ev === 'err').every((e) => e.code === 'EBOUNDS'), JSON.stringify(a.events.filter((e) => e.ev === 'err' && e.code !== 'EBOUNDS').slice(0, 3)));
  await ackedWritesKept(t, l, 'lv1', a, 'A', 16 * MiB);
  // The real tools read a shared (lock_type dlm) VG only through lvmlockd: back to local first.
  const local = await sanboxCli(t, ['vgchange', '--container', 'local', l.vg, '--cluster', l.cluster, '--node', '0', '--devices', l.pvs.join(',')]);
  t.is(local.code, 0, local.stderr);
  await realToolsClean(t, l);
});

test('a node with the LV open without its LV lock (a plain provider device, as `node --volume VG/LV` opens it) makes every --cluster layout change refuse naming its pid, nothing changed; opened under the lock it is locked out instead', async (t) => {
  const l = await makeLab(t, 2, 24, [['-n', 'lv1', '-L', '8m'], ['-n', 'lv2', '-L', '4m']]);
  const n = spawnIoNode(t, l.cluster, 1, l.pvs);
  await joinedWithOpen(n, 'v', `${l.vg}/lv1`, WRITER_READY_MS);
  const before = await seqno(l);
  const cluster = ['--cluster', l.cluster, '--node', '2', '--devices', l.pvs.join(',')];
  for (const change of [
    ['lvreduce', `${l.vg}/lv1`, '-L', '4m', '-y'],
    ['lvremove', `${l.vg}/lv1`, '-y'],
    ['lvextend', `${l.vg}/lv1`, '-L', '+1m'],
    ['pvmove', l.pvs[0]!, l.pvs[1]!],
  ]) {
    const r = await sanboxCli(t, [...change, ...cluster]);
    t.is(r.code, 1, `${change[0]}: ${r.stdout}`);
    t.regex(r.stderr, new RegExp(`^sanbox: ${l.vg}/lv1: in use by another process \\(pid ${n.pid}\\) without the logical volume's cluster lock, which a layout change cannot lock out; not changed[^\\n]*\\n$`), change[0]!);
    // pvmove records the move (a VG tag, resumable) before its first chunk, as without a cluster; no extent moved.
    if (change[0] === 'pvmove') t.notRegex(r.stdout, /Moved:/);
    else t.is(await seqno(l), before, `${change[0]}: nothing committed`);
  }
  t.is((await sanboxCli(t, ['pvmove', '--abort', ...cluster])).code, 0);
  n.send('close v');
  t.is((await answered(n, 'close:v', WRITER_READY_MS)).ev, 'done');
  n.send(`openlocked v ${l.vg}/lv1`);
  t.is((await answered(n, 'open:v', WRITER_READY_MS)).ev, 'done');
  const r = await sanboxCli(t, ['lvreduce', `${l.vg}/lv1`, '-L', '4m', '-y', ...cluster]);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(lockoutLine(t, r.stdout).nodes, [1], 'node 1, holding the LV lock, was locked out');
  n.send('write w2 v 8192');
  t.is((await answered(n, 'w2', WRITER_READY_MS)).ev, 'done', 'node 1 writes on at the new generation');
  await realToolsClean(t, l);
});
