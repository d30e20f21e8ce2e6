// The devices file: `sanbox lvmdevices --adddev/--deldev` keeps it in lvm2's format, LVM commands
// use it when neither --devices nor SANBOX_DEVICES names devices, the real lvm2 reads the file
// sanbox wrote (finding the loop devices by their backing images), its parser refuses mutated
// files with FormatErrors only, and each error is one line with its exit code.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { encodeDevicesFile, parseDevicesFile } from '../src/format/devices-file.js';
import { attachLoop, runTool, sanboxCli } from './helpers/lvm-real.js';
import { fuzzRandom, onlyFormatError } from './helpers/fuzz.js';
import { ownLockDir, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const MiB = 1024 * 1024;
const uniq = (p: string): string => `${p}${process.pid}${Math.floor(Math.random() * 1e6)}`;

async function setup(t: ExecutionContext): Promise<{ dir: string; imgs: string[]; file: string; vg: string; run: (args: string[], env?: NodeJS.ProcessEnv) => ReturnType<typeof sanboxCli> }> {
  const dir = tempDir(t);
  const imgs = ['a', 'b', 'c'].map((n) => path.join(dir, `${n}.img`));
  for (const img of imgs) fs.writeFileSync(img, ''), fs.truncateSync(img, 32 * MiB);
  const file = path.join(dir, 'conf', 'system.devices');
  // SANBOX_DEVICES is cleared: these commands must find their devices in the file.
  const run = (args: string[], env: NodeJS.ProcessEnv = {}): ReturnType<typeof sanboxCli> => sanboxCli(t, args, { SANBOX_DEVICES: '', SANBOX_DEVICESFILE: file, ...env });
  const vg = uniq('dvf');
  for (const args of [['pvcreate', imgs[0]!, imgs[1]!], ['vgcreate', vg, imgs[0]!, imgs[1]!, '--devices', imgs.join(',')]]) {
    const r = await run(args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  return { dir, imgs, file, vg, run };
}

test('lvmdevices --adddev/--deldev keep the file; vgs, lvcreate and lvs use it; SANBOX_DEVICES and --devices override it', async (t) => {
  const { imgs, file, vg, run } = await setup(t);
  const none = await run(['vgs']);
  t.is(none.code, 2, 'no devices anywhere is a usage error');
  t.regex(none.stderr, /^sanbox: no devices to look at: name image files, pass --devices a\.img,b\.img, set SANBOX_DEVICES, or add them with sanbox lvmdevices --adddev\n$/);
  for (const img of imgs) t.is((await run(['lvmdevices', '--adddev', img])).code, 0);
  const text = fs.readFileSync(file, 'utf8');
  t.regex(text, /^# LVM uses devices listed in this file\.\n# Created by sanbox lvmdevices pid \d+ at .*\nVERSION=1\.1\.1\n/);
  t.regex(text, new RegExp(`^IDTYPE=loop_file IDNAME=${imgs[2]} DEVNAME=${imgs[2]} PVID=none$`, 'm'));
  t.regex(text, new RegExp(`^IDTYPE=loop_file IDNAME=${imgs[0]} DEVNAME=${imgs[0]} PVID=[A-Za-z0-9]{32}$`, 'm'));
  // Adding again updates the entry instead of duplicating it.
  t.is((await run(['lvmdevices', '--adddev', imgs[0]!])).code, 0);
  const listed = JSON.parse((await run(['lvmdevices', '--json'])).stdout) as { devices: { devName: string; pvId: string | null }[] };
  t.deepEqual(listed.devices.map((d) => d.devName).sort(), [...imgs].sort());

  t.is((await run(['lvcreate', '-n', 'lv1', '-L', '8m', vg])).code, 0);
  const lvs = await run(['lvs', '--noheadings', '-o', 'lv_name,vg_name', '--separator', ',']);
  t.is(lvs.stdout, `  lv1,${vg}\n`);
  const pvs = await run(['pvs', '--noheadings', '-o', 'pv_name', '--separator', ',']);
  t.is(pvs.stdout, `  ${imgs[0]}\n  ${imgs[1]}\n`, 'both PVs; c.img is in the list but holds no PV');

  // SANBOX_DEVICES (or --devices) names the devices instead of the file, as lvm2's --devices does.
  const only = await run(['pvs', '--noheadings', '-o', 'pv_name'], { SANBOX_DEVICES: imgs[0]! });
  t.is(only.stdout.trim(), imgs[0]);
  const opt = await run(['pvs', '--noheadings', '-o', 'pv_name', '--devices', imgs[1]!]);
  t.is(opt.stdout.trim(), imgs[1]);

  t.is((await run(['lvmdevices', '--deldev', imgs[1]!])).code, 0);
  const partial = await run(['lvs', vg]);
  t.is(partial.code, 0, 'a VG with a PV left out of the file is still listed');
  t.regex(partial.stderr, /missing PV/);
  t.notRegex(fs.readFileSync(file, 'utf8'), new RegExp(`IDNAME=${imgs[1]} `));
  t.false(fs.readdirSync(path.dirname(file)).some((n) => n.includes('.tmp-')), 'no temporary file left beside it');
});

test('the real lvm2 reads the devices file sanbox wrote: it finds the loop devices of the listed images and only those', async (t) => {
  const { imgs, file, run } = await setup(t);
  for (const img of imgs.slice(0, 2)) t.is((await run(['lvmdevices', '--adddev', img])).code, 0);
  const loops: string[] = [];
  for (const img of imgs) loops.push(await attachLoop(t, img));
  // lvm2 takes a devices file only from /etc/lvm/devices; a uniquely named copy, removed after.
  const sysDir = '/etc/lvm/devices';
  const made = !fs.existsSync(sysDir);
  fs.mkdirSync(sysDir, { recursive: true });
  const name = `${uniq('sanbox-test')}.devices`;
  fs.copyFileSync(file, path.join(sysDir, name));
  t.teardown(() => {
    fs.rmSync(path.join(sysDir, name), { force: true });
    if (made) fs.rmSync(sysDir, { recursive: true, force: true });
  });
  const r = await runTool('pvs', ['--devicesfile', name, '--config', 'backup/backup=0', '--noheadings', '-o', 'pv_name', '--separator', ',']);
  t.is(r.code, 0, r.stderr);
  t.deepEqual(r.stdout.split('\n').map((l) => l.trim()).filter((l) => l).sort(), loops.slice(0, 2).sort());
});

test('lvmdevices errors: one line each, exit 1 for a refused change, 2 for bad usage', async (t) => {
  const { dir, imgs, file, run } = await setup(t);
  const cases: [string[], NodeJS.ProcessEnv, number, RegExp][] = [
    [['lvmdevices', '--deldev', imgs[2]!], {}, 1, new RegExp(`^sanbox: no devices file entry for ${imgs[2]} in ${file}\\n$`)],
    [['lvmdevices', '--adddev', path.join(dir, 'nope.img')], {}, 1, /^sanbox: \S+nope\.img: no such device or image\n$/],
    [['lvmdevices', '--adddev', imgs[0]!, '--deldev', imgs[1]!], {}, 2, /^sanbox: give one of --adddev and --deldev\n$/],
    [['lvmdevices', '--adddev', path.join(dir, 'a b.img')], {}, 2, /^sanbox: '\S+\/a b\.img': the devices file cannot name a path with white space\n$/],
    [['lvmdevices'], { SANBOX_DEVICESFILE: '' }, 2, /^sanbox: the devices file is turned off \(SANBOX_DEVICESFILE is empty\); pass --devicesfile PATH\n$/],
  ];
  for (const [args, env, code, msg] of cases) {
    const r = await run(args, env);
    t.is(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, msg);
  }
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `VERSION=1.1.1\nIDTYPE=loop_file IDNAME=${imgs[0]} DEVNAME=${imgs[0]} PVID=short\n`);
  const bad = await run(['vgs']);
  t.is(bad.code, 1);
  t.is(bad.stderr, `sanbox: ${file}: PVID 'short' is not 32 uuid characters at offset 14\n`);
});

test('devices-file codec: round trip, and seeded mutations give a result or a FormatError, nothing else', (t) => {
  const file = {
    version: '1.1.1',
    entries: [
      { idType: 'loop_file' as const, idName: '/x/a.img', devName: '/x/a.img', pvId: 'aXDGRHtZRhnwTBAa6hh9EEDCGG9eqs1L' },
      { idType: 'devname' as const, idName: 'nbd://host/exp', devName: 'nbd://host/exp', pvId: undefined },
    ],
  };
  const text = encodeDevicesFile(file, 'test');
  t.deepEqual(parseDevicesFile(text, { device: 'f' }), file);
  const rnd = fuzzRandom(t);
  const counts = { parsed: 0, refused: 0, other: 0 };
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.from(text);
    for (let k = rnd.int(1, 6); k > 0; k--) b[rnd.int(b.length)] = rnd.int(2) ? rnd.int(256) : ' =\n#'.charCodeAt(rnd.int(4));
    counts[onlyFormatError(t, `mutation ${i}`, () => parseDevicesFile(b.toString('latin1'), { device: 'f' }))]++;
  }
  t.log(counts);
  t.is(counts.other, 0);
  t.true(counts.refused > 0);
});
