// Issue 15's mechanisms, one test each: the signature table, a competing commit detected before
// any write, an honest outcome after the commit point, atomic creates, real block-device sizes,
// and the in-use guard across a loop device and its backing file.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { FileDisk } from '../src/disk/file-disk.js';
import { writeControlFile } from '../src/disk/fault-device.js';
import { SanboxError } from '../src/errors.js';
import { CLUSTER_MAGIC } from '../src/format/cluster-image.js';
import { describeSignature, findSignatures, SIGNATURE_PROBE_BYTES } from '../src/format/signatures.js';
import { commitContext } from '../src/volume/manager.js';
import { commitVg, findVg, scanDevices } from '../src/volume/vg.js';
import { runCliInProcess } from './helpers/cli-inprocess.js';
import { attachLoop, sanboxCli } from './helpers/lvm-real.js';
import { ownLockDir, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const MiB = 1024 * 1024;
const sha = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

async function cli(args: string[]): Promise<void> {
  const r = await runCliInProcess(args);
  if (r.code !== 0) throw new Error(`sanbox ${args.join(' ')}: ${r.stderr}`);
}

async function twoPvVg(dir: string, vg: string): Promise<string[]> {
  const imgs = ['a', 'b'].map((n) => path.join(dir, `${n}.img`));
  for (const i of imgs) await cli(['disk', 'create', i, '--size', '16M']);
  await cli(['pvcreate', ...imgs]);
  await cli(['vgcreate', vg, ...imgs]);
  return imgs;
}

test('one signature table: sanbox formats, PV, ocfs2 and foreign ones; the strongest first; a clear wrong-kind sentence', (t) => {
  const head = (at: number, magic: Buffer): Buffer => {
    const b = Buffer.alloc(SIGNATURE_PROBE_BYTES);
    magic.copy(b, at);
    return b;
  };
  const cases: [number, Buffer, string][] = [
    [0, Buffer.from(CLUSTER_MAGIC), 'sanbox-cluster'],
    [0, Buffer.from('SBLH'), 'sanbox-lockspace'],
    [512, Buffer.from('LABELONE'), 'LVM2_member'],
    [1536, Buffer.from('LABELONE'), 'LVM2_member'],
    [8192, Buffer.from('OCFSV2'), 'ocfs2'],
    [1024, Buffer.from('OCFSV2'), 'ocfs2'],
    [0x438, Buffer.from([0x53, 0xef]), 'ext4'],
    [0x10040, Buffer.from('_BHRfS_M'), 'btrfs'],
    [4086, Buffer.from('SWAPSPACE2'), 'swap'],
    [512, Buffer.from('EFI PART'), 'gpt'],
    [510, Buffer.from([0x55, 0xaa]), 'dos'],
  ];
  for (const [at, magic, type] of cases) t.is(findSignatures(head(at, magic))[0]?.type as string | undefined, type, type);
  t.deepEqual(findSignatures(Buffer.alloc(SIGNATURE_PROBE_BYTES)), []);
  // A short head (a tiny device) finds what fits and nothing else.
  t.deepEqual(findSignatures(Buffer.from('XFSB')).map((h) => h.type), ['xfs']);
  const ocfs2 = head(8192, Buffer.from('OCFSV2'));
  t.is(describeSignature('vol.img', ocfs2, 'a sanbox cluster image'), 'vol.img is an ocfs2 volume (signature at offset 8192), not a sanbox cluster image');
  t.regex(describeSignature('z.img', Buffer.alloc(4096), 'an ocfs2 volume'), /^z\.img is not an ocfs2 volume: its first 4096 bytes are zero/);
});

test('a competing commit (a writer without the shared lock) is detected before anything is written', async (t) => {
  const dir = tempDir(t);
  const imgs = await twoPvVg(dir, 'vgrace');
  const open = async (): Promise<FileDisk[]> => imgs.map((i) => FileDisk.open(i, { guard: 'none' }));
  const devsA = await open();
  const devsB = await open();
  t.teardown(async () => {
    for (const d of [...devsA, ...devsB]) await d.close();
  });
  // Both read seqno 1; A commits seqno 2; B, planned from seqno 1, must not overwrite it.
  const a = findVg(await scanDevices(devsA), 'vgrace');
  const b = findVg(await scanDevices(devsB), 'vgrace');
  const ctx = commitContext('test');
  await commitVg({ next: { ...structuredClone(a.vg), seqno: 2, tags: ['by-a'] }, pvByKey: a.pvByKey, baseSeqno: 1 }, ctx);
  const afterA = imgs.map(sha);
  const err = await t.throwsAsync(commitVg({ next: { ...structuredClone(b.vg), seqno: 2, tags: ['by-b'] }, pvByKey: b.pvByKey, baseSeqno: 1 }, ctx), { instanceOf: SanboxError });
  t.is(err?.code, 'EAGAIN');
  t.regex(err?.message ?? '', /a\.img: volume group vgrace was changed by another writer since this command read it \(metadata header at offset 4096 .*\); nothing was written by this command/);
  t.deepEqual(imgs.map(sha), afterA, 'the losing writer wrote nothing');
  const now = findVg(await scanDevices(await open()), 'vgrace');
  t.deepEqual(now.vg.tags, ['by-a']);
});

test('an I/O error after the commit point: the outcome says which seqno is committed where', async (t) => {
  const dir = tempDir(t);
  const imgs = await twoPvVg(dir, 'vghonest');
  const control = path.join(dir, 'faults.json');
  // a.img's header is written first (the commit point), b.img's fails.
  writeControlFile(control, [{ op: 'write', action: 'eio', device: 'b.img', offsetBytes: 4096, lengthBytes: 512 }]);
  const r = await sanboxCli(t, ['lvcreate', '-n', 'lv1', '-L', '4m', 'vghonest', '--devices', imgs.join(',')], { SANBOX_FAULTS: control });
  t.is(r.code, 1);
  t.regex(r.stderr, /^sanbox: volume group vghonest committed as seqno 2 on 1 of 2 metadata copies; not updated: .*b\.img at offset 4096 \(.*\); readers use seqno 2, and the next change rewrites the others\n$/);
  const lvs = await runCliInProcess(['lvs', '--json', '--devices', imgs.join(',')]);
  t.regex(lvs.stdout, /"lv1"/, 'the LV exists, as the message says');
  // A failure before the commit point says nothing was committed.
  writeControlFile(control, [{ op: 'write', action: 'eio', device: 'a.img', offsetBytes: 4096, lengthBytes: 512 }]);
  const r2 = await sanboxCli(t, ['lvcreate', '-n', 'lv2', '-L', '4m', 'vghonest', '--devices', imgs.join(',')], { SANBOX_FAULTS: control });
  t.is(r2.code, 1);
  t.regex(r2.stderr, /nothing was committed: volume group vghonest is still at seqno 2/);
});

test('disk create is atomic: a size the file system cannot hold leaves the old image and no temporary file', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'keep.img');
  await cli(['disk', 'create', img, '--size', '4M', '--sector-size', '4096']);
  fs.writeFileSync(img, Buffer.alloc(4 * MiB, 0x5a));
  const before = sha(img);
  const sidecar = fs.readFileSync(`${img}.sanbox.json`, 'utf8');
  const r = await runCliInProcess(['disk', 'create', img, '--size', '1P', '--force']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^sanbox: .*keep\.img: cannot create a 1125899906842624-byte image: file too large for the file system \(EFBIG\)\n$/);
  t.is(sha(img), before);
  t.is(fs.readFileSync(`${img}.sanbox.json`, 'utf8'), sidecar);
  t.deepEqual(fs.readdirSync(dir).sort(), ['keep.img', 'keep.img.sanbox.json']);
  // And a replacement that succeeds is whole: new size, new sidecar.
  await cli(['disk', 'create', img, '--size', '2M', '--force']);
  t.is(fs.statSync(img).size, 2 * MiB);
  t.regex(fs.readFileSync(`${img}.sanbox.json`, 'utf8'), /"sectorSizeBytes":512/);
  t.deepEqual(fs.readdirSync(dir).sort(), ['keep.img', 'keep.img.sanbox.json']);
});

test('block devices report their real size; a loop device and its backing file are one disk to the in-use guard', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'disk.img');
  await cli(['disk', 'create', img, '--size', '64M']);
  const loop = await attachLoop(t, img);
  const info = await runCliInProcess(['disk', 'info', loop, '--json']);
  t.is(info.code, 0, info.stderr);
  t.is(JSON.parse(info.stdout).sizeBytes, 64 * MiB);
  // Held through the file: the loop device is busy for a destructive tool, and the other way round.
  const viaFile = FileDisk.open(img, { guard: 'shared' });
  const busy = await runCliInProcess(['mkfs', loop, '--slots', '2', '--force']);
  viaFile.closeSync();
  t.is(busy.code, 1);
  t.regex(busy.stderr, /^sanbox: \/dev\/loop\d+: device busy: in use by another process/);
  const viaLoop = FileDisk.open(loop, { guard: 'shared' });
  const busy2 = await runCliInProcess(['pvcreate', '-f', img]);
  viaLoop.closeSync();
  t.is(busy2.code, 1);
  t.regex(busy2.stderr, /disk\.img: device busy: in use by another process/);
  // Directories and FIFOs are refused before anything opens them.
  const r = await runCliInProcess(['disk', 'info', dir]);
  t.regex(r.stderr, /not a disk \(a directory; a disk is a regular file or a block device\)/);
});

test('cluster init that fails half-way (an I/O error on the header) leaves no image behind, so a retry works', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  const control = path.join(dir, 'faults.json');
  writeControlFile(control, [{ op: 'write', action: 'eio', device: 'c.img', offsetBytes: 0, lengthBytes: 512 }]);
  const r = await sanboxCli(t, ['cluster', 'init', img, '--nodes', '2', '--name', 'retry'], { SANBOX_FAULTS: control });
  t.is(r.code, 1);
  t.is(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
  t.deepEqual(fs.readdirSync(dir).sort(), ['faults.json']);
  const again = await runCliInProcess(['cluster', 'init', img, '--nodes', '2', '--name', 'retry']);
  t.is(again.code, 0, again.stderr);
});

test('cluster init --force over an existing image that fails half-way leaves the old image and its sidecar untouched', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  const first = await runCliInProcess(['cluster', 'init', img, '--nodes', '2', '--name', 'old']);
  t.is(first.code, 0, first.stderr);
  const sha = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
  const before = { image: sha(img), sidecar: sha(`${img}.sanbox.json`), size: fs.statSync(img).size };
  const control = path.join(dir, 'faults.json');
  // The rebuilt image fails on its config region's write, after its header and region headers landed.
  writeControlFile(control, [{ op: 'write', action: 'eio', device: 'c.img', afterOps: 3 }]);
  const r = await sanboxCli(t, ['cluster', 'init', img, '--nodes', '4', '--name', 'new', '--force'], { SANBOX_FAULTS: control });
  t.is(r.code, 1, r.stdout);
  t.is(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
  t.deepEqual({ image: sha(img), sidecar: sha(`${img}.sanbox.json`), size: fs.statSync(img).size }, before);
  t.deepEqual(fs.readdirSync(dir).sort(), ['c.img', 'c.img.sanbox.json', 'faults.json'], 'no temporary image left behind');
  const status = await runCliInProcess(['cluster', 'status', img, '--json']);
  t.is(status.code, 0, status.stderr);
  t.regex(status.stdout, /"old"/);
});
