// Issue 18 item 4, as separate OS processes on the same images: node 0 (lv-writer) writes
// checksummed blocks all over an LV while `sanbox pvmove --cluster C --node N SRC DST` moves the
// LV's extents to another PV, one extent per chunk, each under the lock-out. Checked:
//   - the move completes with the writer writing throughout (it paused once per chunk, never
//     failed), the LV ends up entirely on DST, every acknowledged write is on disk;
//   - a mover killed with SIGKILL at several points (right after a chunk, a few ms into the next)
//     leaves metadata the real vgck and pvck accept, with the move recorded; the writer goes on
//     once the survivor fenced the dead mover; `pvmove` again (no arguments, as another node)
//     resumes and finishes; not one acknowledged write lost;
//   - `pvmove --abort` after a kill ends the move: the record goes, moved extents stay at DST and
//     the rest at SRC (lvm2's abort of a non-atomic move), vgck clean, no write lost.

import test, { type ExecutionContext } from 'ava';
import path from 'node:path';
import { ackedWritesKept, makeLab, MiB, realToolsClean, startWriter, vgSeqno, WRITER_READY_MS, type Lab } from './helpers/lv-lab.js';
import { sanboxCli } from './helpers/lvm-real.js';
import { killMoverAt, moreWrites, moved, mover, placement as placementOf } from './helpers/pvmove-lab.js';
import { ownLockDir, waitFor } from './helpers/tmp.js';

ownLockDir(test);

const LV_MIB = 8;
/** Writes the writer must make before a move, and between two steps. */
const WRITES_BETWEEN = 15;

function lab(t: ExecutionContext): Promise<Lab> {
  return makeLab(t, 2, 24, [['-n', 'lv', '-L', `${LV_MIB}m`]], 8);
}

/** Which PV image (base name) each LE of `lv` is on, and the recorded moves (VG tags). */
function placement(l: Lab, lv: string): Promise<{ les: string[]; tags: string[] }> {
  return placementOf(l.pvs, l.vg, lv);
}

test('pvmove under I/O: every chunk locks the writer out briefly, the LV ends on the destination, no acknowledged write lost, vgck clean', async (t) => {
  const l = await lab(t);
  const [src, dst] = l.pvs as [string, string];
  const [srcName, dstName] = [src, dst].map((p) => path.basename(p)) as [string, string];
  t.deepEqual(new Set((await placement(l, 'lv')).les), new Set([srcName]), 'the LV starts on the first PV');
  const a = startWriter(t, l, 0, 'lv', 'A', 0, LV_MIB * MiB);
  await waitFor(() => a.count('ok') >= WRITES_BETWEEN || a.child.exitCode !== null, WRITER_READY_MS, `A's first writes (${a.stderr.slice(-500)})`);
  const r = await mover(t, ['pvmove', src, dst, '--cluster', l.cluster, '--node', '1', '--devices', l.pvs.join(',')]);
  t.is(r.code, 0, r.stderr);
  t.is(moved(r.stdout), LV_MIB, r.stdout);
  t.regex(r.stdout, /100\.00%/);
  t.regex(r.stdout, /Locked out node 0; the longest lock-out took \d+ ms\./);
  await moreWrites(a, WRITES_BETWEEN, 'after the move');
  await a.stop(t);
  t.is(a.count('err'), 0, JSON.stringify(a.events.filter((e) => e.ev === 'err').slice(0, 3)));
  const movedPauses = a.pauses.filter((p) => p.toGeneration > p.fromGeneration);
  t.true(movedPauses.length >= 1, `A followed the layout: ${JSON.stringify(a.pauses)}`);
  t.log(`A paused ${a.pauses.length} times, longest ${Math.max(...a.pauses.map((p) => p.pausedMs)).toFixed(0)} ms`);
  const p = await placement(l, 'lv');
  t.deepEqual(new Set(p.les), new Set([dstName]), 'the LV is on the destination');
  t.false(p.tags.some((x) => x.startsWith('sanbox_pvmove:')), 'no move recorded');
  await ackedWritesKept(t, l, 'lv', a, 'A', LV_MIB * MiB);
  await realToolsClean(t, l);
});

test('a mover killed -9 at several points: vgck accepts the metadata each time, the writer resumes after the fence, pvmove again finishes the move, no acknowledged write lost', async (t) => {
  const l = await lab(t);
  const [src, dst] = l.pvs as [string, string];
  const [srcName, dstName] = [src, dst].map((p) => path.basename(p)) as [string, string];
  const a = startWriter(t, l, 0, 'lv', 'A', 0, LV_MIB * MiB);
  await waitFor(() => a.count('ok') >= WRITES_BETWEEN || a.child.exitCode !== null, WRITER_READY_MS, `A's first writes (${a.stderr.slice(-500)})`);
  let loops: string[] | undefined;
  // (node, chunks before the kill, ms after that chunk): right after a chunk, and into the next one.
  const points: [number, number, number][] = [
    [1, 1, 0],
    [1, 2, 5],
    [1, 1, 15],
  ];
  for (const [i, [node, after, delayMs]] of points.entries()) {
    await killMoverAt(t, l, i === 0 ? [src, dst] : [], node, after, delayMs);
    loops = await realToolsClean(t, l, loops);
    const p = await placement(l, 'lv');
    t.true(p.tags.some((x) => x.startsWith('sanbox_pvmove:')), `the move is recorded after kill ${i + 1}`);
    t.true(p.les.includes(srcName) && p.les.includes(dstName), `part moved after kill ${i + 1}: ${p.les.join(' ')}`);
    await moreWrites(a, WRITES_BETWEEN, `after kill ${i + 1}`);
  }
  const r = await mover(t, ['pvmove', '--cluster', l.cluster, '--node', '2', '--devices', l.pvs.join(',')]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /100\.00%/);
  await moreWrites(a, WRITES_BETWEEN, 'after the resumed move');
  await a.stop(t);
  t.is(a.count('err'), 0, JSON.stringify(a.events.filter((e) => e.ev === 'err').slice(0, 3)));
  const p = await placement(l, 'lv');
  t.deepEqual(new Set(p.les), new Set([dstName]));
  t.false(p.tags.some((x) => x.startsWith('sanbox_pvmove:')));
  await ackedWritesKept(t, l, 'lv', a, 'A', LV_MIB * MiB);
  await realToolsClean(t, l, loops);
});

test('pvmove --abort after a killed mover: the record goes, moved extents stay on the destination and the rest on the source, vgck clean, no write lost', async (t) => {
  const l = await lab(t);
  const [src, dst] = l.pvs as [string, string];
  const [srcName, dstName] = [src, dst].map((p) => path.basename(p)) as [string, string];
  const a = startWriter(t, l, 0, 'lv', 'A', 0, LV_MIB * MiB);
  await waitFor(() => a.count('ok') >= WRITES_BETWEEN || a.child.exitCode !== null, WRITER_READY_MS, `A's first writes (${a.stderr.slice(-500)})`);
  await killMoverAt(t, l, [src, dst], 1, 3, 0);
  const r = await sanboxCli(t, ['pvmove', '--abort', '--cluster', l.cluster, '--node', '2', '--devices', l.pvs.join(',')]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /Aborted the move/);
  const again = await sanboxCli(t, ['pvmove', '--devices', l.pvs.join(',')]);
  t.is(again.code, 1);
  t.regex(again.stderr, /^sanbox: no pvmove in progress on these devices\n$/);
  await moreWrites(a, WRITES_BETWEEN, 'after the abort');
  await a.stop(t);
  t.is(a.count('err'), 0);
  const p = await placement(l, 'lv');
  t.false(p.tags.some((x) => x.startsWith('sanbox_pvmove:')));
  t.true(p.les.includes(srcName) && p.les.includes(dstName), p.les.join(' '));
  t.true(p.les.filter((x) => x === dstName).length >= 3, 'the moved extents stayed moved');
  await ackedWritesKept(t, l, 'lv', a, 'A', LV_MIB * MiB);
  await realToolsClean(t, l);
});

test('bad pvmove requests: one line, the right exit status, the metadata unchanged; without --cluster a move runs as a plain command', async (t) => {
  const l = await lab(t);
  const [src, dst] = l.pvs as [string, string];
  const dstName = path.basename(dst);
  const devs = ['--devices', l.pvs.join(',')];
  const before = await vgSeqno(l);
  for (const [args, code, re] of [
    [['pvmove', src, src], 1, /the source and destination are the same PV/],
    [['pvmove', src, dst, '-n', 'nope'], 1, new RegExp(`logical volume ${l.vg}/nope not found`)],
    [['pvmove', l.cluster], 1, /not in the device list|not an LVM physical volume/],
    [['pvmove', '--abort', src, dst], 2, /pvmove --abort takes at most the source PV/],
    [['pvmove', src, dst, '--node', '1'], 2, /--node and --nowait go with --cluster/],
    [['pvmove'], 1, /no pvmove in progress on these devices/],
  ] as [string[], number, RegExp][]) {
    const r = await sanboxCli(t, [...args, ...devs]);
    t.is(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, new RegExp(`^sanbox: .*${re.source}.*\\n$`), args.join(' '));
  }
  t.is(await vgSeqno(l), before, 'nothing written');
  const r = await sanboxCli(t, ['pvmove', src, dst, '-n', 'lv', ...devs]);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(new Set((await placement(l, 'lv')).les), new Set([dstName]));
  await realToolsClean(t, l);
});
