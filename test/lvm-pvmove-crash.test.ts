// pvmove killed at every write and flush it issues (SANBOX_CRASH_AT=before-io:K@pv, a real
// kill -9 of the mover right before its K-th I/O on a PV: the state on disk is exactly what the
// first K−1 I/Os left), for K = 1 until a run finishes. After each crash: the real vgck and pvck
// accept the metadata (a crash between the two PVs' commits leaves lvm2's own "highest seqno wins"
// warning, nothing else); every block of the LV reads back as written (through whichever map is on
// disk); the real `lvs --segments` reads the segments sanbox's does; `pvmove` again (resume, or a
// fresh start when the crash came before the move was recorded) finishes, the LV ends on the
// destination with every block intact, vgck clean. The same for one stripe of a 2-stripe LV
// (2 rows: 2 chunks, the segment split between them and merged again after).

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { CRASH_AT_ENV } from '../src/disk/crash-point.js';
import { attachLoop, detachLoop, lvm, sanboxCli, warnings } from './helpers/lvm-real.js';
import { badBlocks, fillLv, moveRecorded, placement, realSegmentsAgree } from './helpers/pvmove-lab.js';
import { ownLockDir, runSanbox, tempDir } from './helpers/tmp.js';
import { copyImage } from './helpers/image-copy.js';
import { runCliInProcess } from './helpers/cli-inprocess.js';

ownLockDir(test);

/** One extent, one chunk: crashes fall in the record's commit, the chunk's copy and commit, and the record's removal. */
const LV_MIB = 1;
/** More I/Os than a 1-extent move issues: a run that is never killed ends the enumeration well before this. */
const CRASH_POINTS_MAX = 200;

async function state(pvs: string[], vg: string): Promise<{ les: string[]; segments: number; moving: boolean }> {
  const p = await placement(pvs, vg, 'lv');
  return { les: p.les, segments: p.segments, moving: moveRecorded(p.tags) };
}

/**
 * A crash between the commits of the two PVs' metadata areas leaves them one seqno apart; lvm2
 * itself reads the highest and says so (lvm2.md §4.3 item 8), and the next commit rewrites both.
 * Those two warnings, with seqnos one apart, are what lvm2 prints for its own interrupted commit.
 */
const HALF_COMMIT = [/^ {2}WARNING: ignoring metadata seqno (\d+) on \/dev\/loop\d+ for seqno (\d+) on \/dev\/loop\d+ for VG \S+\.$/, /^ {2}WARNING: Inconsistent metadata found for VG \S+\.$/];

function halfCommit(line: string): boolean {
  const m = HALF_COMMIT[0]!.exec(line);
  return (m !== null && Number(m[2]) === Number(m[1]) + 1) || HALF_COMMIT[1]!.test(line);
}

/**
 * The real pvck and vgck accept the metadata (`allowHalfCommit`: but for lvm2's own warnings about
 * an interrupted commit), and with `segments` the real `lvs --segments` lists the segments sanbox
 * lists (not while a half commit makes lvm2 warn on every command).
 */
async function toolsClean(t: ExecutionContext, pvs: string[], vg: string, what: string, opts: { allowHalfCommit?: boolean; segments?: boolean } = {}): Promise<void> {
  const allowHalfCommit = opts.allowHalfCommit ?? false;
  const loops = [];
  for (const p of pvs) loops.push(await attachLoop(t, p));
  try {
    // One pvck over every PV (it checks each one named, and fails if any fails): a process less per PV at each of the many points.
    const p = await lvm('pvck', loops, loops);
    t.is(p.code, 0, `${what}: pvck ${loops.join(' ')}: ${p.stderr}`);
    t.deepEqual(warnings(p.stderr).filter((l) => !(allowHalfCommit && halfCommit(l))), [], `${what}: pvck`);
    const v = await lvm('vgck', loops, [vg]);
    t.is(v.code, 0, `${what}: vgck: ${v.stderr}`);
    t.deepEqual(warnings(v.stderr).filter((l) => !(allowHalfCommit && halfCommit(l))), [], `${what}: vgck`);
    // A half commit makes lvm2 warn on every command (lvmReport fails on warnings); the resumed move rewrites both.
    if (opts.segments === true && !v.stderr.split('\n').some((l) => HALF_COMMIT[0]!.test(l))) await realSegmentsAgree(t, pvs, vg, loops, what);
  } finally {
    for (const l of loops) await detachLoop(l);
  }
}

/** A crash-point run: `pvCount` PVs, the LV made by `lvArgs`, moved from PV `srcIdx` to PV `dstIdx`; per stripe row, where the LV is before and after. */
interface CrashCase {
  pvCount: number;
  lvArgs: string[];
  /** The bound on the whole enumeration (each point is two sanbox runs and two rounds of the real tools: seconds on a loaded machine). */
  timeoutMs: number;
  srcIdx: number;
  dstIdx: number;
  before: string[];
  after: string[];
}

async function crashAtEveryIo(t: ExecutionContext, c: CrashCase): Promise<void> {
  t.timeout(c.timeoutMs);
  const dir = tempDir(t);
  const files = Array.from({ length: c.pvCount }, (_, i) => `pv${i}.img`);
  const pristine = files.map((f) => path.join(dir, `pristine-${f}`));
  const vg = `pc${process.pid % 100000}${Math.floor(Math.random() * 1000)}`;
  for (const args of [
    ...pristine.map((p) => ['disk', 'create', p, '--size', '16M']),
    ['pvcreate', ...pristine],
    ['vgcreate', '-s', '1m', vg, ...pristine],
    ['lvcreate', '-n', 'lv', ...c.lvArgs, vg, '--devices', pristine.join(',')],
  ]) {
    const r = await sanboxCli(t, args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  await fillLv(pristine, vg, 'lv');
  t.deepEqual((await state(pristine, vg)).les, c.before.map((row) => row.replace(/pv\d+\.img/g, 'pristine-$&')));
  const pvs = files.map((f) => path.join(dir, f));
  const [src, dst] = [pvs[c.srcIdx]!, pvs[c.dstIdx]!];
  let finished = false;
  let points = 0;
  for (let k = 1; k <= CRASH_POINTS_MAX && !finished; k++) {
    for (const [i, p] of pvs.entries()) copyImage(pristine[i]!, p);
    for (const [i, p] of pvs.entries()) if (fs.existsSync(`${pristine[i]}.sanbox.json`)) fs.copyFileSync(`${pristine[i]}.sanbox.json`, `${p}.sanbox.json`);
    const devs = ['--devices', pvs.join(',')];
    const r = await runSanbox(t, ['pvmove', src, dst, ...devs], { env: { [CRASH_AT_ENV]: `before-io:${k}@pv` } });
    if (r.code === 0) {
      finished = true;
      t.deepEqual((await state(pvs, vg)).les, c.after, 'an uncrashed run moves everything');
      await toolsClean(t, pvs, vg, 'after an uncrashed run', { segments: true });
      break;
    }
    points++;
    t.is(r.code, null, `crash point ${k}: killed, not failed: ${r.stderr}`);
    await toolsClean(t, pvs, vg, `after the crash before I/O ${k}`, { allowHalfCommit: true, segments: true });
    t.deepEqual(await badBlocks(pvs, vg, 'lv'), [], `after the crash before I/O ${k}: blocks intact`);
    const st = await state(pvs, vg);
    // In the test's process (tools/cli.ts main, as `sanbox pvmove`): only the crashing run must be a process of its own.
    const again = await runCliInProcess(st.moving ? ['pvmove', ...devs] : ['pvmove', src, dst, ...devs], { SANBOX_DEVICESFILE: '' });
    t.is(again.code, 0, `resume after crash point ${k}: ${again.stderr}`);
    const end = await state(pvs, vg);
    // One segment, as the uncrashed run leaves (whose segments lvm2 judges): a resumed move merges as well.
    t.deepEqual(end, { les: c.after, segments: 1, moving: false }, `after crash point ${k} and pvmove again`);
    t.deepEqual(await badBlocks(pvs, vg, 'lv'), [], `after crash point ${k} and pvmove again: blocks intact`);
    await toolsClean(t, pvs, vg, `after crash point ${k} and pvmove again`);
  }
  t.true(finished, `a run with no crash point reached finished the move (after ${points} crash points)`);
  t.true(points >= 10, `crash points enumerated: ${points}`);
  t.log(`${points} crash points`);
}

test('pvmove killed before each of its writes and flushes: vgck/pvck clean, lvm2 reads the segments as sanbox does, every block intact, pvmove again finishes', async (t) => {
  await crashAtEveryIo(t, { pvCount: 2, lvArgs: ['-L', `${LV_MIB}m`], timeoutMs: 540_000, srcIdx: 0, dstIdx: 1, before: ['pv0.img'], after: ['pv1.img'] });
});

test('pvmove of one stripe of a 2-stripe LV killed before each of its writes and flushes: vgck/pvck clean, lvm2 reads the segments as sanbox does, every block intact, pvmove again finishes', async (t) => {
  // Two rows (4 extents over 2 stripes): two chunks, the segment split after the first and merged after the second.
  await crashAtEveryIo(t, { pvCount: 3, lvArgs: ['-l', '4', '-i', '2', '-I', '64k'], timeoutMs: 1_200_000, srcIdx: 0, dstIdx: 2, before: ['pv0.img+pv1.img', 'pv0.img+pv1.img'], after: ['pv2.img+pv1.img', 'pv2.img+pv1.img'] });
});
