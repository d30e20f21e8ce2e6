// pvdisplay, vgdisplay and lvdisplay --maps judged by lvm2, and the losetup line of
// `lvdisplay --maps`: running exactly what it prints gives a loop device that the real
// fsck.ocfs2 and debugfs.ocfs2 accept as the ocfs2 volume sanbox made on the LV.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { attachLoop, lvm, sanboxCli } from './helpers/lvm-real.js';
import { debugfs, fsckOk, parseStats } from './helpers/ocfs2-oracle.js';
import { ownLockDir, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const MiB = 1024 * 1024;
const uniq = (p: string): string => `${p}${process.pid}${Math.floor(Math.random() * 1e6)}`;

async function ok(t: ExecutionContext, args: string[], devices: string[]): Promise<string> {
  const r = await sanboxCli(t, args, { SANBOX_DEVICES: devices.join(',') });
  t.is(r.code, 0, `sanbox ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The "Host device" lines of lvdisplay --maps: the losetup arguments after `losetup`. */
function hostLines(out: string): string[][] {
  return [...out.matchAll(/^ {4}Host device\tlosetup (.*)$/gm)].map((m) => m[1]!.split(' '));
}

test('lvdisplay --maps prints a losetup line per linear segment; run as printed, fsck.ocfs2 -fn and debugfs.ocfs2 accept the sanbox-made volume on it', async (t) => {
  const dir = tempDir(t);
  const imgs = ['a', 'b'].map((n) => path.join(dir, `${n}.img`));
  for (const img of imgs) fs.writeFileSync(img, ''), fs.truncateSync(img, 160 * MiB);
  const vg = uniq('disp');
  await ok(t, ['pvcreate', ...imgs], imgs);
  await ok(t, ['vgcreate', vg, ...imgs], imgs);
  // The LV that gets the filesystem starts past other LVs' extents, so its offset is not pe_start.
  await ok(t, ['lvcreate', '-n', 'first', '-L', '12m', vg], imgs);
  await ok(t, ['lvcreate', '-n', 'vol', '-L', '96m', vg], imgs);
  await ok(t, ['mkfs', `${vg}/vol`, '--slots', '2', '--label', 'bylosetup'], imgs);

  const maps = await ok(t, ['lvdisplay', '--maps', `${vg}/vol`], imgs);
  const lines = hostLines(maps);
  t.is(lines.length, 1, maps);
  const args = lines[0]!;
  t.deepEqual(args.slice(0, 2), ['--find', '--show']);
  t.deepEqual(args.slice(2), ['--offset', String(MiB + 3 * 4 * MiB), '--sizelimit', String(96 * MiB), imgs[0]!], 'offset = pe_start + 3 extents of 4 MiB');
  const loop = await attachLoop(t, args.at(-1)!, args.slice(2, -1));
  const fsck = await fsckOk(loop);
  t.true(fsck.ok, fsck.out);
  const stats = parseStats(await debugfs(loop, 'stats'));
  t.is(stats.get('Label'), 'bylosetup');

  // A striped LV has no single range; a two-piece LV gets one line per piece, and says so.
  await ok(t, ['lvcreate', '-n', 'str', '-l', '4', '-i', '2', vg], imgs);
  const str = await ok(t, ['lvdisplay', '-m', `${vg}/str`], imgs);
  t.deepEqual(hostLines(str), []);
  t.regex(str, /\(striped segments interleave PVs: no single loop device holds them\)/);
  await ok(t, ['lvextend', '-l', '+2', `${vg}/first`], imgs);
  const two = await ok(t, ['lvdisplay', '-m', `${vg}/first`], imgs);
  t.is(hostLines(two).length, 2, two);
  t.regex(two, /\(2 pieces: each loop device above holds one of them, not the whole LV\)/);
  const json = JSON.parse(await ok(t, ['lvdisplay', '-m', '--json', `${vg}/first`], imgs)) as { lv: { host_ranges: { offsetBytes: number; sizeBytes: number }[] }[] };
  t.deepEqual(json.lv[0]!.host_ranges.map((h) => h.sizeBytes), [12 * MiB, 8 * MiB]);
});

test('pvdisplay [-m], vgdisplay and lvdisplay --maps print what the real tools print (sanbox-only lines aside)', async (t) => {
  const dir = tempDir(t);
  const imgs = ['p', 'q', 'o'].map((n) => path.join(dir, `${n}.img`));
  for (const img of imgs) fs.writeFileSync(img, ''), fs.truncateSync(img, 64 * MiB);
  const vg = uniq('dsp');
  await ok(t, ['pvcreate', ...imgs], imgs);
  await ok(t, ['vgcreate', '-s', '2m', vg, imgs[0]!, imgs[1]!], imgs);
  await ok(t, ['lvcreate', '-n', 'lin', '-L', '10m', vg], imgs);
  await ok(t, ['lvcreate', '-n', 'str', '-l', '6', '-i', '2', '-I', '128k', vg], imgs);
  await ok(t, ['lvextend', '-l', '+3', `${vg}/lin`], imgs);
  await ok(t, ['lvcreate', '-n', 'full', '-l', '100%FREE', vg], imgs);
  const loops: string[] = [];
  for (const img of imgs) loops.push(await attachLoop(t, img));
  const byLoop = new Map(loops.map((l, i) => [l, imgs[i]!]));
  const fromLoops = (s: string): string => s.replace(/\/dev\/loop\d+/g, (l) => byLoop.get(l) ?? l);
  // Lines only sanbox prints: the LV's kernel state (lvm2 without device-mapper omits it), host
  // ranges and their notes.
  const sanboxOnly = (s: string): string => s.split('\n').filter((l) => !/^ {2}LV Status|^ {4}Host device\t|^ {2}\(/.test(l)).join('\n');
  const cases: [string, string[], string[]][] = [
    ['vgdisplay', [vg], [vg]],
    ['lvdisplay', ['--maps', vg], ['--driverloaded', 'n', '--maps', vg]],
    ['lvdisplay', [`${vg}/lin`], ['--driverloaded', 'n', `${vg}/lin`]],
    ['pvdisplay', [imgs[0]!], [loops[0]!]],
    ['pvdisplay', ['-m', imgs[1]!], ['-m', loops[1]!]],
    ['pvdisplay', [imgs[2]!], [loops[2]!]],
  ];
  for (const [cmd, ours, theirs] of cases) {
    const real = await lvm(cmd, loops, theirs);
    t.is(real.code, 0, `${cmd}: ${real.stderr}`);
    const mine = await ok(t, [cmd, ...ours], imgs);
    t.is(sanboxOnly(mine), fromLoops(real.stdout), `${cmd} ${ours.join(' ')}`);
  }
});

test('pvdisplay and lvdisplay errors: one line, exit 1', async (t) => {
  const dir = tempDir(t);
  const [pv, blank] = ['pv.img', 'blank.img'].map((n) => path.join(dir, n)) as [string, string];
  for (const img of [pv, blank]) fs.writeFileSync(img, ''), fs.truncateSync(img, 16 * MiB);
  const vg = uniq('derr');
  await ok(t, ['pvcreate', pv], [pv]);
  await ok(t, ['vgcreate', vg, pv], [pv]);
  const cases: [string[], RegExp][] = [
    [['pvdisplay', blank], new RegExp(`^sanbox: ${blank}: not an LVM physical volume \\(no label in sectors 0-3\\)\\n$`)],
    [['lvdisplay', `${vg}/nope`], new RegExp(`^sanbox: logical volume ${vg}/nope not found\\n$`)],
    [['lvdisplay', 'novg'], /^sanbox: volume group "novg" not found on /],
  ];
  for (const [args, msg] of cases) {
    const r = await sanboxCli(t, args, { SANBOX_DEVICES: [pv, blank].join(',') });
    t.is(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, msg);
    t.is(r.stderr.split('\n').filter(Boolean).length, 1);
  }
});
