// The real LVM2 tools judge sanbox's images, and sanbox reads theirs:
// - pvck --dump headers/metadata on sanbox PVs (1 and 2 metadata copies, after every change);
// - pvs/vgs/lvs --segments on loop devices report what `sanbox pvs/vgs/lvs --json` reports;
// - a VG made by pvcreate/vgcreate/lvcreate (several PVs, 2 MiB extents, 2 metadata copies) is
//   read by sanbox, and an lvextend done by sanbox is then seen by the real lvs.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { openDevice } from '../src/disk/index.js';
import { lvmCrc } from '../src/format/lvm/lvm-crc.js';
import { commitContext, lvCreate, pvCreate, vgCreate } from '../src/volume/manager.js';
import { readPv } from '../src/volume/pv.js';
import { attachLoop, detachLoop, lvm, lvmReport, runTool, sanboxCli, warnings } from './helpers/lvm-real.js';
import { ownLockDir, readFileAt, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const MiB = 1024 * 1024;

/** A VG name no other test run on this machine uses (the real tools see every loop device). */
const uniq = (p: string): string => `${p}${process.pid}${Math.floor(Math.random() * 1e6)}`;

async function sanbox(t: import('ava').ExecutionContext, args: string[], devices: string[]): Promise<string> {
  const r = await sanboxCli(t, args, { SANBOX_DEVICES: devices.join(',') });
  t.is(r.code, 0, `sanbox ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** The committed text in every mda of an image, read by sanbox. */
async function committedTexts(img: string): Promise<({ text: string; seqno: number } | undefined)[]> {
  const dev = await openDevice(img, { readOnly: true, guard: 'none' });
  try {
    const pv = await readPv(dev);
    return (pv?.mdas ?? []).map((m) => m.committed && { text: m.committed.text, seqno: m.committed.parsed.vg.seqno });
  } finally {
    await dev.close();
  }
}

/** pvck on every mda of `img`: no CHECK line, exit 0, the text it extracts is sanbox's text. */
async function pvckAgrees(t: import('ava').ExecutionContext, img: string, dir: string, step: string): Promise<void> {
  const texts = await committedTexts(img);
  const h = await runTool('pvck', ['--dump', 'headers', img]);
  t.is(h.code, 0, `${step}: pvck headers ${img}: ${h.stderr}`);
  t.false(/CHECK/.test(h.stdout + h.stderr), `${step}: pvck headers ${img}:\n${h.stdout}${h.stderr}`);
  t.deepEqual(warnings(h.stderr), []);
  for (const [i, c] of texts.entries()) {
    if (!c) {
      t.false(/metadata text at/.test(h.stdout), `${step}: an orphan mda has no text`);
      continue;
    }
    const { text, seqno } = c;
    t.regex(h.stdout, new RegExp(`metadata text at \\d+ crc 0x[0-9a-f]+ # vgname \\S+ seqno ${seqno}`), `${step}: seqno ${seqno} in mda ${i + 1}`);
    const out = path.join(dir, `dump-${path.basename(img)}-${i}-seqno${seqno}.txt`);
    fs.rmSync(out, { force: true });
    const m = await runTool('pvck', ['--dump', 'metadata', '--settings', `mda_num=${i + 1}`, '-f', out, img]);
    t.is(m.code, 0, `${step}: pvck metadata ${img} mda ${i + 1}: ${m.stderr}`);
    t.is(fs.readFileSync(out, 'latin1'), text, `${step}: pvck's text for ${img} mda ${i + 1} is sanbox's`);
  }
}

test('sanbox VGs with 1 and 2 metadata copies: pvck finds no CHECK and prints sanbox\'s text after every change; real pvs/vgs/lvs agree with sanbox', async (t) => {
  const dir = tempDir(t);
  const imgs = ['a', 'b', 'c'].map((n) => path.join(dir, `${n}.img`));
  for (const img of imgs) fs.writeFileSync(img, ''), fs.truncateSync(img, 64 * MiB);
  const vg = uniq('sbx');
  await sanbox(t, ['pvcreate', imgs[0]!], []);
  await sanbox(t, ['pvcreate', '--metadatacopies', '2', imgs[1]!], []);
  await sanbox(t, ['pvcreate', '--metadatasize', '60k', '--dataalignment', '64k', imgs[2]!], []);
  for (const img of imgs) await pvckAgrees(t, img, dir, 'orphan');
  const steps: [string, string[]][] = [
    ['vgcreate', ['vgcreate', '-s', '2m', vg, ...imgs]],
    ['lvcreate linear', ['lvcreate', '-n', 'lin', '-L', '40m', vg]],
    ['lvcreate striped', ['lvcreate', '-n', 'str', '-l', '6', '-i', '3', '-I', '128k', vg]],
    ['lvextend striped', ['lvextend', '-l', '+3', `${vg}/str`]],
    ['lvreduce striped', ['lvreduce', '-l', '-6', `${vg}/str`]],
    ['lvcreate striped 2', ['lvcreate', '-n', 'str2', '-L', '8m', '-i', '2', '-I', '64k', vg]],
    ['lvextend', ['lvextend', '-L', '+30m', `${vg}/lin`]],
    ['lvcreate spanning', ['lvcreate', '-n', 'big', '-l', '45', vg]],
    ['lvreduce', ['lvreduce', '-l', '-7', `${vg}/big`]],
    ['lvremove', ['lvremove', `${vg}/str`]],
    ['lvrename', ['lvrename', `${vg}/big`, 'huge']],
  ];
  for (const [step, args] of steps) {
    await sanbox(t, args, imgs);
    for (const img of imgs) await pvckAgrees(t, img, dir, step);
  }

  // Real tools on loop devices report what sanbox reports.
  const loops: string[] = [];
  for (const img of imgs) loops.push(await attachLoop(t, img));
  const loopToImg = new Map(loops.map((l, i) => [l, imgs[i]!]));
  const pvFields = ['pv_name', 'vg_name', 'pv_uuid', 'pv_size', 'pv_free', 'pe_start', 'pv_pe_count', 'pv_pe_alloc_count', 'dev_size', 'pv_mda_count'];
  const realPvs = await lvmReport(t, 'pvs', loops, pvFields);
  const ourPvs = JSON.parse(await sanbox(t, ['pvs', '--json', ...imgs], [])).pv as Record<string, unknown>[];
  t.is(realPvs.length, 3);
  for (const r of realPvs) {
    const o = ourPvs.find((x) => x.pv_uuid === r.pv_uuid)!;
    t.truthy(o, `sanbox lists PV ${r.pv_uuid}`);
    t.is(o.pv_name, loopToImg.get(r.pv_name!));
    for (const f of pvFields.slice(1)) t.is(String(o[f]), r[f], `pv ${f}`);
  }
  const vgFields = ['vg_name', 'vg_uuid', 'vg_size', 'vg_free', 'vg_seqno', 'vg_extent_size', 'vg_extent_count', 'vg_free_count', 'pv_count', 'lv_count'];
  const realVgs = await lvmReport(t, 'vgs', loops, vgFields, [vg]);
  const ourVgs = JSON.parse(await sanbox(t, ['vgs', '--json', vg], imgs)).vg as Record<string, unknown>[];
  t.is(realVgs.length, 1);
  for (const f of vgFields) t.is(String(ourVgs[0]![f]), realVgs[0]![f], `vg ${f}`);
  t.is(realVgs[0]!.vg_seqno, String(steps.length));
  const segFields = ['lv_name', 'lv_uuid', 'segtype', 'stripes', 'stripe_size', 'seg_start_pe', 'seg_size', 'seg_size_pe', 'seg_pe_ranges'];
  const realSegs = await lvmReport(t, 'lvs', loops, segFields, ['--segments', vg]);
  const ourSegs = JSON.parse(await sanbox(t, ['lvs', '--segments', '--json', vg], imgs)).seg as Record<string, unknown>[];
  t.is(ourSegs.length, realSegs.length);
  const key = (r: Record<string, unknown>): string => `${r.lv_name}:${r.seg_start_pe}`;
  for (const r of realSegs) {
    const o = ourSegs.find((x) => key(x) === key(r))!;
    t.truthy(o, `segment ${key(r)}`);
    for (const f of segFields) {
      const real = f === 'seg_pe_ranges' ? r[f]!.replace(/\/dev\/loop\d+/g, (l) => loopToImg.get(l)!) : r[f];
      t.is(String(o[f]), real, `${key(r)} ${f}`);
    }
  }
  const ck = await lvm('vgck', loops, [vg]);
  t.is(ck.code, 0, ck.stderr);
  t.deepEqual(warnings(ck.stderr + ck.stdout), []);

  // vgremove leaves orphans the real tools accept.
  await sanbox(t, ['vgremove', '--force', vg], imgs);
  const orphans = await lvmReport(t, 'pvs', loops, ['pv_name', 'vg_name', 'pv_uuid']);
  t.deepEqual(orphans.map((r) => r.vg_name), ['', '', '']);
});

test('a VG made by the real pvcreate/vgcreate/lvcreate (3 PVs, 2 MiB extents, 2 metadata copies) is read by sanbox; sanbox lvextend is seen by the real lvs', async (t) => {
  const dir = tempDir(t);
  const imgs = ['p', 'q', 'r'].map((n) => path.join(dir, `${n}.img`));
  for (const img of imgs) fs.writeFileSync(img, ''), fs.truncateSync(img, 48 * MiB);
  const loops: string[] = [];
  for (const img of imgs) loops.push(await attachLoop(t, img));
  const loopToImg = new Map(loops.map((l, i) => [l, imgs[i]!]));
  const vg = uniq('real');
  const ok = async (cmd: string, args: string[]): Promise<void> => {
    const r = await lvm(cmd, loops, args);
    t.is(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  };
  await ok('pvcreate', ['--metadatacopies', '2', ...loops]);
  await ok('vgcreate', ['-s', '2M', vg, ...loops]);
  await ok('lvcreate', ['--driverloaded', 'n', '-an', '-Zn', '-l', '30', '-n', 'span', vg]); // > one PV's 22 extents
  await ok('lvcreate', ['--driverloaded', 'n', '-an', '-Zn', '-l', '6', '-i', '2', '-I', '64k', '-n', 'striped', vg]);
  await ok('lvcreate', ['--driverloaded', 'n', '-an', '-Zn', '-L', '6m', '-n', 'small', vg]);

  const segFields = ['lv_name', 'lv_uuid', 'segtype', 'stripes', 'stripe_size', 'seg_start_pe', 'seg_size', 'seg_size_pe', 'seg_pe_ranges'];
  const compare = async (when: string): Promise<void> => {
    const realSegs = await lvmReport(t, 'lvs', loops, segFields, ['--segments', vg]);
    const ourSegs = JSON.parse(await sanbox(t, ['lvs', '--segments', '--json', vg], imgs)).seg as Record<string, unknown>[];
    t.is(ourSegs.length, realSegs.length, when);
    for (const r of realSegs) {
      const o = ourSegs.find((x) => x.lv_name === r.lv_name && String(x.seg_start_pe) === r.seg_start_pe);
      if (!o) {
        t.fail(`${when}: sanbox lacks segment ${r.lv_name}:${r.seg_start_pe}`);
        continue;
      }
      for (const f of segFields) {
        const real = f === 'seg_pe_ranges' ? r[f]!.replace(/\/dev\/loop\d+/g, (l) => loopToImg.get(l)!) : r[f];
        t.is(String(o[f]), real, `${when}: ${r.lv_name}:${r.seg_start_pe} ${f}`);
      }
    }
    const vgFields = ['vg_name', 'vg_uuid', 'vg_size', 'vg_free', 'vg_seqno', 'vg_extent_size', 'vg_extent_count', 'vg_free_count', 'pv_count', 'lv_count'];
    const realVg = (await lvmReport(t, 'vgs', loops, vgFields, [vg]))[0]!;
    const ourVg = (JSON.parse(await sanbox(t, ['vgs', '--json', vg], imgs)).vg as Record<string, unknown>[])[0]!;
    for (const f of vgFields) t.is(String(ourVg[f]), realVg[f], `${when}: vg ${f}`);
    const pvFields = ['pv_uuid', 'vg_name', 'pv_size', 'pv_free', 'pe_start', 'pv_pe_count', 'pv_mda_count'];
    const realPvs = await lvmReport(t, 'pvs', loops, pvFields);
    const ourPvs = JSON.parse(await sanbox(t, ['pvs', '--json'], imgs)).pv as Record<string, unknown>[];
    for (const r of realPvs) {
      const o = ourPvs.find((x) => x.pv_uuid === r.pv_uuid)!;
      for (const f of pvFields) t.is(String(o[f]), r[f], `${when}: pv ${f}`);
    }
  };
  await compare('made by lvm2');

  // sanbox changes the real VG; the real tools see the change and find nothing wrong.
  await sanbox(t, ['lvextend', '-l', '+5', `${vg}/small`], imgs);
  await sanbox(t, ['lvcreate', '-n', 'bysanbox', '-L', '4m', vg], imgs);
  await compare('after sanbox lvextend + lvcreate');
  const sizes = await lvmReport(t, 'lvs', loops, ['lv_name', 'lv_size'], [vg]);
  t.is(sizes.find((r) => r.lv_name === 'small')!.lv_size, String(8 * 2 * MiB));
  for (const img of imgs) {
    const h = await runTool('pvck', ['--dump', 'headers', img]);
    t.is(h.code, 0);
    t.false(/CHECK/.test(h.stdout + h.stderr), h.stdout);
    t.is((h.stdout.match(/# vgname \S+ seqno 6/g) ?? []).length, 2, `both mdas of ${img} at seqno 6`);
  }
  const ck = await lvm('vgck', loops, [vg]);
  t.is(ck.code, 0, ck.stderr);
  t.deepEqual(warnings(ck.stderr + ck.stdout), []);
  // And lvm2 can keep writing after sanbox.
  const more = await lvm('lvcreate', loops, ['--driverloaded', 'n', '-an', '-Zn', '-l', '1', '-n', 'after', vg]);
  t.is(more.code, 0, more.stderr);
  await compare('lvm2 writes after sanbox');
});

test('vgextend, vgreduce and vgdisplay by sanbox: the real pvs/vgs/vgck agree', async (t) => {
  const dir = tempDir(t);
  const imgs = ['x', 'y'].map((n) => path.join(dir, `${n}.img`));
  for (const img of imgs) fs.writeFileSync(img, ''), fs.truncateSync(img, 32 * MiB);
  const [x, y] = imgs as [string, string];
  const vg = uniq('ext');
  await sanbox(t, ['pvcreate', x, y], []);
  await sanbox(t, ['vgcreate', vg, x], []);
  await sanbox(t, ['vgextend', vg, y], [x]);
  await sanbox(t, ['lvcreate', '-n', 'wide', '-l', '10', vg], imgs); // 7 extents per PV: spans both
  const loops: string[] = [];
  for (const img of imgs) loops.push(await attachLoop(t, img));
  let real = (await lvmReport(t, 'vgs', loops, ['pv_count', 'lv_count', 'vg_extent_count', 'vg_free_count', 'vg_seqno'], [vg]))[0]!;
  t.deepEqual(real, { pv_count: '2', lv_count: '1', vg_extent_count: '14', vg_free_count: '4', vg_seqno: '3' });
  const display = await sanbox(t, ['vgdisplay', vg], imgs);
  t.regex(display, /VG Name\s+ext/);
  t.regex(display, /Metadata Sequence No\s+3\n/);
  t.regex(display, /Total PE\s+14\n/);
  t.regex(display, /Alloc PE \/ Size\s+10 \/ 40\.00 MiB\n/);
  // vgreduce of a PV that holds extents is refused; after lvremove it works.
  const busy = await sanboxCli(t, ['vgreduce', vg, y, '--devices', imgs.join(',')]);
  t.is(busy.code, 1);
  t.regex(busy.stderr, /still holds extents of wide/);
  await sanbox(t, ['lvremove', `${vg}/wide`], imgs);
  await sanbox(t, ['vgreduce', vg, y], imgs);
  real = (await lvmReport(t, 'vgs', loops, ['pv_count', 'lv_count', 'vg_extent_count', 'vg_free_count', 'vg_seqno'], [vg]))[0]!;
  t.deepEqual(real, { pv_count: '1', lv_count: '0', vg_extent_count: '7', vg_free_count: '7', vg_seqno: '5' });
  const pvs = await lvmReport(t, 'pvs', loops, ['pv_name', 'vg_name']);
  // pvs sorts by device name, and loop numbers are handed out in any order: compare per device.
  const vgOf = new Map(pvs.map((p) => [p.pv_name, p.vg_name]));
  t.deepEqual(loops.map((l) => vgOf.get(l)), [vg, '']);
  const ck = await lvm('vgck', loops, [vg]);
  t.is(ck.code, 0, ck.stderr);
  t.deepEqual(warnings(ck.stderr + ck.stdout), []);
  for (const img of imgs) {
    const h = await runTool('pvck', ['--dump', 'headers', img]);
    t.false(/CHECK/.test(h.stdout + h.stderr), h.stdout);
  }
});

test('4096-byte-sector images: sanbox PVs pass pvck and the real pvs/lvs on a 4K loop device; an lvm2 PV on a 4K loop is read by sanbox', async (t) => {
  const dir = tempDir(t);
  const [mine, theirs] = ['mine', 'theirs'].map((n) => path.join(dir, `${n}.img`)) as [string, string];
  for (const img of [mine, theirs]) {
    const r = await sanboxCli(t, ['disk', 'create', img, '--size', '40M', '--sector-size', '4096']);
    t.is(r.code, 0, r.stderr);
  }
  const vg = uniq('k4a');
  await sanbox(t, ['pvcreate', '--metadatacopies', '2', mine], []);
  await sanbox(t, ['vgcreate', vg, mine], []);
  await sanbox(t, ['lvcreate', '-n', 'l', '-L', '12m', vg], [mine]);
  const h = await runTool('pvck', ['--dump', 'headers', mine]);
  t.is(h.code, 0);
  t.false(/CHECK/.test(h.stdout + h.stderr), h.stdout);
  const loop = await attachLoop(t, mine, ['-b', '4096']);
  const lvs = await lvmReport(t, 'lvs', [loop], ['lv_name', 'lv_size', 'seg_pe_ranges'], [vg]);
  t.deepEqual(lvs, [{ lv_name: 'l', lv_size: String(12 * MiB), seg_pe_ranges: `${loop}:0-2` }]);

  const loop2 = await attachLoop(t, theirs, ['-b', '4096']);
  const vg2 = uniq('k4b');
  for (const [cmd, args] of [['pvcreate', [loop2]], ['vgcreate', ['-s', '1M', vg2, loop2]], ['lvcreate', ['--driverloaded', 'n', '-an', '-Zn', '-l', '5', '-n', 'r', vg2]]] as [string, string[]][]) {
    const r = await lvm(cmd, [loop2], args);
    t.is(r.code, 0, `${cmd}: ${r.stderr}`);
  }
  const ours = JSON.parse(await sanbox(t, ['lvs', '--segments', '--json', vg2], [theirs])).seg;
  t.deepEqual(ours.map((r: Record<string, unknown>) => [r.lv_name, r.seg_size, r.seg_pe_ranges]), [['r', 5 * MiB, `${theirs}:0-4`]]);
});

test('keys sanbox does not model survive a sanbox rewrite of lvm2 metadata (tags, read_ahead, autoactivation flags); max_lv is honoured', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'tags.img');
  fs.writeFileSync(img, '');
  fs.truncateSync(img, 32 * MiB);
  const loop = await attachLoop(t, img);
  const vg = uniq('tag');
  for (const [cmd, args] of [
    ['pvcreate', [loop]],
    ['vgcreate', ['--addtag', 'vgtag1', '--setautoactivation', 'n', '--maxlogicalvolumes', '1', vg, loop]],
    ['lvcreate', ['--driverloaded', 'n', '-an', '-Zn', '-l', '2', '--addtag', 'lvtag', '--readahead', '256', '-n', 'keep', vg]],
  ] as [string, string[]][]) {
    const r = await lvm(cmd, [loop], args);
    t.is(r.code, 0, `${cmd}: ${r.stderr}`);
  }
  const fields = ['vg_tags', 'lv_tags', 'lv_read_ahead', 'vg_autoactivation', 'lv_uuid', 'lv_size'];
  const before = await lvmReport(t, 'lvs', [loop], fields, [vg]);
  await sanbox(t, ['lvextend', '-l', '+1', `${vg}/keep`], [img]);
  const after = await lvmReport(t, 'lvs', [loop], fields, [vg]);
  t.is(after[0]!.lv_size, String(3 * 4 * MiB));
  t.deepEqual({ ...after[0], lv_size: '' }, { ...before[0], lv_size: '' });
  t.is(after[0]!.vg_tags, 'vgtag1');
  t.is(after[0]!.lv_tags, 'lvtag');
  // max_lv = 1 set by the real vgcreate is honoured.
  const more = await sanboxCli(t, ['lvcreate', '-n', 'second', '-l', '1', vg, '--devices', img]);
  t.is(more.code, 1);
  t.regex(more.stderr, /already holds its maximum of 1 logical volumes \(max_lv\)/);
});

test('sanbox pvcreate lays a PV out byte for byte like the real pvcreate (label sector and mda headers, for several options and sizes)', async (t) => {
  const dir = tempDir(t);
  const cases: [string, string[]][] = [
    ['64M', []],
    ['64M', ['--metadatacopies', '2']],
    ['20000k', ['--metadatacopies', '2']],
    ['33M', ['--metadatacopies', '2', '--metadatasize', '60k', '--dataalignment', '64k']],
    ['64M', ['--metadatacopies', '2', '--metadatasize', '3m']],
    ['20000k', ['--metadatacopies', '2', '--dataalignment', '4m']],
    ['64M', ['--metadatacopies', '0']],
  ];
  for (const [i, [size, opts]] of cases.entries()) {
    const real = path.join(dir, `real${i}.img`);
    const ours = path.join(dir, `ours${i}.img`);
    for (const img of [real, ours]) fs.writeFileSync(img, ''), fs.truncateSync(img, size.endsWith('k') ? Number(size.slice(0, -1)) * 1024 : Number(size.slice(0, -1)) * MiB);
    const loop = await attachLoop(t, real);
    const r = await lvm('pvcreate', [loop], [...opts, loop]);
    t.is(r.code, 0, r.stderr);
    await detachLoop(loop);
    await sanbox(t, ['pvcreate', ...opts, ours], []);
    const what = `${size} ${opts.join(' ')}`;
    // Label sector: identical once the random PV uuid is the same (and the CRC recomputed).
    const labelOf = (f: string): Buffer => readFileAt(f, 512, 512);
    const mine = labelOf(ours);
    const theirs = labelOf(real);
    theirs.copy(mine, 32, 32, 64);
    mine.writeUInt32LE(lvmCrc(mine, undefined, 20, 512), 16);
    t.true(mine.equals(theirs), `label sector of ${what}`);
    // Every mda_header: byte-identical (no uuid in it).
    const dev = await openDevice(ours, { readOnly: true, guard: 'none' });
    const pv = (await readPv(dev))!;
    await dev.close();
    t.is(pv.mdas.length, opts.includes('0') ? 0 : opts.includes('2') ? 2 : 1, what);
    for (const m of pv.mdas) t.true(readFileAt(ours, m.area.offsetBytes, 512).equals(readFileAt(real, m.area.offsetBytes, 512)), `mda_header at ${m.area.offsetBytes} of ${what}`);
  }
});

test('metadata that wraps around the end of a small circular buffer: pvck reads the wrapped copy, the real lvs sees every LV', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'wrap.img');
  fs.writeFileSync(img, '');
  fs.truncateSync(img, 64 * MiB);
  const vg = uniq('wrap');
  await pvCreate([img], { metadataSizeBytes: 32 * 1024, dataAlignmentBytes: 64 * 1024 });
  await vgCreate([img], [img], vg, 2048, commitContext('sanbox test'));
  let wrapped = 0;
  for (let i = 0; i < 40 && wrapped < 2; i++) {
    await lvCreate([img], vg, `lv${i}`, { size: { kind: 'extents', sign: '', extents: 1 } }, commitContext('sanbox test'));
    const dev = await openDevice(img, { readOnly: true, guard: 'none' });
    const m = (await readPv(dev))!.mdas[0]!;
    await dev.close();
    t.is(m.area.sizeBytes, 61440);
    if (m.header.locns[0].offsetBytes + m.header.locns[0].sizeBytes > m.area.sizeBytes) {
      wrapped++;
      await pvckAgrees(t, img, dir, `wrapped commit ${i}`);
    }
  }
  t.true(wrapped >= 1, 'some commit wrapped around the buffer end');
  await pvckAgrees(t, img, dir, 'final');
  const loop = await attachLoop(t, img);
  const lvs = await lvmReport(t, 'lvs', [loop], ['lv_name'], [vg]);
  const ours = JSON.parse(await sanbox(t, ['lvs', '--json', vg], [img])).lv as { lv_name: string }[];
  t.deepEqual(lvs.map((l) => l.lv_name).sort(), ours.map((l) => l.lv_name).sort());
  t.true(lvs.length > 10);
});
