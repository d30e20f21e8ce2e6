import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { createImage, FaultDevice, FileDisk, writeControlFile } from '../src/disk/index.js';
import { DiskError } from '../src/errors.js';
import { checkRecord, makeRecord } from './helpers/sector-record.js';
import { tempDir } from './helpers/tmp.js';

const MiB = 1024 * 1024;

function setup(t: import('ava').ExecutionContext, control?: string): FaultDevice {
  const img = path.join(tempDir(t), 'f.img');
  createImage(img, { sizeBytes: MiB });
  const dev = new FaultDevice(FileDisk.open(img), control);
  t.teardown(() => dev.closeSync());
  return dev;
}

test('EIO on a chosen byte range only', async (t) => {
  const dev = setup(t);
  dev.inject({ action: 'eio', op: 'write', offsetBytes: 4096, lengthBytes: 512 });
  dev.writeSync(Buffer.alloc(512), 0);
  dev.writeSync(Buffer.alloc(512), 8192);
  const err = t.throws(() => dev.writeSync(Buffer.alloc(1024), 3584), { instanceOf: DiskError });
  t.is(err?.code, 'EIO');
  t.regex(err?.message ?? '', /f\.img: write failed at offset 3584 length 1024: injected I\/O error/);
  await t.throwsAsync(dev.write(Buffer.alloc(512), 4096), { instanceOf: DiskError });
  dev.readSync(Buffer.alloc(512), 4096); // reads unaffected
});

test('EIO after N operations, at most count times', (t) => {
  const dev = setup(t);
  dev.inject({ action: 'eio', afterOps: 3, count: 2 });
  const b = Buffer.alloc(512);
  for (let i = 0; i < 3; i++) dev.readSync(b, 0);
  t.throws(() => dev.readSync(b, 0), { instanceOf: DiskError });
  t.throws(() => dev.writeSync(b, 0), { instanceOf: DiskError });
  dev.readSync(b, 0);
});

test('latency is added per operation', async (t) => {
  const dev = setup(t);
  dev.inject({ action: 'latency', latencyMs: 30 });
  let start = performance.now();
  dev.readSync(Buffer.alloc(512), 0);
  t.true(performance.now() - start >= 25);
  start = performance.now();
  await dev.read(Buffer.alloc(512), 0);
  t.true(performance.now() - start >= 25);
});

test('a stall holds the I/O until released', async (t) => {
  const dev = setup(t);
  const id = dev.inject({ action: 'stall', op: 'write' });
  let done = false;
  const p = dev.write(Buffer.from('late'), 0).then(() => (done = true));
  await new Promise((r) => setTimeout(r, 100));
  t.false(done, 'still stalled');
  const b = Buffer.alloc(4);
  dev.readSync(b, 0);
  t.is(b.toString('hex'), '00000000', 'nothing landed while stalled');
  dev.release(id);
  await p;
  dev.readSync(b, 0);
  t.is(b.toString(), 'late');
});

test('a torn write lands only a prefix of its sectors and the reader detects it through the CRC', (t) => {
  const dev = setup(t);
  // Old content: a valid record for sectors 0..3 as one 2 KiB write.
  const old = Buffer.concat([0, 1, 2, 3].map((s) => makeRecord(1, s, 1)));
  dev.writeSync(old, 0);
  dev.inject({ action: 'torn', tornSectors: 2, count: 1 });
  // The new 2 KiB write of one 2 KiB record is torn after its first 2 sectors.
  const rec = Buffer.alloc(2048);
  makeRecord(2, 0, 2).copy(rec, 0);
  rec.fill(0x5a, 512);
  const big = makeBigRecord(rec);
  t.throws(() => dev.writeSync(big, 0), { instanceOf: DiskError, message: /torn write injected \(1024 of 2048 bytes landed\)/ });
  const back = Buffer.alloc(2048);
  dev.readSync(back, 0);
  t.deepEqual(back.subarray(0, 1024), big.subarray(0, 1024), 'prefix landed');
  t.deepEqual(back.subarray(1024), old.subarray(1024), 'suffix is the old data');
  t.false(checkBigRecord(back), 'the torn record fails its CRC');
  t.true(checkBigRecord(big));
});

// A 2 KiB record with a CRC over all of it (the first 4 bytes), to show tearing across sectors.
import { crc32Zlib } from '../src/format/crc32.js';
function makeBigRecord(b: Buffer): Buffer {
  const r = Buffer.from(b);
  r.writeUInt32LE(crc32Zlib(r.subarray(4)), 0);
  return r;
}
function checkBigRecord(b: Buffer): boolean {
  return crc32Zlib(b.subarray(4)) === b.readUInt32LE(0);
}

test('rules from a control file are picked up while the device is open, and removing a stall releases it', async (t) => {
  const control = path.join(tempDir(t), 'faults.json');
  const dev = setup(t, control);
  const b = Buffer.alloc(512);
  dev.readSync(b, 0);
  writeControlFile(control, [{ id: 'x', action: 'eio', op: 'read' }]);
  await new Promise((r) => setTimeout(r, 30));
  t.throws(() => dev.readSync(b, 0), { instanceOf: DiskError, message: /injected/ });
  writeControlFile(control, [{ id: 's', action: 'stall', op: 'write' }]);
  await new Promise((r) => setTimeout(r, 30));
  let done = false;
  const p = dev.write(b, 0).then(() => (done = true));
  await new Promise((r) => setTimeout(r, 60));
  t.false(done);
  writeControlFile(control, []);
  await p;
  t.true(done);
  dev.readSync(b, 0);
});

test('bad fault rules are rejected with a clear error', (t) => {
  const dev = setup(t);
  t.throws(() => dev.inject({ action: 'explode' as 'eio' }), { instanceOf: DiskError, message: /action must be one of/ });
  t.throws(() => dev.inject({ action: 'eio', afterOps: -1 }), { instanceOf: DiskError, message: /afterOps must be a non-negative integer/ });
  t.throws(() => writeControlFile('/nonexistent/x.json', [{ action: 'latency', latencyMs: 1.5 }]), { instanceOf: DiskError });
});

test('checkRecord sees through a 512-byte record', (t) => {
  const r = makeRecord(3, 9, 4);
  t.like(checkRecord(r), { ok: true, writer: 3, sector: 9, seq: 4 });
  r[100] ^= 1;
  t.like(checkRecord(r), { ok: false });
});

test('an invalid control file changes nothing: the rules in force stay, and I/O does not fail because of it', async (t) => {
  const control = path.join(tempDir(t), 'faults.json');
  const dev = setup(t, control);
  writeControlFile(control, [{ id: 'x', action: 'eio', op: 'read' }]);
  await new Promise((r) => setTimeout(r, 30));
  t.throws(() => dev.readSync(Buffer.alloc(512), 0), { instanceOf: DiskError, message: /injected/ });
  fs.writeFileSync(control, '{"rules": [ half-written');
  await new Promise((r) => setTimeout(r, 30));
  t.throws(() => dev.readSync(Buffer.alloc(512), 0), { instanceOf: DiskError, message: /injected/ }, 'the EIO rule still holds');
  dev.writeSync(Buffer.alloc(512), 0); // writes were never affected, and are not now
  writeControlFile(control, []);
  await new Promise((r) => setTimeout(r, 30));
  dev.readSync(Buffer.alloc(512), 0);
});
