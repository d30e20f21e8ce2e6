// The disk layer's contract, over NBD: the same checks the file-disk tests make (bounds, sector
// alignment, read-only, closed, discard, views, fault wrapping, several OS processes writing one
// disk), run against devices opened with openDevice('nbd://…') from a real nbdkit on 127.0.0.1,
// plus `sanbox disk info nbd://…` as a user would run it.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { checkAligned, FaultDevice, readSectors, viewOf, writeControlFile, writeSectors, type BlockDevice } from '../src/disk/index.js';
import { NbdDevice } from '../src/disk/nbd-device.js';
import { openDevice } from '../src/disk/open.js';
import { DiskError, type ErrorCode } from '../src/errors.js';
import { startNbdkit, type Nbdkit } from './helpers/nbdkit.js';
import { checkRecord, RECORD_BYTES } from './helpers/sector-record.js';
import { collect, exited, REPO_ROOT, runSanbox, spawnChild, tempDir } from './helpers/tmp.js';

const MiB = 1024 * 1024;
const WRITER = path.join(REPO_ROOT, 'dist/test/helpers/device-sector-writer.js');
const CHILD_TIMEOUT_MS = 60_000;

interface Served {
  srv: Nbdkit;
  dir: string;
  file: string;
  spec: string;
}

async function served(t: ExecutionContext, sizeBytes: number, nbdkitFilters: { filters?: string[]; filterParams?: string[]; flags?: string[] } = {}): Promise<Served> {
  const dir = tempDir(t);
  const file = path.join(dir, 'disk.img');
  fs.writeFileSync(file, '');
  fs.truncateSync(file, sizeBytes);
  const srv = await startNbdkit({ dir, ...nbdkitFilters });
  t.teardown(() => srv.stop('SIGKILL'));
  return { srv, dir, file, spec: srv.uri('disk.img') };
}

async function openNbd(t: ExecutionContext, spec: string, opts: { readOnly?: boolean } = {}): Promise<BlockDevice> {
  const dev = await openDevice(spec, opts);
  t.teardown(() => dev.close().catch(() => undefined));
  return dev;
}

async function expectDiskError(t: ExecutionContext, p: Promise<unknown>, code: ErrorCode, re: RegExp): Promise<void> {
  const err = await t.throwsAsync(p, { instanceOf: DiskError });
  t.is(err?.code, code);
  t.regex(err?.message ?? '', re);
}

test('read and write at byte offsets round-trip, up to the last byte', async (t) => {
  const { spec, file } = await served(t, 4 * MiB);
  const dev = await openNbd(t, spec);
  t.true(dev instanceof NbdDevice);
  await dev.write(Buffer.from('promise'), 4 * MiB - 7);
  const tail = Buffer.alloc(7);
  await dev.read(tail, 4 * MiB - 7);
  t.is(tail.toString(), 'promise');
  await dev.flush();
  t.is(fs.readFileSync(file).subarray(4 * MiB - 7).toString(), 'promise');
});

test('every I/O is bounds-checked with an error naming device, offset and length; nothing is sent', async (t) => {
  const { spec } = await served(t, MiB);
  const dev = await openNbd(t, spec);
  const buf = Buffer.alloc(512);
  const name = spec.replace(/[.?]/g, '\\$&');
  await expectDiskError(t, dev.read(buf, MiB - 511), 'EBOUNDS', new RegExp(`${name}: I/O beyond end of device: offset ${MiB - 511} length 512`));
  await expectDiskError(t, dev.write(buf, MiB), 'EBOUNDS', /beyond end of device/);
  await expectDiskError(t, dev.read(buf, -1), 'EBOUNDS', /invalid I\/O range/);
  await expectDiskError(t, dev.read(buf, 0.5), 'EBOUNDS', /invalid I\/O range/);
  await expectDiskError(t, dev.discard(MiB - 512, 1024), 'EBOUNDS', /beyond end/);
  await dev.read(buf, 0); // the connection is fine: the checks are local
});

test('sector I/O enforces alignment (4096-byte sectors from the server)', async (t) => {
  const { spec } = await served(t, MiB, { filters: ['--filter=blocksize-policy'], filterParams: ['blocksize-minimum=4096', 'blocksize-error-policy=error'] });
  const dev = await openNbd(t, spec);
  t.is(dev.sectorSizeBytes, 4096);
  const err = t.throws(() => checkAligned(dev, 512, 4096), { instanceOf: DiskError });
  t.regex(err?.message ?? '', /unaligned sector I\/O: offset 512 length 4096 \(sector size 4096\)/);
  await t.throwsAsync(writeSectors(dev, 1, Buffer.alloc(512)), { instanceOf: DiskError, message: /unaligned/ });
  await writeSectors(dev, 2, Buffer.alloc(4096, 7));
  const back = await readSectors(dev, 2, 1);
  t.is(back[4095], 7);
});

test('a read-only device refuses writes; a closed device refuses I/O', async (t) => {
  const { spec } = await served(t, MiB);
  const ro = await openDevice(spec, { readOnly: true });
  await expectDiskError(t, ro.write(Buffer.alloc(512), 0), 'EIO', /read-only/);
  await ro.close();
  await expectDiskError(t, ro.read(Buffer.alloc(512), 0), 'ECLOSED', /closed/);
});

test('discard makes a range read as zeros', async (t) => {
  const { spec } = await served(t, 8 * MiB);
  const dev = await openNbd(t, spec);
  await dev.write(Buffer.alloc(4 * MiB, 0xaa), 0);
  await dev.discard(0, 2 * MiB);
  await dev.discard(3 * MiB, 1000);
  const b = Buffer.alloc(4 * MiB);
  await dev.read(b, 0);
  t.true(b.subarray(0, 2 * MiB).every((x) => x === 0));
  t.true(b.subarray(3 * MiB, 3 * MiB + 1000).every((x) => x === 0));
  t.is(b[3 * MiB + 1000], 0xaa);
  t.is(b[2 * MiB], 0xaa);
});

test('a view over an NBD disk is confined to its window', async (t) => {
  const { spec, file } = await served(t, 2 * MiB);
  const dev = await openNbd(t, spec);
  const view = viewOf(dev, MiB, 4096, 'lv0');
  await view.write(Buffer.alloc(4096, 0x11), 0);
  await expectDiskError(t, view.write(Buffer.alloc(512), 4096), 'EBOUNDS', /lv0: I\/O beyond end of device/);
  const data = fs.readFileSync(file);
  t.is(data[MiB], 0x11);
  t.is(data[MiB - 1], 0);
  t.is(data[MiB + 4096], 0);
});

test('fault injection wraps an NBD disk like any other', async (t) => {
  const { spec } = await served(t, MiB);
  const dev = new FaultDevice(await openNbd(t, spec));
  dev.inject({ action: 'eio', op: 'write', offsetBytes: 4096, lengthBytes: 512, count: 1 });
  await t.throwsAsync(dev.write(Buffer.alloc(512), 4096), { instanceOf: DiskError, message: /injected/ });
  await dev.write(Buffer.alloc(512, 5), 4096);
  const b = Buffer.alloc(512);
  await dev.read(b, 4096);
  t.is(b[0], 5);
});

test('4 processes, each with its own NBD connection, write interleaved sectors of one export; every sector is intact', async (t) => {
  const { spec, file } = await served(t, 1024 * RECORD_BYTES);
  const writers = 4;
  const sectors = 1024;
  const rounds = 3;
  const children = Array.from({ length: writers }, (_, id) =>
    spawnChild(t, process.execPath, [WRITER, spec, String(id), String(writers), String(sectors), String(rounds)]),
  );
  const outs = children.map(collect);
  const results = await Promise.all(children.map((c) => exited(c, CHILD_TIMEOUT_MS)));
  results.forEach((r, i) => t.is(r.code, 0, outs[i]!.err()));
  for (const o of outs) t.is(JSON.parse(o.out()).failures, 0);
  // Checked twice: through a fresh NBD connection, and in the file nbdkit serves.
  const dev = await openNbd(t, spec, { readOnly: true });
  const viaNbd = Buffer.alloc(sectors * RECORD_BYTES);
  await dev.read(viaNbd, 0);
  const onDisk = fs.readFileSync(file);
  for (const [label, data] of [
    ['nbd', viaNbd],
    ['file', onDisk],
  ] as const) {
    let bad = 0;
    for (let s = 0; s < sectors; s++) {
      const c = checkRecord(data.subarray(s * RECORD_BYTES, (s + 1) * RECORD_BYTES));
      if (!c.ok || c.sector !== s || c.writer !== s % writers || c.seq !== rounds) bad++;
    }
    t.is(bad, 0, label);
  }
});

test('sanbox disk info nbd://… reports size and sector size from the server; errors are one line', async (t) => {
  const { srv, spec } = await served(t, 3 * MiB, { filters: ['--filter=blocksize-policy'], filterParams: ['blocksize-minimum=4096'] });
  const plain = await runSanbox(t, ['disk', 'info', spec]);
  t.is(plain.code, 0, plain.stderr);
  t.regex(plain.stdout, /Size:\s+3\.00m \(3145728 bytes\)/);
  t.regex(plain.stdout, /Sector size:\s+4096 \(server minimum block size 4096\)/);
  const json = await runSanbox(t, ['disk', 'info', spec, '--json']);
  t.is(json.code, 0, json.stderr);
  t.like(JSON.parse(json.stdout), { sizeBytes: 3 * MiB, sectorSizeBytes: 4096, exportName: 'disk.img', canFlush: true });
  const missing = await runSanbox(t, ['disk', 'info', srv.uri('nope.img')]);
  t.is(missing.code, 1);
  t.regex(missing.stderr, /^sanbox: nbd:\/\/127\.0\.0\.1:\d+\/nope\.img: the server has no export named 'nope\.img'.*\n$/);
  // An export cannot grow: creating a larger disk on it is refused in one line (nbd-commands tests the rest).
  const create = await runSanbox(t, ['disk', 'create', spec, '--size', '4M', '--sector-size', '4096']);
  t.is(create.code, 1);
  t.regex(create.stderr, /^sanbox: nbd:\/\/\S+: the export is 3145728 bytes, smaller than the 4194304 bytes needed; sanbox cannot grow an NBD export .*\n$/);
});

test('SANBOX_FAULTS reaches an NBD disk opened by a child process', async (t) => {
  const { spec, file, dir } = await served(t, 64 * RECORD_BYTES);
  const control = path.join(dir, 'faults.json');
  writeControlFile(control, [{ action: 'eio', op: 'write', offsetBytes: 10 * RECORD_BYTES, lengthBytes: RECORD_BYTES, count: 1 }]);
  const child = spawnChild(t, process.execPath, [WRITER, spec, '0', '1', '64', '1'], { env: { ...process.env, SANBOX_FAULTS: control } });
  const io = collect(child);
  t.is((await exited(child, CHILD_TIMEOUT_MS)).code, 0, io.err());
  t.is(JSON.parse(io.out()).failures, 1);
  t.regex(io.err(), /injected/);
  const data = fs.readFileSync(file);
  for (let s = 0; s < 64; s++) t.is(checkRecord(data.subarray(s * RECORD_BYTES, (s + 1) * RECORD_BYTES)).ok, s !== 10, `sector ${s}`);
});
