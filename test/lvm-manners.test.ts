// lvm2's manners: the rounding messages (compared line by line with the real lvcreate/lvextend
// on a VG of the same name and geometry), and confirmation before destroying data — lvremove and
// lvreduce of an LV holding a filesystem, vgremove of a VG with LVs: refused without -y when stdin
// is not a terminal (nothing written), asked on a terminal (a real pty from script(1)), and
// refused outright while another process has the LV open.

import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { attachLoop, lvm, sanboxCli } from './helpers/lvm-real.js';
import { collect, ownLockDir, SANBOX_BIN, spawnChild, tempDir, waitFor } from './helpers/tmp.js';

ownLockDir(test);

const MiB = 1024 * 1024;
const uniq = (p: string): string => `${p}${process.pid}${Math.floor(Math.random() * 1e6)}`;
const sha = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

async function images(t: ExecutionContext, n: number, sizeBytes: number): Promise<string[]> {
  const dir = tempDir(t);
  const imgs = Array.from({ length: n }, (_, i) => path.join(dir, `d${i}.img`));
  for (const img of imgs) fs.writeFileSync(img, ''), fs.truncateSync(img, sizeBytes);
  return imgs;
}

async function run(t: ExecutionContext, args: string[], imgs: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return sanboxCli(t, args, { SANBOX_DEVICES: imgs.join(',') });
}

async function ok(t: ExecutionContext, args: string[], imgs: string[]): Promise<string> {
  const r = await run(t, args, imgs);
  t.is(r.code, 0, `sanbox ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

test('rounding messages: sanbox says what the real lvcreate/lvextend say, line for line', async (t) => {
  const vg = uniq('rnd');
  const ours = await images(t, 2, 64 * MiB);
  const theirs = await images(t, 2, 64 * MiB);
  const loops: string[] = [];
  for (const img of theirs) loops.push(await attachLoop(t, img));
  await ok(t, ['pvcreate', ...ours], ours);
  await ok(t, ['vgcreate', '-s', '2m', vg, ...ours], ours);
  for (const [cmd, args] of [['pvcreate', loops], ['vgcreate', ['-s', '2m', vg, ...loops]]] as const) {
    const r = await lvm(cmd, loops, [...args]);
    t.is(r.code, 0, r.stderr);
  }
  const steps: [string, string[]][] = [
    ['lvcreate', ['-L', '3m', '-n', 'r1', vg]],
    ['lvcreate', ['-L', '6m', '-i', '2', '-n', 'r2', vg]],
    ['lvcreate', ['-L', '8m', '-n', 'r3', vg]],
    ['lvextend', ['-L', '+1m', `${vg}/r1`]],
    ['lvextend', ['-l', '+2', `${vg}/r3`]],
    ['lvreduce', ['-L', '4m', `${vg}/r3`]],
  ];
  // lvm2's own notes about its environment and backups are not sanbox's to repeat.
  const notes = (s: string): string[] => s.split('\n').filter((l) => /Rounding|Size of logical volume/.test(l));
  for (const [cmd, args] of steps) {
    const real = await lvm(cmd, loops, [...(cmd === 'lvcreate' ? ['--driverloaded', 'n', '-an', '-Zn'] : ['--driverloaded', 'n']), ...(cmd === 'lvreduce' ? ['-y'] : []), ...args]);
    t.is(real.code, 0, `${cmd}: ${real.stderr}`);
    const mine = await run(t, [cmd, ...args], ours);
    t.is(mine.code, 0, mine.stderr);
    t.deepEqual(notes(mine.stdout + mine.stderr), notes(real.stdout + real.stderr), `${cmd} ${args.join(' ')}`);
    t.true(notes(real.stdout + real.stderr).length > 0 || cmd === 'lvcreate', `${cmd} ${args.join(' ')}: lvm2 said something to compare`);
  }
});

/** A VG with an ocfs2 volume on `fs` and nothing on `raw`. */
async function fsVg(t: ExecutionContext): Promise<{ imgs: string[]; vg: string }> {
  const imgs = await images(t, 1, 200 * MiB);
  const vg = uniq('fsv');
  await ok(t, ['pvcreate', ...imgs], imgs);
  await ok(t, ['vgcreate', vg, ...imgs], imgs);
  await ok(t, ['lvcreate', '-n', 'fs', '-L', '96m', vg], imgs);
  await ok(t, ['lvcreate', '-n', 'raw', '-L', '8m', vg], imgs);
  await ok(t, ['mkfs', `${vg}/fs`, '--slots', '2'], imgs);
  return { imgs, vg };
}

test('without a terminal: lvremove/lvreduce of an LV holding ocfs2 and vgremove with LVs are refused without -y (one line, exit 1, nothing written); -y goes ahead', async (t) => {
  const { imgs, vg } = await fsVg(t);
  const refusals: [string[], RegExp][] = [
    [['lvremove', `${vg}/fs`], new RegExp(`^sanbox: ${vg}/fs holds an ocfs2 volume \\(signature at offset \\d+\\); removing it destroys that; pass -y \\(--yes\\) to confirm, stdin is not a terminal\\n$`)],
    [['lvreduce', '-L', '-8m', `${vg}/fs`], new RegExp(`^sanbox: ${vg}/fs holds an ocfs2 volume \\(signature at offset \\d+\\); reducing it may destroy that; pass -y \\(--yes\\) to confirm, stdin is not a terminal\\n$`)],
    [['vgremove', vg], new RegExp(`^sanbox: volume group "${vg}" contains 2 logical volumes: fs \\(an ocfs2 volume \\(signature at offset \\d+\\)\\), raw; removing it removes them; pass -y \\(--yes\\) to confirm, stdin is not a terminal\\n$`)],
  ];
  for (const [args, msg] of refusals) {
    const before = sha(imgs[0]!);
    const r = await run(t, args, imgs);
    t.is(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, msg);
    t.is(sha(imgs[0]!), before, `${args[0]} wrote nothing`);
  }
  // An LV without a filesystem is reduced and removed without asking, as lvm2 does for inactive LVs.
  await ok(t, ['lvreduce', '-L', '-4m', `${vg}/raw`], imgs);
  await ok(t, ['lvremove', `${vg}/raw`], imgs);
  t.regex(await ok(t, ['lvreduce', '-y', '-L', '-8m', `${vg}/fs`], imgs), /Size of logical volume \S+ changed from 96\.00 MiB \(24 extents\) to 88\.00 MiB \(22 extents\)\./);
  await ok(t, ['lvremove', '--yes', `${vg}/fs`], imgs);
  await ok(t, ['lvcreate', '-n', 'again', '-l', '1', vg], imgs);
  await ok(t, ['vgremove', '-y', vg], imgs);
  t.is((await run(t, ['vgs', vg], imgs)).code, 1);
});

/** Runs sanbox on a pseudo-terminal (script(1)), typing `answer`; bounded. */
async function onTerminal(t: ExecutionContext, args: string[], imgs: string[], answer: string): Promise<{ code: number; out: string }> {
  const cmd = [process.execPath, SANBOX_BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const r = await new Promise<{ code: number; out: string }>((resolve, reject) => {
    const child = spawnChild(t, 'script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, SANBOX_DEVICES: imgs.join(',') }, stdio: ['pipe', 'pipe', 'pipe'] });
    const io = collect(child);
    const timer = setTimeout(() => reject(new Error(`script ${cmd}: no exit in 30 s; output: ${io.out()}`)), 30_000);
    // Type the answer once the question is on the terminal.
    waitFor(() => /\[y\/n\]: /.test(io.out()), 20_000, 'the [y/n] question')
      .then(() => child.stdin!.write(answer))
      .catch(reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, out: io.out() });
    });
  });
  return r;
}

test('on a terminal lvremove asks [y/n]: "n" leaves the LV, "y" removes it', async (t) => {
  const { imgs, vg } = await fsVg(t);
  const no = await onTerminal(t, ['lvremove', `${vg}/fs`], imgs, 'n\n');
  t.regex(no.out, new RegExp(`Do you really want to remove ${vg}/fs, which holds an ocfs2 volume \\(signature at offset \\d+\\)\\? \\[y/n\\]: `));
  t.regex(no.out, /holds an ocfs2 volume .*: not confirmed/);
  t.is(no.code, 1);
  t.regex(await ok(t, ['lvs', '--noheadings', '-o', 'lv_name', vg], imgs), /fs/);
  const yes = await onTerminal(t, ['lvremove', `${vg}/fs`], imgs, 'y\n');
  t.is(yes.code, 0, yes.out);
  t.regex(yes.out, /Logical volume "fs" successfully removed\./);
  t.notRegex(await ok(t, ['lvs', '--noheadings', '-o', 'lv_name', vg], imgs), /\bfs\b/);
});

test('an LV another process has open is not removed or reduced, even with -y: "device busy"', async (t) => {
  const { imgs, vg } = await fsVg(t);
  // A separate process holds the LV open (the shared in-use guard every user of an LV takes).
  const holder = spawnChild(t, process.execPath, ['--input-type=module', '-e', `
    const { openTarget } = await import(${JSON.stringify(path.join(path.dirname(SANBOX_BIN), '..', 'dist', 'src', 'volume', 'resolve.js'))});
    const dev = await openTarget(${JSON.stringify(`${vg}/fs`)}, { devices: ${JSON.stringify(imgs)}, readOnly: true });
    process.stdout.write('open\\n');
    setTimeout(() => dev.close(), 60_000);
  `]);
  const io = collect(holder);
  await waitFor(() => io.out().includes('open'), 20_000, 'the holder to open the LV');
  for (const args of [['lvremove', '-y', `${vg}/fs`], ['lvreduce', '-y', '-L', '-8m', `${vg}/fs`]]) {
    const before = sha(imgs[0]!);
    const r = await run(t, args, imgs);
    t.is(r.code, 1, r.stderr);
    t.is(r.stderr, `sanbox: ${vg}/fs: device busy: logical volume in use by another process\n`);
    t.is(sha(imgs[0]!), before);
  }
});

test('vgchange/lvchange: tags, max LVs/PVs and read-ahead set by sanbox are what the real vgs/lvs report (and the other way round); what cannot change here is refused in one line', async (t) => {
  const imgs = await images(t, 2, 64 * MiB);
  const vg = uniq('chg');
  await ok(t, ['pvcreate', ...imgs], imgs);
  await ok(t, ['vgcreate', '-s', '2m', vg, ...imgs], imgs);
  await ok(t, ['lvcreate', '-n', 'l1', '-L', '4m', vg], imgs);
  await ok(t, ['lvcreate', '-n', 'l2', '-L', '4m', vg], imgs);
  await ok(t, ['vgchange', '--addtag', 'site-a', '--addtag', '@rack:7', '-l', '10', '-p', '4', vg], imgs);
  await ok(t, ['lvchange', '--addtag', 'db', '--addtag', 'alpha', '-r', '250', `${vg}/l1`], imgs);
  await ok(t, ['lvchange', '-r', 'none', `${vg}/l2`], imgs);
  const loops: string[] = [];
  for (const img of imgs) loops.push(await attachLoop(t, img));
  const fields = (cmd: 'vgs' | 'lvs', f: string, extra: string[] = []): Promise<string> =>
    lvm(cmd, loops, [...(cmd === 'lvs' ? ['--driverloaded', 'n'] : []), '--noheadings', '--separator', '|', '--units', 's', '-o', f, ...extra, vg]).then((r) => {
      t.is(r.code, 0, r.stderr);
      return r.stdout;
    });
  const ours = async (cmd: 'vgs' | 'lvs', f: string): Promise<string> => ok(t, [cmd, '--noheadings', '--separator', '|', '--units', 's', '-o', f, vg], imgs);
  t.is(await fields('vgs', 'vg_tags,max_lv,max_pv'), '  rack:7,site-a|10|4\n');
  t.is(await fields('lvs', 'lv_name,lv_tags,lv_read_ahead'), '  l1|alpha,db|248S\n  l2||0S\n');
  t.is(await ours('vgs', 'vg_tags,max_lv,max_pv'), await fields('vgs', 'vg_tags,max_lv,max_pv'));
  t.is(await ours('lvs', 'lv_name,lv_tags,lv_read_ahead'), await fields('lvs', 'lv_name,lv_tags,lv_read_ahead'));
  const ck = await lvm('vgck', loops, [vg]);
  t.is(ck.code, 0, ck.stderr);
  // lvm2 changes them back; sanbox reads what it wrote.
  for (const [cmd, args] of [['lvchange', ['--deltag', 'db', '-r', 'auto', `${vg}/l1`]], ['vgchange', ['--deltag', 'site-a', '-l', '0', vg]]] as const) {
    const r = await lvm(cmd, loops, ['--driverloaded', 'n', ...args]);
    t.is(r.code, 0, r.stderr);
  }
  t.is(await ours('lvs', 'lv_name,lv_tags,lv_read_ahead'), '  l1|alpha|auto\n  l2||0S\n');
  t.is(await ours('vgs', 'vg_tags,max_lv'), '  rack:7|0\n');

  const refused: [string[], number, RegExp][] = [
    [['vgchange', '-l', '1', vg], 1, new RegExp(`^sanbox: max LVs 1 is less than the current number 2 of LVs for ${vg}\\n$`)],
    [['vgchange', '-p', '1', vg], 1, new RegExp(`^sanbox: max PVs 1 is less than the current number 2 of PVs for ${vg}\\n$`)],
    [['vgchange', '-a', 'y', vg], 2, /^sanbox: vgchange -a: sanbox maps no LV in the kernel \(no device-mapper\); an LV is activated in a running node, which holds its LV lock: lvchange -aey\|-asy\|-an VG\/LV --cluster IMG --node N .*\n$/],
    [['lvchange', '-a', 'y', `${vg}/l1`], 2, /^sanbox: lvchange -a: sanbox maps no LV in the kernel/],
    [['lvchange', '--addtag', 'b a d', `${vg}/l1`], 2, /^sanbox: invalid tag 'b a d' \(letters, digits and _ \+ \. - \/ = ! : & #, at most 1024\)\n$/],
    [['lvchange', '-r', 'fast', `${vg}/l1`], 2, /^sanbox: invalid read ahead 'fast' \(auto, none or a number of sectors\)\n$/],
    [['vgchange', vg], 2, /^sanbox: vgchange: nothing to change \(--addtag, --deltag, -l, -p\)\n$/],
    [['lvchange', `${vg}/l1`], 2, /^sanbox: lvchange: nothing to change \(--addtag, --deltag, -r\)\n$/],
    [['lvchange', '--addtag', 'x', `${vg}/nope`], 1, new RegExp(`^sanbox: logical volume ${vg}/nope not found\\n$`)],
  ];
  for (const [args, code, msg] of refused) {
    const before = imgs.map(sha);
    const r = await run(t, args, imgs);
    t.is(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, msg);
    t.deepEqual(imgs.map(sha), before, `${args.join(' ')} wrote nothing`);
  }
});

test('an LV sanbox cannot read (an lvm2 "error" segment) is not removed without -y: its contents are unknown; with -y the real lvs sees it gone', async (t) => {
  const imgs = await images(t, 1, 32 * MiB);
  const loops = [await attachLoop(t, imgs[0]!)];
  const vg = uniq('unk');
  for (const [cmd, args] of [['pvcreate', loops], ['vgcreate', [vg, ...loops]], ['lvcreate', ['--driverloaded', 'n', '-an', '--type', 'error', '-L', '4m', '-n', 'err', vg]]] as const) {
    const r = await lvm(cmd, loops, [...args]);
    t.is(r.code, 0, `${cmd}: ${r.stderr}`);
  }
  // Reported as lvm2 reports it (its X's: activation state unknown without device-mapper).
  const fields = ['--reportformat', 'json', '-o', 'lv_name,lv_attr,lv_layout,lv_role,segtype,stripes,data_stripes,devices,seg_pe_ranges,stripe_size', `${vg}/err`];
  const theirs = await lvm('lvs', loops, ['--driverloaded', 'n', ...fields]);
  t.is(theirs.code, 0, theirs.stderr);
  t.is(await ok(t, ['lvs', ...fields], imgs), theirs.stdout.replace('vwi-XXv---', 'vwi---v---'));
  const before = sha(imgs[0]!);
  const r = await run(t, ['lvremove', `${vg}/err`], imgs);
  t.is(r.code, 1);
  t.is(r.stderr, `sanbox: ${vg}/err holds contents sanbox cannot read (${vg}/err: segment type 'error' cannot be opened by sanbox (only linear and striped)); removing it destroys that; pass -y (--yes) to confirm, stdin is not a terminal\n`);
  t.is(sha(imgs[0]!), before);
  await ok(t, ['lvremove', '-y', `${vg}/err`], imgs);
  const after = await lvm('lvs', loops, ['--driverloaded', 'n', '--noheadings', '-o', 'lv_name', vg]);
  t.is(after.code, 0, after.stderr);
  t.is(after.stdout.trim(), '');
});
