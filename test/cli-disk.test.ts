// The `sanbox disk` commands, run as a user would: separate processes, exit codes, stdout/stderr.

import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { FileDisk } from '../src/disk/index.js';
import { runSanbox, tempDir } from './helpers/tmp.js';

const GiB = 1024 ** 3;

test('disk create 1G then disk info --json: exact size, almost nothing allocated', async (t) => {
  const img = path.join(tempDir(t), 'a.img');
  const c = await runSanbox(t, ['disk', 'create', img, '--size', '1G']);
  t.is(c.code, 0, c.stderr);
  t.regex(c.stdout, /created: 1\.00g \(1073741824 bytes\), 512-byte sectors/);
  const i = await runSanbox(t, ['disk', 'info', img, '--json']);
  t.is(i.code, 0, i.stderr);
  const info = JSON.parse(i.stdout);
  t.is(info.sizeBytes, GiB);
  t.is(info.sectorSizeBytes, 512);
  t.true(info.allocatedBytes <= 64 * 1024);
  t.false(info.inUse);
  const plain = await runSanbox(t, ['disk', 'info', img]);
  t.regex(plain.stdout, /Size:\s+1\.00g \(1073741824 bytes\)/);
  t.regex(plain.stdout, /In use:\s+no/);
});

test('disk create --sector-size 4096 is recorded and shown', async (t) => {
  const img = path.join(tempDir(t), 'b.img');
  t.is((await runSanbox(t, ['disk', 'create', img, '--size', '16M', '--sector-size', '4096'])).code, 0);
  const info = JSON.parse((await runSanbox(t, ['disk', 'info', img, '--json'])).stdout);
  t.is(info.sectorSizeBytes, 4096);
});

test('disk create --force over an image another process holds open fails "busy" and leaves it untouched', async (t) => {
  const img = path.join(tempDir(t), 'busy.img');
  t.is((await runSanbox(t, ['disk', 'create', img, '--size', '8M'])).code, 0);
  const holder = FileDisk.open(img); // this test process is the "other process" for the child CLI
  t.teardown(() => holder.closeSync());
  holder.writeSync(Buffer.from('precious data'), 4096);
  const before = crypto.createHash('sha256').update(fs.readFileSync(img)).digest('hex');
  const r = await runSanbox(t, ['disk', 'create', img, '--size', '16M', '--force']);
  t.is(r.code, 1);
  t.regex(r.stderr, new RegExp(`^sanbox: ${img}: device busy: in use by another process \\(held by pid ${process.pid}\\)\\n$`));
  t.is(fs.statSync(img).size, 8 * 1024 * 1024);
  t.is(crypto.createHash('sha256').update(fs.readFileSync(img)).digest('hex'), before);
  const info = JSON.parse((await runSanbox(t, ['disk', 'info', img, '--json'])).stdout);
  t.true(info.inUse);
  t.deepEqual(info.holderPids, [process.pid]);
});

test('errors are one line with exit 1; usage errors exit 2; --help exits 0', async (t) => {
  const dir = tempDir(t);
  const missing = await runSanbox(t, ['disk', 'info', path.join(dir, 'nope.img')]);
  t.is(missing.code, 1);
  t.is(missing.stderr.trim().split('\n').length, 1);
  t.regex(missing.stderr, /no such device or image/);
  const img = path.join(dir, 'x.img');
  t.is((await runSanbox(t, ['disk', 'create', img, '--size', '1M'])).code, 0);
  const exists = await runSanbox(t, ['disk', 'create', img, '--size', '1M']);
  t.is(exists.code, 1);
  t.regex(exists.stderr, /already exists \(use --force to replace it\)/);
  t.is((await runSanbox(t, ['disk', 'create', img])).code, 2);
  t.is((await runSanbox(t, ['disk', 'create', path.join(dir, 'y.img'), '--size', '12Q'])).code, 2);
  t.is((await runSanbox(t, ['disk', 'create', path.join(dir, 'y.img'), '--size', '1M', '--sector-size', '1000'])).code, 2);
  t.is((await runSanbox(t, ['no-such-command'])).code, 2);
  const help = await runSanbox(t, ['disk', 'create', '--help']);
  t.is(help.code, 0);
  t.regex(help.stdout, /--sector-size/);
});
