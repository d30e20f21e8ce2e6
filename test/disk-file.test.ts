import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import {
  checkAligned,
  createImage,
  diskInfo,
  FileDisk,
  InUseGuard,
  probeInUse,
  readSectors,
  sidecarPath,
  viewOf,
  writeSectors,
} from '../src/disk/index.js';
import { DiskError, type ErrorCode } from '../src/errors.js';
import { tempDir } from './helpers/tmp.js';

const MiB = 1024 * 1024;

function expectDiskError(t: import('ava').ExecutionContext, fn: () => unknown, code: ErrorCode, re: RegExp): void {
  const err = t.throws(fn, { instanceOf: DiskError });
  t.is(err?.code, code);
  t.regex(err?.message ?? '', re);
}

test('createImage makes a sparse image of the exact size and records the sector size', (t) => {
  const img = path.join(tempDir(t), 'a.img');
  createImage(img, { sizeBytes: 1024 * MiB, sectorSizeBytes: 4096 });
  const info = diskInfo(img);
  t.is(info.sizeBytes, 1024 * MiB);
  t.is(info.sectorSizeBytes, 4096);
  t.true(info.sectorSizeRecorded);
  t.true(info.allocatedBytes <= 64 * 1024, `allocated ${info.allocatedBytes}`);
  t.false(info.inUse);
  const dev = FileDisk.open(img);
  t.is(dev.sectorSizeBytes, 4096);
  t.is(dev.sizeBytes, 1024 * MiB);
  dev.closeSync();
});

test('an image made by another tool (no sidecar) is a 512-byte-sector disk', (t) => {
  const img = path.join(tempDir(t), 'raw.img');
  fs.writeFileSync(img, Buffer.alloc(4096));
  const info = diskInfo(img);
  t.is(info.sectorSizeBytes, 512);
  t.false(info.sectorSizeRecorded);
});

test('createImage refuses bad sizes, an existing image without force, and a corrupt sidecar is reported', (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'a.img');
  expectDiskError(t, () => createImage(img, { sizeBytes: 1000 }), 'EINVAL', /multiple of the sector size/);
  expectDiskError(t, () => createImage(img, { sizeBytes: 8192, sectorSizeBytes: 1024 as 512 }), 'EINVAL', /512 or 4096/);
  createImage(img, { sizeBytes: 8192 });
  expectDiskError(t, () => createImage(img, { sizeBytes: 8192 }), 'EEXIST', /already exists/);
  fs.writeFileSync(sidecarPath(img), '{"version": 9}');
  expectDiskError(t, () => FileDisk.open(img), 'EIO', /unsupported sidecar/);
  expectDiskError(t, () => FileDisk.open(path.join(dir, 'missing.img')), 'ENOENT', /no such device/);
});

test('read and write at byte offsets round-trip, sync and promise forms', async (t) => {
  const img = path.join(tempDir(t), 'a.img');
  createImage(img, { sizeBytes: 4 * MiB });
  const dev = FileDisk.open(img);
  const data = Buffer.from('hello, shared disk');
  dev.writeSync(data, 12345);
  const back = Buffer.alloc(data.length);
  dev.readSync(back, 12345);
  t.deepEqual(back, data);
  await dev.write(Buffer.from('promise'), 4 * MiB - 7);
  const tail = Buffer.alloc(7);
  await dev.read(tail, 4 * MiB - 7);
  t.is(tail.toString(), 'promise');
  await dev.flush();
  await dev.close();
  t.is(fs.readFileSync(img).subarray(12345, 12345 + data.length).toString(), data.toString());
});

test('every I/O is bounds-checked with an error naming device, offset and length', async (t) => {
  const img = path.join(tempDir(t), 'a.img');
  createImage(img, { sizeBytes: MiB });
  const dev = FileDisk.open(img);
  t.teardown(() => dev.closeSync());
  const buf = Buffer.alloc(512);
  expectDiskError(t, () => dev.readSync(buf, MiB - 511), 'EBOUNDS', new RegExp(`${img}: I/O beyond end of device: offset ${MiB - 511} length 512`));
  expectDiskError(t, () => dev.writeSync(buf, MiB), 'EBOUNDS', /beyond end of device/);
  expectDiskError(t, () => dev.readSync(buf, -1), 'EBOUNDS', /invalid I\/O range/);
  expectDiskError(t, () => dev.readSync(buf, 0.5), 'EBOUNDS', /invalid I\/O range/);
  expectDiskError(t, () => dev.discardSync(MiB - 512, 1024), 'EBOUNDS', /beyond end/);
  await t.throwsAsync(dev.read(buf, MiB), { instanceOf: DiskError, message: /beyond end/ });
});

test('sector I/O enforces alignment', async (t) => {
  const img = path.join(tempDir(t), 'a.img');
  createImage(img, { sizeBytes: MiB, sectorSizeBytes: 4096 });
  const dev = FileDisk.open(img);
  t.teardown(() => dev.closeSync());
  expectDiskError(t, () => checkAligned(dev, 512, 4096), 'EALIGN', /unaligned sector I\/O: offset 512 length 4096 \(sector size 4096\)/);
  await t.throwsAsync(writeSectors(dev, 1, Buffer.alloc(512)), { instanceOf: DiskError, message: /unaligned/ });
  await writeSectors(dev, 2, Buffer.alloc(4096, 7));
  const back = await readSectors(dev, 2, 1);
  t.is(back[4095], 7);
});

test('a read-only device refuses writes; a closed device refuses I/O', (t) => {
  const img = path.join(tempDir(t), 'a.img');
  createImage(img, { sizeBytes: MiB });
  const ro = FileDisk.open(img, { readOnly: true });
  expectDiskError(t, () => ro.writeSync(Buffer.alloc(512), 0), 'EIO', /read-only/);
  ro.closeSync();
  expectDiskError(t, () => ro.readSync(Buffer.alloc(512), 0), 'ECLOSED', /closed/);
});

test('a short read (the image shrank underneath) is reported, not returned as data', (t) => {
  const img = path.join(tempDir(t), 'a.img');
  createImage(img, { sizeBytes: MiB });
  const dev = FileDisk.open(img);
  t.teardown(() => dev.closeSync());
  fs.truncateSync(img, 4096);
  expectDiskError(t, () => dev.readSync(Buffer.alloc(8192), 0), 'ESHORT', /short read at offset 0: 4096 of 8192 bytes/);
});

test('discard makes a range read as zeros and punches large ranges out of the file', (t) => {
  const img = path.join(tempDir(t), 'a.img');
  createImage(img, { sizeBytes: 8 * MiB });
  const dev = FileDisk.open(img);
  t.teardown(() => dev.closeSync());
  dev.writeSync(Buffer.alloc(4 * MiB, 0xaa), 0);
  dev.flushSync();
  const before = diskInfo(img).allocatedBytes;
  t.true(before >= 4 * MiB);
  dev.discardSync(0, 2 * MiB); // large: punched
  dev.discardSync(3 * MiB, 1000); // small: zeroed
  const b = Buffer.alloc(4 * MiB);
  dev.readSync(b, 0);
  t.true(b.subarray(0, 2 * MiB).every((x) => x === 0));
  t.true(b.subarray(3 * MiB, 3 * MiB + 1000).every((x) => x === 0));
  t.is(b[3 * MiB + 1000], 0xaa);
  t.is(b[2 * MiB], 0xaa);
  t.true(diskInfo(img).allocatedBytes <= before - 2 * MiB, 'punched blocks are freed');
});

test('in-use guard: users share, a destructive open is refused with "device busy"', (t) => {
  const img = path.join(tempDir(t), 'a.img');
  createImage(img, { sizeBytes: MiB });
  const a = FileDisk.open(img);
  const b = FileDisk.open(img);
  t.true(probeInUse(img).inUse);
  t.true(diskInfo(img).inUse);
  expectDiskError(t, () => FileDisk.open(img, { guard: 'exclusive' }), 'EBUSY', new RegExp(`${img}: device busy`));
  expectDiskError(t, () => createImage(img, { sizeBytes: MiB, force: true }), 'EBUSY', /device busy/);
  a.closeSync();
  b.closeSync();
  t.false(probeInUse(img).inUse);
  const ex = FileDisk.open(img, { guard: 'exclusive' });
  expectDiskError(t, () => FileDisk.open(img), 'EBUSY', /busy/);
  ex.closeSync();
  const g = InUseGuard.acquire(img, 'shared');
  t.true(g.held);
  g.release();
  t.false(g.held);
});

test('views are devices bounded to their window', async (t) => {
  const img = path.join(tempDir(t), 'a.img');
  createImage(img, { sizeBytes: 4 * MiB });
  const dev = FileDisk.open(img);
  t.teardown(() => dev.closeSync());
  const v = viewOf(dev, MiB, MiB, 'part1');
  t.is(v.sizeBytes, MiB);
  t.is(v.sectorSizeBytes, 512);
  v.writeSync(Buffer.from('in view'), 0);
  await v.write(Buffer.from('end'), MiB - 3);
  const b = Buffer.alloc(7);
  dev.readSync(b, MiB);
  t.is(b.toString(), 'in view');
  expectDiskError(t, () => v.writeSync(Buffer.alloc(4), MiB - 3), 'EBOUNDS', /part1: I\/O beyond end of device/);
  await t.throwsAsync(v.read(Buffer.alloc(1), MiB), { instanceOf: DiskError });
  expectDiskError(t, () => viewOf(dev, 3 * MiB, 2 * MiB), 'EBOUNDS', /beyond end/);
  expectDiskError(t, () => viewOf(dev, 100, 512), 'EALIGN', /not aligned/);
  // A view of a view stays inside both.
  const vv = viewOf(v, 512, 1024);
  expectDiskError(t, () => vv.readSync(Buffer.alloc(1025), 0), 'EBOUNDS', /beyond end/);
  vv.writeSync(Buffer.from('x'), 0);
  const one = Buffer.alloc(1);
  dev.readSync(one, MiB + 512);
  t.is(one.toString(), 'x');
});
