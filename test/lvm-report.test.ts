// lvm2's reports, judged by lvm2: the same VG (made by sanbox) is reported by the real
// pvs/vgs/lvs through loop devices and by `sanbox pvs/vgs/lvs` on the image files, for many -o
// lists, sort orders, units and output forms (JSON, --separator with and without headings, the
// aligned default), compared field by field. Plus the units formatter against values read off
// lvm2, and the one-line errors of the report options.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { formatReportSize, twoDecimals } from '../src/volume/units-format.js';
import { attachLoop, lvm, sanboxCli } from './helpers/lvm-real.js';
import { ownLockDir, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const MiB = 1024 * 1024;
const uniq = (p: string): string => `${p}${process.pid}${Math.floor(Math.random() * 1e6)}`;

interface Fixture {
  imgs: string[];
  loops: string[];
  vg: string;
  /** Real output with /dev/loopN replaced by the image each is attached to. */
  fromLoops: (text: string) => string;
}

/** 3 PVs (one with 2 metadata copies, one not 1 MiB-aligned), a VG with linear, striped and multi-segment LVs, made by sanbox (or by `byLvm2`), attached to loop devices. */
async function fixture(t: ExecutionContext, byLvm2?: (loops: string[], vg: string) => Promise<void>): Promise<Fixture> {
  const dir = tempDir(t);
  const imgs = ['a', 'b', 'c'].map((n) => path.join(dir, `${n}.img`));
  const sizes = [64 * MiB, 48 * MiB, 40 * MiB + 7 * 512];
  for (const [i, img] of imgs.entries()) fs.writeFileSync(img, ''), fs.truncateSync(img, sizes[i]!);
  const vg = uniq('rep');
  const ok = async (args: string[]): Promise<void> => {
    const r = await sanboxCli(t, args, { SANBOX_DEVICES: imgs.join(',') });
    t.is(r.code, 0, `sanbox ${args.join(' ')}: ${r.stderr}`);
  };
  if (!byLvm2) {
    await ok(['pvcreate', imgs[0]!, imgs[2]!]);
    await ok(['pvcreate', '--metadatacopies', '2', imgs[1]!]);
    await ok(['vgcreate', '-s', '2m', vg, imgs[0]!, imgs[1]!]);
    await ok(['lvcreate', '-n', 'lin', '-L', '10m', vg]);
    await ok(['lvcreate', '-n', 'str', '-l', '6', '-i', '2', '-I', '128k', vg]);
    await ok(['lvcreate', '-n', 'span', '-l', '30', vg]);
    await ok(['lvextend', '-l', '+4', `${vg}/lin`]);
    await ok(['lvcreate', '-n', 'with-dash', '-L', '2m', vg]);
  }
  const loops: string[] = [];
  for (const img of imgs) loops.push(await attachLoop(t, img));
  // Or the same kind of VG made by the real tools on the loop devices.
  await byLvm2?.(loops, vg);
  // sanbox sees each image through a link named like its loop device, so sorting by PV name
  // (lvm2's default for pvs) gives the same order on both sides.
  fs.mkdirSync(path.join(dir, 'dev'));
  const links = loops.map((l, i) => {
    const link = path.join(dir, 'dev', path.basename(l));
    fs.symlinkSync(imgs[i]!, link);
    return link;
  });
  const byLoop = new Map(loops.map((l, i) => [l, links[i]!]));
  return { imgs: links, loops, vg, fromLoops: (text) => text.replace(/\/dev\/loop\d+/g, (l) => byLoop.get(l) ?? l) };
}

/** The real tool's output, loop devices renamed to images, and lv_attr's unknown-state X's as sanbox's '-' (lvm2 without device-mapper cannot tell; sanbox activates nothing in the kernel). */
async function real(t: ExecutionContext, f: Fixture, cmd: 'pvs' | 'vgs' | 'lvs', args: string[]): Promise<string> {
  const r = await lvm(cmd, f.loops, [...(cmd === 'lvs' ? ['--driverloaded', 'n'] : []), ...args]);
  t.is(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
  return f.fromLoops(r.stdout).replace(/-([rw])([a-z-])([a-z-])XX/g, '-$1$2$3--');
}

async function ours(t: ExecutionContext, f: Fixture, cmd: 'pvs' | 'vgs' | 'lvs', args: string[]): Promise<string> {
  const r = await sanboxCli(t, [cmd, ...args], { SANBOX_DEVICES: f.imgs.join(',') });
  t.is(r.code, 0, `sanbox ${cmd} ${args.join(' ')}: ${r.stderr}`);
  t.is(r.stderr, '', `sanbox ${cmd} ${args.join(' ')} prints no warning`);
  return r.stdout;
}

type Rows = Record<string, string>[];
function jsonRows(text: string, key: string): Rows {
  const parsed = JSON.parse(text) as { report: Record<string, Rows>[] };
  return parsed.report[0]![key]!;
}

/** The -o lists (≥ 10; any case, prefixes left out, several -o), with a sort order for some, each run by both on the whole device set. */
const LISTS: { cmd: 'pvs' | 'vgs' | 'lvs'; key: string; args: string[] }[] = [
  { cmd: 'pvs', key: 'pv', args: [] },
  { cmd: 'pvs', key: 'pv', args: ['-o', 'pv_name,pv_uuid,dev_size,pe_start,pv_used,pv_pe_count,pv_pe_alloc_count,pv_mda_count,pv_mda_used_count,pv_mda_size,pv_ext_vsn'] },
  { cmd: 'pvs', key: 'pv', args: ['-o', '+pv_allocatable,pv_exported,pv_missing,pv_in_use,pv_ba_start,pv_ba_size,pv_tags,pv_duplicate'] },
  { cmd: 'pvs', key: 'pv', args: ['-o', 'pv_name,vg_name,vg_size,vg_extent_size,pv_free', '-O', '-pv_free,pv_name'] },
  { cmd: 'vgs', key: 'vg', args: [] },
  { cmd: 'vgs', key: 'vg', args: ['-o', 'VG_NAME,Size,free', '-o', '+extent_count'] },
  { cmd: 'vgs', key: 'vg', args: ['-o', 'vg_uuid,vg_fmt,vg_attr,vg_permissions,vg_extendable,vg_exported,vg_autoactivation,vg_partial,vg_allocation_policy,vg_clustered,vg_shared'] },
  { cmd: 'vgs', key: 'vg', args: ['-o', 'vg_name,vg_size,vg_free,vg_extent_size,vg_extent_count,vg_free_count,max_lv,max_pv,pv_count,vg_missing_pv_count,lv_count,snap_count,vg_seqno'] },
  { cmd: 'vgs', key: 'vg', args: ['-o', 'vg_name,vg_sysid,vg_systemid,vg_lock_type,vg_lock_args,vg_tags,vg_mda_count,vg_mda_used_count,vg_mda_size,vg_mda_copies'] },
  { cmd: 'lvs', key: 'lv', args: [] },
  { cmd: 'lvs', key: 'lv', args: ['-o', 'lv_uuid,lv_name,lv_full_name,lv_path,lv_dm_path,lv_layout,lv_role,lv_allocation_policy,lv_size,lv_read_ahead,seg_count,lv_tags,lv_lockargs,lv_time,lv_host,lv_attr'] },
  { cmd: 'lvs', key: 'lv', args: ['-o', 'lv_name,segtype,stripes,data_stripes,data_copies,stripe_size,region_size,chunk_size,seg_start,seg_start_pe,seg_size,seg_size_pe,seg_tags,seg_pe_ranges,seg_le_ranges,devices', '-O', 'lv_name,-seg_start'] },
  { cmd: 'lvs', key: 'seg', args: ['--segments'] },
  { cmd: 'lvs', key: 'lv', args: ['-o', 'name,size,uuid', '-O', '-size'] },
  { cmd: 'lvs', key: 'lv', args: ['-o', '+devices', '-o', '-origin,pool_lv'] },
  { cmd: 'lvs', key: 'lv', args: ['-o', 'lv_name,vg_name,vg_extent_count,seg_count', '-O', '-seg_count,lv_name'] },
];

test('lvs VG/LV and pvs IMG report just those, as lvm2 does', async (t) => {
  const f = await fixture(t);
  const args = ['--reportformat', 'json', '-o', 'lv_name,lv_size,devices', `${f.vg}/lin`, `${f.vg}/span`];
  const mine = await ours(t, f, 'lvs', args);
  t.is(mine, await real(t, f, 'lvs', args));
  t.deepEqual(jsonRows(mine, 'lv').map((r) => r.lv_name), ['lin', 'lin', 'span', 'span'], 'one row per segment (devices is a segment field)');
  const json = JSON.parse(await ours(t, f, 'lvs', ['--json', `${f.vg}/lin`])) as { lv: { lv_name: string }[] };
  t.deepEqual(json.lv.map((r) => r.lv_name), ['lin']);
  const missing = await sanboxCli(t, ['lvs', `${f.vg}/nope`], { SANBOX_DEVICES: f.imgs.join(',') });
  t.is(missing.code, 1);
  t.is(missing.stderr, `sanbox: logical volume ${f.vg}/nope not found\n`);
  // pvs IMG: that PV only (lvm2: pvs /dev/loopN).
  const one = ['--reportformat', 'json', '-o', 'pv_name,pv_size,vg_name'];
  t.is(await ours(t, f, 'pvs', [...one, f.imgs[1]!]), await real(t, f, 'pvs', [...one, f.loops[1]!]));
  const blank = path.join(path.dirname(f.imgs[0]!), 'blank.img');
  fs.writeFileSync(blank, '');
  fs.truncateSync(blank, MiB);
  const notPv = await sanboxCli(t, ['pvs', blank], { SANBOX_DEVICES: f.imgs.join(',') });
  t.is(notPv.code, 1);
  t.is(notPv.stderr, `sanbox: ${blank}: not an LVM physical volume (no label in sectors 0-3)\n`);
});

/** Every list of LISTS run by lvm2 and by sanbox on the fixture: the same rows, fields, values and JSON text. */
async function sameReports(t: ExecutionContext, f: Fixture): Promise<void> {
  for (const { cmd, key, args } of LISTS) {
    const what = `${cmd} ${args.join(' ')}`;
    const target = cmd === 'pvs' ? [] : [f.vg];
    const theirText = await real(t, f, cmd, [...args, '--reportformat', 'json', ...target]);
    const myText = await ours(t, f, cmd, [...args, '--reportformat', 'json', ...target]);
    const theirs = jsonRows(theirText, key);
    const mine = jsonRows(myText, key);
    t.true(theirs.length > 0, `${what}: lvm2 reports rows`);
    t.is(mine.length, theirs.length, `${what}: row count`);
    for (const [i, row] of theirs.entries()) {
      t.deepEqual(Object.keys(mine[i] ?? {}), Object.keys(row), `${what}: row ${i} has lvm2's fields in lvm2's order`);
      for (const k of Object.keys(row)) t.is(mine[i]?.[k], row[k], `${what}: row ${i} ${k}`);
    }
    // And the JSON text itself, indentation and separators included, is lvm2's.
    t.is(myText, theirText, `${what}: the JSON text`);
  }
}

test('pvs/vgs/lvs: the real lvm2 and sanbox give the same JSON, field by field, in the same order and in the same text, for 16 -o lists', async (t) => {
  await sameReports(t, await fixture(t));
});

test('the same 16 lists on a VG lvm2 made (2 metadata copies, lvm2\'s own tags and read-ahead): sanbox reports what lvm2 reports', async (t) => {
  const f = await fixture(t, async (loops, vg) => {
    const steps: [string, string[]][] = [
      ['pvcreate', ['--metadatacopies', '2', loops[0]!, loops[1]!]],
      ['pvcreate', [loops[2]!]],
      ['vgcreate', ['-s', '2m', '--addtag', 'made-by-lvm2', vg, loops[0]!, loops[1]!]],
      ['lvcreate', ['--driverloaded', 'n', '-an', '-Zn', '-L', '10m', '-n', 'lin', '--addtag', 'x', vg]],
      ['lvcreate', ['--driverloaded', 'n', '-an', '-Zn', '-l', '6', '-i', '2', '-I', '128k', '-n', 'str', vg]],
      ['lvcreate', ['--driverloaded', 'n', '-an', '-Zn', '-l', '30', '-n', 'span', vg]],
      ['lvextend', ['--driverloaded', 'n', '-l', '+4', `${vg}/lin`]],
      ['lvchange', ['--driverloaded', 'n', '-r', '512', `${vg}/span`]],
    ];
    for (const [cmd, args] of steps) {
      const r = await lvm(cmd, loops, args);
      t.is(r.code, 0, `${cmd} ${args.join(' ')}: ${r.stderr}`);
    }
  });
  await sameReports(t, f);
});

test('--units (binary, SI, sectors, bytes, human), --nosuffix, --separator [--aligned], --noheadings and --binary print what lvm2 prints', async (t) => {
  const f = await fixture(t);
  const forms: { cmd: 'pvs' | 'vgs' | 'lvs'; args: string[] }[] = [];
  for (const u of ['b', 'B', 's', 'S', 'k', 'm', 'g', 't', 'h', 'r', 'K', 'M', 'G', 'H', 'R']) {
    forms.push({ cmd: 'pvs', args: ['--units', u, '--separator', '|', '-o', 'pv_name,dev_size,pv_size,pv_free,pe_start,pv_ba_size,pv_mda_size'] });
  }
  forms.push({ cmd: 'vgs', args: ['--units', 'm', '--nosuffix', '--separator', ',', '--noheadings', '-o', 'vg_name,vg_size,vg_free,vg_extent_size'] });
  forms.push({ cmd: 'vgs', args: ['--units', 'h', '--nosuffix', '--separator', ',', '-o', 'vg_name,vg_size,vg_free,vg_extent_size'] });
  forms.push({ cmd: 'lvs', args: ['--units', 's', '--nosuffix', '--separator', ':', '-o', 'lv_name,lv_size,seg_start,stripe_size,devices'] });
  forms.push({ cmd: 'lvs', args: ['--units', 'k', '--reportformat', 'json', '-o', 'lv_name,lv_size,seg_size'] });
  forms.push({ cmd: 'pvs', args: ['--units', 'b', '--nosuffix', '--reportformat', 'json', '-o', 'pv_name,pv_size,dev_size'] });
  forms.push({ cmd: 'pvs', args: ['--binary', '--reportformat', 'json', '-o', 'pv_name,pv_allocatable,pv_exported,pv_missing,pv_in_use,pv_duplicate'] });
  forms.push({ cmd: 'pvs', args: ['--binary', '--separator', '|', '--aligned', '-o', 'pv_allocatable,pv_exported,pv_size,pe_start,pv_uuid', '-O', 'pv_uuid'] });
  forms.push({ cmd: 'vgs', args: ['--binary', '-o', 'vg_name,vg_extendable,vg_exported,vg_autoactivation,vg_partial,vg_shared,vg_permissions'] });
  for (const { cmd, args } of forms) {
    const target = cmd === 'pvs' ? [] : [f.vg];
    t.is(await ours(t, f, cmd, [...args, ...target]), await real(t, f, cmd, [...args, ...target]), `${cmd} ${args.join(' ')}`);
  }
});

test('the aligned reports: lvm2\'s headings, values and column widths', async (t) => {
  const f = await fixture(t);
  const words = (text: string): string[][] => text.split('\n').filter((l) => l.trim()).map((l) => l.trim().split(/\s+/));
  for (const [cmd, args] of [['pvs', []], ['vgs', [f.vg]], ['lvs', [f.vg]], ['lvs', ['--segments', f.vg]], ['pvs', ['-o', '+pv_uuid', '--noheadings']]] as const) {
    t.deepEqual(words(await ours(t, f, cmd, [...args])), words(await real(t, f, cmd, [...args])), `${cmd} ${args.join(' ')}`);
  }
  // Without device paths in them, the columns are lvm2's to the space: headings left-aligned
  // over right-aligned sizes, lvm2's own column widths, trailing padding kept.
  for (const args of [[f.vg], ['--segments', f.vg], ['-o', '+lv_layout,lv_role,lv_time,seg_start,stripe_size', f.vg]]) {
    t.is(await ours(t, f, 'lvs', args), await real(t, f, 'lvs', args), `lvs ${args.join(' ')}`);
  }
  for (const args of [[f.vg], ['-o', '+vg_permissions,vg_shared,vg_mda_size,vg_allocation_policy', f.vg]]) {
    t.is(await ours(t, f, 'vgs', args), await real(t, f, 'vgs', args), `vgs ${args.join(' ')}`);
  }
});

test('formatReportSize: values read off lvm2 2.03.16 (ties round to even as printf does; < only in the default units)', (t) => {
  const cases: [number, string, boolean, string][] = [
    [130023424, 'r', true, '124.00m'],
    [130023424, 'b', true, '130023424B'],
    [130023424, 's', true, '253952S'],
    [130023424, 'k', true, '126976.00k'],
    [130023424, 'g', true, '0.12g'],
    [130023424, 'G', true, '0.13G'],
    [130023424, 'H', true, '130.02M'],
    [130023424, 'K', false, '130023.42'],
    [99999744, 'r', true, '<95.37m'],
    [99999744, 'h', true, '95.37m'],
    [99999744, 'H', false, '100.00M'],
    [1044480, 'h', true, '1020.00k'],
    [0, 'r', true, '0 '],
    [0, 'm', true, '0m'],
    [0, 'm', false, '0'],
    [0, 'b', true, '0B'],
    [128 * MiB, 'g', true, '0.12g'],
  ];
  for (const [bytes, units, suffix, want] of cases) t.is(formatReportSize(bytes, units as 'r', suffix), want, `${bytes} ${units} ${suffix}`);
  t.is(twoDecimals(0.125), '0.12');
  t.is(twoDecimals(0.375), '0.38');
  t.is(twoDecimals(2.999), '3.00');
});

test('report option errors: one line each, exit 2 for a bad argument, 1 for a field sanbox does not report', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'e.img');
  fs.writeFileSync(img, '');
  fs.truncateSync(img, 16 * MiB);
  t.is((await sanboxCli(t, ['pvcreate', img])).code, 0);
  const cases: [string[], number, RegExp][] = [
    [['pvs', '-o', 'pv_nme', img], 2, /^sanbox: unrecognised field 'pv_nme' \(-o help lists the fields\)\n$/],
    [['pvs', '-O', 'nope', img], 2, /^sanbox: unrecognised field 'nope' \(-o help lists the fields\)\n$/],
    [['pvs', '--units', 'x', img], 2, /^sanbox: invalid units 'x' \(one of r h b s k m g t p e, or upper case for SI units\)\n$/],
    [['pvs', '--reportformat', 'xml', img], 2, /^sanbox: invalid --reportformat 'xml' \(basic or json\)\n$/],
    [['pvs', '-o', ',', img], 2, /^sanbox: empty field list ','\n$/],
    [['pvs', '-o', 'pv_major', img], 1, /^sanbox: field pv_major is not reported by sanbox: it is kernel \(device-mapper\) state, and sanbox activates no LV in the kernel\n$/],
    [['lvs', '-o', 'lv_active', '--devices', img], 1, /^sanbox: field lv_active is not reported by sanbox: it is kernel \(device-mapper\) state/],
  ];
  for (const [args, code, msg] of cases) {
    const r = await sanboxCli(t, args);
    t.is(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, msg, args.join(' '));
    t.is(r.stdout, '');
  }
  const help = await sanboxCli(t, ['pvs', '-o', 'help', img]);
  t.is(help.code, 0);
  t.regex(help.stdout, /pv_pe_alloc_count +- column "Alloc", number/);
});
