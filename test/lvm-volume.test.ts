// The volume manager: bytes written through an LV land where pe_start and the segments say
// (checked by reading the image files directly); allocation never overlaps, spans PVs, frees on
// reduce/remove and refuses beyond the free extents; bad input gets a one-line error naming
// device and offset, exit 1 and no write; an interrupted commit (fault injection, kill -9) leaves
// the previous version readable and consistent.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { FileDisk, isSyncDevice, writeControlFile } from '../src/disk/index.js';
import { SanboxError } from '../src/errors.js';
import { encodeMdaHeader, decodeMdaHeader } from '../src/format/lvm/mda-header.js';
import { lvmCrc } from '../src/format/lvm/lvm-crc.js';
import { checkNoOverlap, freeExtents } from '../src/volume/allocator.js';
import { commitContext, lvCreate, lvRemove, lvResize, openLv, pvCreate, vgCreate, withSession } from '../src/volume/manager.js';
import { openTarget } from '../src/volume/resolve.js';
import { findVg, scanDevices } from '../src/volume/vg.js';
import { runTool, sanboxCli, warnings } from './helpers/lvm-real.js';
import { collect, exited, ownLockDir, readFileAt, REPO_ROOT, SANBOX_BIN, spawnChild, tempDir, waitFor } from './helpers/tmp.js';
import { fuzzRandom } from './helpers/fuzz.js';
import { copyImage } from './helpers/image-copy.js';

ownLockDir(test);

const MiB = 1024 * 1024;
const REPO_DIST = path.join(REPO_ROOT, 'dist');
const ctx = () => commitContext('sanbox test');
const sha = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

function images(t: import('ava').ExecutionContext, names: string[], sizeBytes: number): string[] {
  const dir = tempDir(t);
  return names.map((n) => {
    const p = path.join(dir, `${n}.img`);
    fs.writeFileSync(p, '');
    fs.truncateSync(p, sizeBytes);
    return p;
  });
}

test('bytes written through linear and striped LVs land at pe_start + PE × extent_size, stripe chunks round-robin', async (t) => {
  const imgs = images(t, ['a', 'b'], 40 * MiB);
  await pvCreate([imgs[0]!], { metadataCopies: 2 });
  await pvCreate([imgs[1]!], { metadataSizeBytes: 60 * 1024, dataAlignmentBytes: 64 * 1024 });
  await vgCreate(imgs, imgs, 'vgbytes', 2048 /* 1 MiB */, ctx());
  await lvCreate(imgs, 'vgbytes', 'lin', { size: { kind: 'extents', sign: '', extents: 3 } }, ctx());
  await lvCreate(imgs, 'vgbytes', 'gap', { size: { kind: 'extents', sign: '', extents: 2 } }, ctx());
  await lvCreate(imgs, 'vgbytes', 'str', { size: { kind: 'extents', sign: '', extents: 4 }, stripes: 2, stripeSizeSectors: 16 }, ctx());
  await lvResize(imgs, 'vgbytes', 'lin', { kind: 'extents', sign: '+', extents: 40 }, 'extend', {}, ctx()); // spans both PVs

  const report = JSON.parse((await sanboxCli(t, ['lvs', '--segments', '--json', '--devices', imgs.join(',')])).stdout).seg as { lv_name: string; seg_start_pe: number; seg_size_pe: number; stripes: number; stripe_size: number; seg_pe_ranges: string }[];
  const pvs = JSON.parse((await sanboxCli(t, ['pvs', '--json', ...imgs])).stdout).pv as { pv_name: string; pe_start: number }[];
  const peStart = new Map(pvs.map((p) => [p.pv_name, p.pe_start]));
  t.deepEqual([...peStart.values()], [MiB, 64 * 1024]);
  t.true(report.filter((r) => r.lv_name === 'lin').length >= 2, 'lin has several segments');

  for (const name of ['lin', 'str']) {
    const lv = await openTarget(`vgbytes/${name}`, { devices: imgs });
    const data = crypto.randomBytes(lv.sizeBytes);
    await lv.write(data, 0);
    await lv.flush();
    const back = Buffer.alloc(lv.sizeBytes);
    await lv.read(back, 0);
    t.true(back.equals(data), `${name} reads back`);
    // Over local files the LV also has the synchronous form, with the same mapping.
    t.true(isSyncDevice(lv), `${name} is a SyncBlockDevice`);
    if (isSyncDevice(lv)) {
      const viaSync = Buffer.alloc(lv.sizeBytes);
      lv.readSync(viaSync, 0);
      t.true(viaSync.equals(data));
      const patch = crypto.randomBytes(3 * 8192);
      lv.writeSync(patch, MiB - 8192); // crosses chunk and extent boundaries
      patch.copy(data, MiB - 8192);
      lv.readSync(viaSync, 0);
      t.true(viaSync.equals(data));
    }
    await t.throwsAsync(lv.write(Buffer.alloc(512), lv.sizeBytes), { instanceOf: SanboxError, message: /beyond end of device/ });
    await lv.close();
    // Independent mapping from the report: every extent (or stripe chunk) checked in the files.
    for (const seg of report.filter((r) => r.lv_name === name)) {
      const areas = seg.seg_pe_ranges.split(' ').map((r) => {
        const m = /^(.*):(\d+)-(\d+)$/.exec(r)!;
        return { file: m[1]!, firstPe: Number(m[2]) };
      });
      const segBytes = seg.seg_size_pe * MiB;
      const lvOff = seg.seg_start_pe * MiB;
      const chunk = seg.stripes > 1 ? seg.stripe_size : segBytes;
      for (let c = 0; c * chunk < segBytes; c++) {
        const area = areas[c % areas.length]!;
        const fileOff = peStart.get(area.file)! + area.firstPe * MiB + Math.floor(c / areas.length) * chunk;
        t.true(readFileAt(area.file, fileOff, chunk).equals(data.subarray(lvOff + c * chunk, lvOff + (c + 1) * chunk)), `${name} seg@${seg.seg_start_pe} chunk ${c}`);
      }
    }
  }
  // openTarget opens anything that is not VG/LV as a plain device; VG/LV needs a device list.
  const plain = await openTarget(imgs[0]!, { readOnly: true });
  t.is(plain.sizeBytes, 40 * MiB);
  await plain.close();
  await t.throwsAsync(openTarget('vgbytes/lin', { devices: [] }), { message: /no devices to find volume group vgbytes on/ });
  await t.throwsAsync(openTarget('vgbytes/nope', { devices: imgs }), { message: /logical volume vgbytes\/nope not found/ });
  // The gap LV between was never written.
  t.true(readFileAt(imgs[0]!, MiB + 3 * MiB, 2 * MiB).equals(Buffer.alloc(2 * MiB)));
});

test('allocation: never overlaps over a random sequence, spans PVs, frees on reduce/remove, refuses beyond free with no write', async (t) => {
  const rnd = fuzzRandom(t);
  const imgs = images(t, ['a', 'b', 'c'], 24 * MiB);
  await pvCreate(imgs, {});
  await vgCreate(imgs, imgs, 'vgalloc', 2048, ctx()); // 1 MiB extents, 23 each
  const total = 69;
  const live = new Map<string, number>();
  let n = 0;
  for (let step = 0; step < 25; step++) {
    const free = await withSession(imgs, { readOnly: true, guard: 'none' }, async (s) => {
      const vg = s.vg('vgalloc').vg;
      checkNoOverlap(vg);
      const used = [...live.values()].reduce((a, b) => a + b, 0);
      t.is(freeExtents(vg), total - used, `free count at step ${step}`);
      return freeExtents(vg);
    });
    const names = [...live.keys()];
    const r = rnd.int(4);
    if (r === 0 || names.length === 0) {
      const want = 1 + rnd.int(Math.max(1, Math.min(free, 20)));
      if (want > free) continue;
      const name = `lv${n++}`;
      await lvCreate(imgs, 'vgalloc', name, { size: { kind: 'extents', sign: '', extents: want } }, ctx());
      live.set(name, want);
    } else if (r === 1 && free > 0) {
      const name = names[rnd.int(names.length)]!;
      const add = 1 + rnd.int(Math.min(free, 10));
      await lvResize(imgs, 'vgalloc', name, { kind: 'extents', sign: '+', extents: add }, 'extend', {}, ctx());
      live.set(name, live.get(name)! + add);
    } else if (r === 2) {
      const name = names[rnd.int(names.length)]!;
      if (live.get(name)! < 2) continue;
      await lvResize(imgs, 'vgalloc', name, { kind: 'extents', sign: '-', extents: 1 }, 'reduce', {}, ctx());
      live.set(name, live.get(name)! - 1);
    } else {
      const name = names[rnd.int(names.length)]!;
      await lvRemove(imgs, 'vgalloc', name, ctx());
      live.delete(name);
    }
  }
  // Fill to the brim, then one more extent is refused with a clear error and nothing written.
  const free = await withSession(imgs, { readOnly: true, guard: 'none' }, async (s) => freeExtents(s.vg('vgalloc').vg));
  if (free > 0) await lvCreate(imgs, 'vgalloc', 'fill', { size: { kind: 'extents', sign: '', extents: free } }, ctx());
  const before = imgs.map(sha);
  const r = await sanboxCli(t, ['lvcreate', '-n', 'more', '-l', '1', 'vgalloc', '--devices', imgs.join(',')]);
  t.is(r.code, 1);
  t.is(r.stderr, 'sanbox: insufficient free space in VG vgalloc: 1 extents needed, but only 0 available\n');
  t.deepEqual(imgs.map(sha), before);
  const vgs = JSON.parse((await sanboxCli(t, ['vgs', '--json', '--devices', imgs.join(',')])).stdout).vg;
  t.is(vgs[0].vg_free_count, 0);
});

/** Runs sanbox and requires exit 0 (the failure message carries its stderr). */
async function mustRun(t: import('ava').ExecutionContext, args: string[]): Promise<string> {
  const r = await sanboxCli(t, args);
  t.is(r.code, 0, `sanbox ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Makes a VG of two PVs with one LV through the CLI; returns the images. */
async function smallVg(t: import('ava').ExecutionContext, vg: string): Promise<string[]> {
  const imgs = images(t, ['a', 'b'], 16 * MiB);
  for (const args of [['pvcreate', ...imgs], ['vgcreate', vg, ...imgs], ['lvcreate', '-n', 'lv0', '-L', '8m', vg, '--devices', imgs.join(',')]]) {
    const r = await sanboxCli(t, args);
    t.is(r.code, 0, r.stderr);
  }
  return imgs;
}

/** Runs a failing sanbox command: exit 1, one stderr line matching `re`, no image changed. */
async function refuses(t: import('ava').ExecutionContext, args: string[], imgs: string[], re: RegExp): Promise<void> {
  const before = imgs.map(sha);
  const r = await sanboxCli(t, args);
  t.is(r.code, 1, `${args.join(' ')}: ${r.stdout}`);
  t.is(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
  t.regex(r.stderr, re);
  t.deepEqual(imgs.map(sha), before, `${args[0]} wrote nothing`);
}

test('bad input: corrupt CRCs, wrong magic, unparsable text, missing PV: one-line errors with device and offset, exit 1, no write', async (t) => {
  const imgs = await smallVg(t, 'vgbad');
  const [a, b] = imgs as [string, string];
  const devs = ['--devices', imgs.join(',')];
  const pristine = fs.readFileSync(a);
  const restore = (): void => fs.writeFileSync(a, pristine);
  const patch = (off: number, bytes: Buffer): void => {
    const fd = fs.openSync(a, 'r+');
    fs.writeSync(fd, bytes, 0, bytes.length, off);
    fs.closeSync(fd);
  };
  const esc = a.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

  // Label CRC: a flipped bit in the pv_header.
  patch(512 + 100, Buffer.from([readFileAt(a, 612, 1)[0]! ^ 0x04]));
  await refuses(t, ['lvcreate', '-n', 'x', '-l', '1', 'vgbad', ...devs], imgs, new RegExp(`^sanbox: ${esc}: label CRC mismatch: .* at offset 528\\n$`));
  await refuses(t, ['pvs', a], imgs, /label CRC mismatch/);
  restore();

  // mda_header: corrupt checksum, then a wrong magic with a valid checksum.
  const hdr = readFileAt(a, 4096, 512);
  const flipped = Buffer.from(hdr);
  flipped[50] ^= 0x01;
  patch(4096, flipped);
  await refuses(t, ['vgs', ...devs], imgs, new RegExp(`^sanbox: ${esc}: mda_header checksum mismatch: .* at offset 4096\\n$`));
  const magic = Buffer.from(hdr);
  magic[6] = 0x58;
  magic.writeUInt32LE(lvmCrc(magic, undefined, 4, 512), 0);
  patch(4096, magic);
  await refuses(t, ['lvextend', '-l', '+1', 'vgbad/lv0', ...devs], imgs, new RegExp(`^sanbox: ${esc}: bad mda_header magic at offset 4100\\n$`));
  restore();

  // Metadata text with a good checksum that does not parse.
  const h = decodeMdaHeader(hdr, 4096, 1044480);
  const textOff = 4096 + h.locns[0].offsetBytes;
  const text = readFileAt(a, textOff, h.locns[0].sizeBytes);
  const broken = Buffer.from(text.toString('latin1').replace('segment_count = 1', 'segment_count = = 1'), 'latin1');
  patch(textOff, broken);
  patch(4096, encodeMdaHeader({ ...h, locns: [{ ...h.locns[0], sizeBytes: broken.length, checksum: lvmCrc(broken) }, h.locns[1]] }));
  await refuses(t, ['lvs', ...devs], imgs, new RegExp(`^sanbox: ${esc}: metadata text does not parse: expected a value, found '=' \\(line \\d+\\) at offset \\d+\\n$`));
  // The text's CRC itself.
  patch(4096, hdr);
  patch(textOff + 10, Buffer.from('#'));
  await refuses(t, ['lvs', ...devs], imgs, new RegExp(`^sanbox: ${esc}: metadata text checksum mismatch: .* at offset ${textOff}\\n$`));
  restore();

  // A VG with a missing PV.
  await refuses(t, ['lvcreate', '-n', 'x', '-l', '1', 'vgbad', '--devices', b], imgs, /^sanbox: volume group vgbad is partial: PV \S+ \(last seen on .*a\.img\) is missing; name all its PVs with --devices; sanbox does not change a partial VG \(metadata read from .*b\.img at offset 5632\)\n$/);
  // Read, as lvm2 reads it: listed with 'p' (partial) in its attributes, and a warning.
  const partial = await sanboxCli(t, ['vgs', 'vgbad', '--json', '--devices', b]);
  t.is(partial.code, 0, partial.stderr);
  t.is(JSON.parse(partial.stdout).vg[0].vg_attr[3], 'p');
  t.regex(partial.stderr, /WARNING: VG vgbad is missing PV \S+ \(last seen on .*a\.img\)/);
  // A copy of a PV next to the original: refused, naming both.
  const twin = path.join(path.dirname(a), 'twin.img');
  copyImage(a, twin);
  await refuses(t, ['vgs', '--devices', [...imgs, twin].join(',')], [...imgs, twin], /twin\.img: duplicate PV \S+, also on .*a\.img \(label at offset 512\); name only one of them\n$/);
  fs.rmSync(twin);
  // Everything is fine again.
  const ok = await sanboxCli(t, ['vgs', '--json', ...devs]);
  t.is(ok.code, 0, ok.stderr);
});

test('pvcreate refuses a PV, an ext4 or ocfs2 filesystem, and a device in use; pvremove refuses a PV in a VG', async (t) => {
  const imgs = images(t, ['pv', 'ext4', 'ocfs2', 'busy'], 64 * MiB);
  const [pv, ext4, ocfs2, busy] = imgs as [string, string, string, string];
  await mustRun(t, ['pvcreate', pv]);
  await refuses(t, ['pvcreate', pv], [pv], /already an LVM physical volume \S+ \(label at offset 512\); pvremove it first/);
  execFileSync('mkfs.ext4', ['-q', '-F', ext4], { stdio: 'ignore' });
  await refuses(t, ['pvcreate', ext4], [ext4], /already holds an ext2\/3\/4 filesystem \(ext4 signature at byte 1080\); pvcreate would destroy it: use --force/);
  execFileSync('mkfs.ocfs2', ['-q', '-F', '-M', 'local', '-b', '4096', '-N', '2', ocfs2], { input: 'y\n', stdio: ['pipe', 'ignore', 'ignore'] });
  await refuses(t, ['pvcreate', ocfs2], [ocfs2], /already holds an ocfs2 volume \(ocfs2 signature at byte 8192\)/);
  const holder = FileDisk.open(busy);
  t.teardown(() => holder.closeSync());
  await refuses(t, ['pvcreate', busy], [busy], /device busy/);
  // pvremove of a VG member is refused; of an orphan it wipes the label (the real pvck then finds none).
  await mustRun(t, ['vgcreate', 'vgrm', pv]);
  await refuses(t, ['pvremove', pv], [pv], /belongs to volume group vgrm/);
  await mustRun(t, ['vgremove', 'vgrm', '--devices', pv]);
  await mustRun(t, ['pvremove', pv]);
  const ck = await runTool('pvck', ['--dump', 'headers', pv]);
  t.regex(ck.stdout + ck.stderr, /No label|no label|label_header.id expected LABELONE|CHECK/);
  await mustRun(t, ['pvcreate', pv]);
});

/** The seqno every mda of every image has committed, read through the real pvck. */
async function pvckSeqnos(t: import('ava').ExecutionContext, imgs: string[]): Promise<number[]> {
  const out: number[] = [];
  for (const img of imgs) {
    const h = await runTool('pvck', ['--dump', 'headers', img]);
    t.is(h.code, 0, h.stderr);
    t.false(/CHECK/.test(h.stdout + h.stderr), h.stdout);
    t.deepEqual(warnings(h.stderr), []);
    for (const m of h.stdout.matchAll(/# vgname \S+ seqno (\d+)/g)) out.push(Number(m[1]));
  }
  return out;
}

test('a commit interrupted by an I/O error between text and header leaves the previous version; the next commit proceeds', async (t) => {
  const imgs = await smallVg(t, 'vgfault');
  const devs = ['--devices', imgs.join(',')];
  t.deepEqual(await pvckSeqnos(t, imgs), [2, 2]);
  const control = path.join(path.dirname(imgs[0]!), 'faults.json');
  // The write of a.img's mda_header (the commit point) fails; the text was written before it.
  writeControlFile(control, [{ op: 'write', action: 'eio', device: 'a.img', offsetBytes: 4096, lengthBytes: 512 }]);
  const r = await sanboxCli(t, ['lvcreate', '-n', 'lv1', '-L', '4m', 'vgfault', ...devs], { SANBOX_FAULTS: control });
  t.is(r.code, 1);
  t.regex(r.stderr, /a\.img/);
  t.deepEqual(await pvckSeqnos(t, imgs), [2, 2], 'both PVs still commit seqno 3');
  const lvs = JSON.parse((await sanboxCli(t, ['lvs', '--json', ...devs])).stdout).lv;
  t.deepEqual(lvs.map((l: { lv_name: string }) => l.lv_name), ['lv0']);
  const again = await sanboxCli(t, ['lvcreate', '-n', 'lv1', '-L', '4m', 'vgfault', ...devs]);
  t.is(again.code, 0, again.stderr);
  t.deepEqual(await pvckSeqnos(t, imgs), [3, 3]);
});

test('kill -9 between writing the text and switching raw_locn[0] leaves the previous version readable; the real tools agree', async (t) => {
  const imgs = await smallVg(t, 'vgkill');
  const devs = ['--devices', imgs.join(',')];
  const control = path.join(path.dirname(imgs[0]!), 'faults.json');
  // Stall the commit write of a.img's header; the new text is on disk by then.
  writeControlFile(control, [{ id: 'hold', op: 'write', action: 'stall', device: 'a.img', offsetBytes: 4096, lengthBytes: 512 }]);
  const child = spawnChild(t, process.execPath, [SANBOX_BIN, 'lvextend', '-L', '+4m', 'vgkill/lv0', ...devs], { env: { ...process.env, SANBOX_FAULTS: control } });
  collect(child);
  // The new copy (seqno 3) lands after the committed one (at relative 1536 + its padded size)
  // before the process reaches the stalled header write.
  await waitFor(() => readFileAt(imgs[0]!, 4096 + 3072, 64).toString('latin1').startsWith('vgkill {'), 15_000, 'the new text in a.img');
  await new Promise((r) => setTimeout(r, 200));
  child.kill('SIGKILL');
  await exited(child, 5000);
  t.deepEqual(await pvckSeqnos(t, imgs), [2, 2]);
  const lvs = JSON.parse((await sanboxCli(t, ['lvs', '--json', ...devs])).stdout).lv;
  t.is(lvs[0].lv_size, 8 * MiB, 'the extension never happened');
  const vgs = JSON.parse((await sanboxCli(t, ['vgs', '--json', ...devs])).stdout).vg;
  t.is(vgs[0].vg_seqno, 2);
  // The new text sits in the buffer but is not committed; the next change supersedes it.
  const next = await sanboxCli(t, ['lvextend', '-L', '+4m', 'vgkill/lv0', ...devs]);
  t.is(next.code, 0, next.stderr);
  t.deepEqual(await pvckSeqnos(t, imgs), [3, 3]);
  t.is(JSON.parse((await sanboxCli(t, ['lvs', '--json', ...devs])).stdout).lv[0].lv_size, 12 * MiB);
});

test('concurrent lvcreate from separate processes are serialized: every change commits, seqnos are consecutive, no overlap', async (t) => {
  const imgs = await smallVg(t, 'vgrace');
  const devs = ['--devices', imgs.join(',')];
  const runs = await Promise.all([1, 2, 3, 4].map((k) => sanboxCli(t, ['lvcreate', '-n', `par${k}`, '-l', '1', 'vgrace', ...devs])));
  for (const r of runs) t.is(r.code, 0, r.stderr);
  t.deepEqual(await pvckSeqnos(t, imgs), [6, 6]);
  const segs = JSON.parse((await sanboxCli(t, ['lvs', '--segments', '--json', ...devs])).stdout).seg as { lv_name: string; seg_pe_ranges: string }[];
  t.deepEqual(segs.map((s) => s.lv_name).sort(), ['lv0', 'par1', 'par2', 'par3', 'par4']);
  await withSession(imgs, { readOnly: true, guard: 'none' }, async (s) => checkNoOverlap(s.vg('vgrace').vg));
});

test('a commit that reaches only some PVs: the highest seqno wins (with a warning), and the next commit rewrites every mda', async (t) => {
  const imgs = await smallVg(t, 'vghalf');
  const devs = ['--devices', imgs.join(',')];
  const control = path.join(path.dirname(imgs[0]!), 'faults.json');
  writeControlFile(control, [{ op: 'write', action: 'eio', device: 'b.img', offsetBytes: 4096, lengthBytes: 512 }]);
  const r = await sanboxCli(t, ['lvcreate', '-n', 'lv1', '-L', '4m', 'vghalf', ...devs], { SANBOX_FAULTS: control });
  t.is(r.code, 1);
  t.regex(r.stderr, /b\.img/);
  t.deepEqual(await pvckSeqnos(t, imgs), [3, 2], 'a.img committed, b.img did not');
  const vgs = await sanboxCli(t, ['vgs', '--json', ...devs]);
  t.is(JSON.parse(vgs.stdout).vg[0].vg_seqno, 3);
  t.regex(vgs.stderr, /WARNING: Inconsistent metadata found for VG vghalf: older than seqno 3 on .*b\.img/);
  const next = await sanboxCli(t, ['lvcreate', '-n', 'lv2', '-L', '4m', 'vghalf', ...devs]);
  t.is(next.code, 0, next.stderr);
  t.deepEqual(await pvckSeqnos(t, imgs), [4, 4]);
  const lvs = JSON.parse((await sanboxCli(t, ['lvs', '--json', ...devs])).stdout).lv.map((l: { lv_name: string }) => l.lv_name);
  t.deepEqual(lvs, ['lv0', 'lv1', 'lv2']);
});

test('CLI: usage errors exit 2, refusals exit 1 with one line, --help explains', async (t) => {
  const imgs = await smallVg(t, 'vgcli');
  const devs = ['--devices', imgs.join(',')];
  const blank = images(t, ['blank'], 8 * MiB)[0]!;
  const usage: string[][] = [
    ['lvcreate', '-n', 'x', '-L', '4', '-l', '3', 'vgcli', ...devs],
    ['lvcreate', '-n', 'x', 'vgcli', ...devs],
    ['lvextend', '-L', '-4m', 'vgcli/lv0', ...devs],
    ['lvcreate', '-n', 'x', '-l', 'lots', 'vgcli', ...devs],
    ['pvcreate', '--metadatacopies', '3', blank],
    ['vgs'],
  ];
  for (const args of usage) {
    const r = await sanboxCli(t, args, { SANBOX_DEVICES: '' });
    t.is(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, /^sanbox: .+\n$/);
  }
  const refused: [string[], RegExp][] = [
    [['vgcreate', 'vgnew', blank], /not an LVM physical volume \(no label in sectors 0-3\); run pvcreate first/],
    [['vgcreate', 'vgnew', imgs[0]!], /already belongs to volume group vgcli/],
    [['vgcreate', 'vgcli', blank, ...devs], /volume group "vgcli" already exists/],
    [['lvcreate', '-n', 'lv0', '-l', '1', 'vgcli', ...devs], /logical volume vgcli\/lv0 already exists/],
    [['lvcreate', '-n', 'bad/name', '-l', '1', 'vgcli', ...devs], /invalid LV name/],
    [['lvcreate', '-n', 'st', '-l', '2', '-i', '3', 'vgcli', ...devs], /3 stripes need 3 PVs, but only 2 are allocatable/],
    [['lvreduce', '-l', '9', 'vgcli/lv0', ...devs], /is not smaller than the current 2/],
    [['lvremove', 'vgcli/nope', ...devs], /logical volume vgcli\/nope not found/],
    [['vgremove', 'vgcli', ...devs], /volume group "vgcli" contains 1 logical volume: lv0; removing it removes them; pass -y \(--yes\) to confirm, stdin is not a terminal/],
  ];
  for (const [args, re] of refused) {
    const before = [...imgs, blank].map(sha);
    const r = await sanboxCli(t, args);
    t.is(r.code, 1, `${args.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr, re);
    t.is(r.stderr.split('\n').filter(Boolean).length, 1);
    t.deepEqual([...imgs, blank].map(sha), before, `${args[0]} wrote nothing`);
  }
  for (const cmd of ['pvcreate', 'vgcreate', 'lvcreate', 'lvs']) {
    const h = await sanboxCli(t, [cmd, '--help']);
    t.is(h.code, 0);
    t.regex(h.stdout, /Usage: sanbox /);
  }
});

test('an open LV keeps its layout generation while another process extends it; refresh() swaps in the new layout', async (t) => {
  const imgs = await smallVg(t, 'vggen');
  const lv = await openLv(imgs, 'vggen', 'lv0');
  t.teardown(() => lv.close());
  t.is(lv.generation, 2);
  t.is(lv.sizeBytes, 8 * MiB);
  const head = crypto.randomBytes(4096);
  await lv.write(head, 0);
  const r = await sanboxCli(t, ['lvextend', '-L', '+8m', 'vggen/lv0', '--devices', imgs.join(',')]);
  t.is(r.code, 0, r.stderr);
  // Still the old map: the new extents are out of range until the layout is refreshed.
  t.is(lv.sizeBytes, 8 * MiB);
  await t.throwsAsync(lv.write(Buffer.alloc(4096), 8 * MiB), { message: /beyond end of device/ });
  t.is(await lv.refresh(), 3);
  t.is(lv.generation, 3);
  t.is(lv.sizeBytes, 16 * MiB);
  const tail = crypto.randomBytes(4096);
  await lv.write(tail, 16 * MiB - 4096);
  const back = Buffer.alloc(4096);
  await lv.read(back, 0);
  t.true(back.equals(head));
  // Each 16 MiB PV holds 3 extents of 4 MiB from pe_start 1 MiB: the extension took a.img PE 2
  // (right after the LV) and then b.img PE 0, so the LV's last 4 KiB end b.img's PE 0.
  const segs = JSON.parse((await sanboxCli(t, ['lvs', '--segments', '--json', '--devices', imgs.join(',')])).stdout).seg;
  t.deepEqual(segs.map((s: { seg_pe_ranges: string }) => s.seg_pe_ranges), [`${imgs[0]}:0-2`, `${imgs[1]}:0-0`]);
  t.true(readFileAt(imgs[1]!, MiB + 4 * MiB - 4096, 4096).equals(tail));
});

/** A device over a Buffer, for fuzzing whole PVs in memory. */
class MemDevice {
  readonly sectorSizeBytes = 512 as const;
  readonly readOnly = true;
  constructor(
    readonly name: string,
    private readonly data: Buffer,
  ) {}
  get sizeBytes(): number {
    return this.data.length;
  }
  async read(buf: Buffer, off: number): Promise<void> {
    if (off < 0 || off + buf.length > this.data.length) throw new SanboxError('EBOUNDS', `${this.name}: read beyond end at offset ${off}`);
    this.data.copy(buf, 0, off, off + buf.length);
  }
  async write(): Promise<void> {
    throw new Error('fuzz devices are read-only');
  }
  async flush(): Promise<void> {}
  async discard(): Promise<void> {}
  async close(): Promise<void> {}
}

test('fuzz: bit flips anywhere in a PV\'s label, mda header and metadata text give only typed errors when scanned', async (t) => {
  const rnd = fuzzRandom(t);
  const [img] = images(t, ['fz'], 8 * MiB) as [string];
  await pvCreate([img], { metadataSizeBytes: 32 * 1024, dataAlignmentBytes: 64 * 1024 });
  await vgCreate([img], [img], 'vgfuzz', 128, ctx());
  for (let i = 0; i < 3; i++) await lvCreate([img], 'vgfuzz', `l${i}`, { size: { kind: 'extents', sign: '', extents: 2 } }, ctx());
  const pristine = readFileAt(img, 0, 8 * MiB);
  const hot = [
    [512, 512],
    [4096, 512],
    [4096 + 512, 8 * 1024],
  ] as const;
  let typed = 0;
  const data = Buffer.from(pristine);
  for (let i = 0; i < 1500; i++) {
    const [start, len] = hot[i % hot.length]!;
    // Undo the previous mutant's flips (only the hot regions are ever touched).
    for (const [s, l] of hot) pristine.copy(data, s, s, s + l);
    for (let k = 0; k <= i % 3; k++) data[start + rnd.int(len)] ^= 1 << rnd.int(8);
    try {
      const scan = await scanDevices([new MemDevice('fz.img', data)]);
      if (scan[0]!.pv) findVg(scan, 'vgfuzz');
    } catch (err) {
      if (!(err instanceof SanboxError)) return t.fail(`iteration ${i}: untyped ${String((err as Error).stack)}`);
      typed++;
    }
  }
  t.log(`${typed} of 1500 mutants were refused with a typed error; the rest were harmless (padding, comments, names)`);
  t.true(typed > 500);
});

test('readers in other processes never see a half-made change while a writer commits repeatedly', async (t) => {
  const imgs = await smallVg(t, 'vgread');
  const devs = ['--devices', imgs.join(',')];
  // One writer process renames the LV back and forth; this process lists it meanwhile, without
  // pause. The reader's scans share this test process with the file's other tests, so under load
  // the writer could finish before the reader got a turn: after each commit the writer waits until
  // the reader has started two more scans (a count in a file), so at least one scan reads each
  // committed version while the others overlap the commits.
  const scansFile = path.join(path.dirname(imgs[0]!), 'scans');
  fs.writeFileSync(scansFile, '0');
  const writer = spawnChild(t, process.execPath, [
    '--input-type=module',
    '-e',
    `import fs from 'node:fs';
     import { commitContext, lvRename } from ${JSON.stringify(path.join(REPO_DIST, 'src/volume/manager.js'))};
     const imgs = ${JSON.stringify(imgs)};
     const scans = () => Number(fs.readFileSync(${JSON.stringify(scansFile)}, 'utf8') || '0');
     const scansAfter = async (n) => {
       for (let waitedMs = 0; scans() < n; waitedMs += 2) {
         if (waitedMs > 30000) throw new Error('the reader made no scan for 30 s');
         await new Promise((r) => setTimeout(r, 2));
       }
     };
     await scansAfter(1);
     for (let i = 0; i < 60; i++) {
       await lvRename(imgs, 'vgread', i % 2 ? 'odd' : 'lv0', i % 2 ? 'lv0' : 'odd', commitContext('writer'));
       await scansAfter(scans() + 2);
     }`,
  ]);
  const wio = collect(writer);
  const seen = new Set<string>();
  let reads = 0;
  // This test process is the reader: it scans the images as fast as it can while the writer runs.
  const readerStartMs = performance.now();
  while (writer.exitCode === null && performance.now() - readerStartMs < 60_000) {
    const names = await withSession(imgs, { readOnly: true, guard: 'none' }, async (s) => s.vg('vgread').vg.lvs.map((l) => l.name));
    names.forEach((n) => seen.add(n));
    fs.writeFileSync(scansFile, String(++reads));
  }
  const r = await sanboxCli(t, ['lvs', '--json', ...devs]);
  t.is(r.code, 0, r.stderr);
  const { code } = await exited(writer, 60_000);
  t.is(code, 0, wio.err());
  t.log(`${reads} scans ran during the writer's 60 commits; names seen: ${[...seen].join(', ')}`);
  t.true(reads >= 2, 'the reader scanned while the writer committed');
  t.true(seen.has('odd') && seen.has('lv0'), 'the reader saw both versions');
  t.true([...seen].every((n) => n === 'lv0' || n === 'odd'));
  t.deepEqual(await pvckSeqnos(t, imgs), [62, 62]);
});
