// Issue 18 item 4 for a striped LV, as separate OS processes on the same images: node 0
// (lv-writer) writes checksummed blocks all over a 2-stripe LV while `sanbox pvmove --cluster C
// --node N` moves the stripe on one PV to a third PV, one PE (one stripe row) per chunk, each
// under the lock-out. Checked:
//   - a destination that holds the LV's other stripe is refused in one line, nothing written;
//     without a destination the third PV is chosen (lvm2 refuses the same, "Insufficient suitable
//     allocatable extents", and picks the same);
//   - which (source, destination) pairs are refused is what the real `pvmove --test` refuses on
//     loop devices of the same images ("Insufficient suitable allocatable extents", exit 5);
//   - a striped LV the real lvcreate made is moved by sanbox to the layout lvm2 reads back;
//   - the move completes with the writer writing throughout, the stripe ends on the third PV in
//     one segment again (the rows merged), every acknowledged write is on disk;
//   - a mover killed with SIGKILL mid-move leaves the segment split at a stripe-row boundary:
//     the real vgck and pvck accept it and the real `lvs --segments` reads the same segments and
//     PE ranges as sanbox; the writer goes on after the fence; `pvmove --abort` keeps the moved
//     rows moved; a new pvmove finishes; not one acknowledged write lost.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { withSession } from '../src/volume/manager.js';
import { checkMove, type MoveRecord } from '../src/volume/pvmove.js';
import { ackedWritesKept, makeLab, MiB, realToolsClean, startWriter, vgSeqno, WRITER_READY_MS, type Lab } from './helpers/lv-lab.js';
import { attachLoop, lvm, sanboxCli, warnings } from './helpers/lvm-real.js';
import { badBlocks, fillLv, killMoverAt, moreWrites, moved, moveRecorded, mover, placement, realSegmentsAgree } from './helpers/pvmove-lab.js';
import { ownLockDir, tempDir, waitFor } from './helpers/tmp.js';

ownLockDir(test);

/** 8 extents of 1 MiB over 2 stripes: 4 rows, 4 chunks. */
const LV_EXTENTS = 8;
const STRIPES = 2;
const ROWS = LV_EXTENTS / STRIPES;
const WRITES_BETWEEN = 15;
/**
 * Bound on one test: a few moves (each bounded by MOVE_MS), a fence after each kill, and rounds of
 * the real tools; more than ava's 120 s when the machine is loaded many times over.
 */
const TEST_MS = 360_000;

/** Three PVs; the LV striped over the first two (sanbox allocates stripes in PV order). */
function lab(t: ExecutionContext): Promise<Lab> {
  return makeLab(t, 3, 24, [['-n', 'lv', '-l', String(LV_EXTENTS), '-i', String(STRIPES), '-I', '64k']], 8);
}

function rows(l: Lab, areas: number[][]): string[] {
  return areas.map((a) => a.map((i) => path.basename(l.pvs[i]!)).join('+'));
}

function asNode(l: Lab, node: number): string[] {
  return ['--cluster', l.cluster, '--node', String(node), '--devices', l.pvs.join(',')];
}

test('pvmove of one stripe under I/O: a destination holding the other stripe is refused, the third PV is chosen, the rows merge into one segment, no acknowledged write lost, lvm2 reads it as sanbox', async (t) => {
  t.timeout(TEST_MS);
  const l = await lab(t);
  const [p0, p1, p2] = l.pvs as [string, string, string];
  t.deepEqual((await placement(l.pvs, l.vg, 'lv')).les, rows(l, Array(ROWS).fill([0, 1])), 'the LV is striped over the first two PVs');
  const a = startWriter(t, l, 0, 'lv', 'A', 0, LV_EXTENTS * MiB);
  await waitFor(() => a.count('ok') >= WRITES_BETWEEN || a.child.exitCode !== null, WRITER_READY_MS, `A's first writes (${a.stderr.slice(-500)})`);
  const before = await vgSeqno(l);
  const refused = await sanboxCli(t, ['pvmove', p0, p1, ...asNode(l, 1)]);
  t.is(refused.code, 1, refused.stderr);
  t.regex(refused.stderr, new RegExp(`^sanbox: ${l.vg}/lv: stripe 0 of its 2-stripe segment at LE 0 cannot move to ${p1}: that PV holds stripe 1 of the same segment, and two stripes of a segment never share a PV; name another destination\\n$`));
  t.is(await vgSeqno(l), before, 'nothing written');
  t.false(moveRecorded((await placement(l.pvs, l.vg, 'lv')).tags));
  const r = await mover(t, ['pvmove', p0, ...asNode(l, 1)]);
  t.is(r.code, 0, r.stderr);
  t.is(moved(r.stdout), ROWS, r.stdout);
  t.regex(r.stdout, new RegExp(`LE 0 stripe 0 to ${p2}:0,`));
  t.regex(r.stdout, /100\.00%/);
  t.regex(r.stdout, /Locked out node 0; the longest lock-out took \d+ ms\./);
  await moreWrites(a, WRITES_BETWEEN, 'after the move');
  await a.stop(t);
  t.is(a.count('err'), 0, JSON.stringify(a.events.filter((e) => e.ev === 'err').slice(0, 3)));
  t.true(a.pauses.some((p) => p.toGeneration > p.fromGeneration), `A followed the layout: ${JSON.stringify(a.pauses)}`);
  const p = await placement(l.pvs, l.vg, 'lv');
  t.deepEqual(p.les, rows(l, Array(ROWS).fill([2, 1])), 'stripe 0 is on the third PV');
  t.false(moveRecorded(p.tags), 'no move recorded');
  await ackedWritesKept(t, l, 'lv', a, 'A', LV_EXTENTS * MiB);
  const loops = await realToolsClean(t, l);
  const segs = await realSegmentsAgree(t, l.pvs, l.vg, loops, 'after the move');
  t.deepEqual(segs, [['lv', 'striped', '2', '65536', '0', String(LV_EXTENTS), `${p2}:0-${ROWS - 1} ${p1}:0-${ROWS - 1}`]], 'one segment, as lvm2 leaves a finished move');
});

test('a striped move killed -9 mid-way: the split segments pass the real vgck and lvs reads them as sanbox; --abort keeps the moved rows; a new pvmove finishes; no acknowledged write lost', async (t) => {
  t.timeout(TEST_MS);
  const l = await lab(t);
  const [p0, p1, p2] = l.pvs as [string, string, string];
  const a = startWriter(t, l, 0, 'lv', 'A', 0, LV_EXTENTS * MiB);
  await waitFor(() => a.count('ok') >= WRITES_BETWEEN || a.child.exitCode !== null, WRITER_READY_MS, `A's first writes (${a.stderr.slice(-500)})`);
  let loops: string[] | undefined;
  // Right after the first chunk, then 10 ms into the next one's lock-out or copy.
  for (const [i, [node, after, delayMs]] of ([[1, 1, 0], [2, 1, 10]] as const).entries()) {
    await killMoverAt(t, l, i === 0 ? [p0, p2] : [], node, after, delayMs);
    loops = await realToolsClean(t, l, loops);
    const p = await placement(l.pvs, l.vg, 'lv');
    t.true(moveRecorded(p.tags), `the move is recorded after kill ${i + 1}`);
    const done = p.les.filter((x) => x === rows(l, [[2, 1]])[0]).length;
    t.true(done >= i + 1 && done < ROWS, `part moved after kill ${i + 1}: ${p.les.join(' ')}`);
    t.deepEqual(p.les, rows(l, [...Array(done).fill([2, 1]), ...Array(ROWS - done).fill([0, 1])]), 'moved rows first, the rest still on the source');
    const segs = await realSegmentsAgree(t, l.pvs, l.vg, loops, `after kill ${i + 1}`);
    t.deepEqual(
      segs.map((s) => s[6]),
      [`${p2}:0-${done - 1} ${p1}:0-${done - 1}`, `${p0}:${done}-${ROWS - 1} ${p1}:${done}-${ROWS - 1}`],
      `split at stripe row ${done}, the moved rows merged`,
    );
    await moreWrites(a, WRITES_BETWEEN, `after kill ${i + 1}`);
  }
  const ab = await sanboxCli(t, ['pvmove', '--abort', ...asNode(l, 3)]);
  t.is(ab.code, 0, ab.stderr);
  const kept = await placement(l.pvs, l.vg, 'lv');
  t.false(moveRecorded(kept.tags));
  t.true(kept.les.includes(rows(l, [[2, 1]])[0]!) && kept.les.includes(rows(l, [[0, 1]])[0]!), `moved rows stay moved: ${kept.les.join(' ')}`);
  loops = await realToolsClean(t, l, loops);
  await realSegmentsAgree(t, l.pvs, l.vg, loops, 'after the abort');
  const r = await mover(t, ['pvmove', p0, p2, ...asNode(l, 2)]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /100\.00%/);
  await moreWrites(a, WRITES_BETWEEN, 'after the new move');
  await a.stop(t);
  t.is(a.count('err'), 0, JSON.stringify(a.events.filter((e) => e.ev === 'err').slice(0, 3)));
  const p = await placement(l.pvs, l.vg, 'lv');
  t.deepEqual(p.les, rows(l, Array(ROWS).fill([2, 1])));
  t.false(moveRecorded(p.tags));
  await ackedWritesKept(t, l, 'lv', a, 'A', LV_EXTENTS * MiB);
  loops = await realToolsClean(t, l, loops);
  t.deepEqual((await realSegmentsAgree(t, l.pvs, l.vg, loops, 'at the end')).map((s) => s[6]), [`${p2}:0-${ROWS - 1} ${p1}:0-${ROWS - 1}`]);
});

/** Whether sanbox's pvmove takes the move of PV `src` to PV `dst` (undefined: any) of `l` (checkMove: what pvmove checks before it writes). */
async function sanboxTakes(l: Lab, src: number, dst: number | undefined): Promise<boolean> {
  return withSession(l.pvs, { readOnly: true, guard: 'none' }, async (s) => {
    const vg = s.vg(l.vg).vg;
    const id = (i: number): string => s.pvOn(l.pvs[i]!).label.pvId;
    const r: MoveRecord = { vg: l.vg, srcPvId: id(src), dstPvId: dst === undefined ? undefined : id(dst), lv: undefined };
    try {
      checkMove(vg, r);
      return true;
    } catch {
      return false;
    }
  });
}

test('the destinations sanbox refuses for a stripe are the ones the real pvmove --test refuses; a refused pvmove writes nothing', async (t) => {
  t.timeout(TEST_MS);
  const three = await lab(t);
  const two = await makeLab(t, 2, 24, [['-n', 'lv', '-l', '4', '-i', '2', '-I', '64k']], 2);
  for (const [l, pairs] of [
    [three, [[0, 1], [1, 0], [0, 2], [1, 2], [0, undefined], [1, undefined]]],
    [two, [[0, 1], [0, undefined]]],
  ] as [Lab, [number, number | undefined][]][]) {
    const loops = await Promise.all(l.pvs.map((p) => attachLoop(t, p)));
    for (const [src, dst] of pairs) {
      const what = `pvmove ${src} ${dst ?? '(any)'} of ${l.pvs.length} PVs`;
      const real = await lvm('pvmove', loops, ['--driverloaded', 'n', '--test', loops[src]!, ...(dst === undefined ? [] : [loops[dst]!])]);
      // Exit 5 with lvm2's allocation failure, or 0 (test mode: nothing written).
      t.true(real.code === 0 || /Insufficient suitable allocatable extents/.test(real.stderr), `${what}: lvm2: ${real.code} ${real.stderr}`);
      t.is(await sanboxTakes(l, src, dst), real.code === 0, `${what}: sanbox agrees with lvm2 (${real.stderr.trim().split('\n').pop()})`);
      if (real.code === 0) continue;
      const before = await vgSeqno(l);
      const r = await sanboxCli(t, ['pvmove', l.pvs[src]!, ...(dst === undefined ? [] : [l.pvs[dst]!]), '--devices', l.pvs.join(',')]);
      t.is(r.code, 1, `${what}: ${r.stderr}`);
      t.regex(r.stderr, /^sanbox: [^\n]*(cannot move to [^\n]*: that PV holds stripe \d of the same segment|has no PV to move to: every other allocatable PV of the VG holds another stripe of the same segment)[^\n]*\n$/, what);
      t.is(await vgSeqno(l), before, `${what}: nothing written`);
    }
  }
});

test('a striped LV the real lvcreate made: sanbox pvmove moves one stripe, the real vgck passes and lvs --segments reads the moved layout, every block intact', async (t) => {
  t.timeout(TEST_MS);
  const dir = tempDir(t);
  const imgs = ['r0', 'r1', 'r2'].map((n) => path.join(dir, `${n}.img`));
  for (const img of imgs) fs.writeFileSync(img, ''), fs.truncateSync(img, 32 * MiB);
  const loops: string[] = [];
  for (const img of imgs) loops.push(await attachLoop(t, img));
  const vg = `rs${process.pid % 100000}${Math.floor(Math.random() * 1000)}`;
  for (const [cmd, args] of [
    ['pvcreate', loops],
    ['vgcreate', ['-s', '1m', vg, ...loops]],
    ['lvcreate', ['--driverloaded', 'n', '-an', '-Zn', '-l', '6', '-i', '2', '-I', '64k', '-n', 'lv', vg, loops[0]!, loops[1]!]],
  ] as [string, string[]][]) {
    const r = await lvm(cmd, loops, args);
    t.is(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  }
  t.deepEqual((await placement(imgs, vg, 'lv')).les, ['r0.img+r1.img', 'r0.img+r1.img', 'r0.img+r1.img'], "lvm2's stripes as sanbox reads them");
  await fillLv(imgs, vg, 'lv');
  const r = await sanboxCli(t, ['pvmove', imgs[0]!, imgs[2]!, '--devices', imgs.join(',')]);
  t.is(r.code, 0, r.stderr);
  t.is(moved(r.stdout), 3, r.stdout);
  t.deepEqual(await badBlocks(imgs, vg, 'lv'), [], 'every block reads back through the new map');
  const p = await placement(imgs, vg, 'lv');
  t.deepEqual(p.les, ['r2.img+r1.img', 'r2.img+r1.img', 'r2.img+r1.img']);
  t.false(moveRecorded(p.tags));
  const v = await lvm('vgck', loops, [vg]);
  t.is(v.code, 0, v.stderr);
  t.deepEqual(warnings(v.stderr), [], 'vgck warnings');
  const segs = await realSegmentsAgree(t, imgs, vg, loops, "after sanbox moved a stripe of lvm2's LV");
  t.deepEqual(segs, [['lv', 'striped', '2', '65536', '0', '6', `${imgs[2]}:0-2 ${imgs[1]}:0-2`]]);
});
