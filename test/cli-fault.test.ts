// `sanbox fault` drives a running process's disk through its SANBOX_FAULTS control file.

import test from 'ava';
import path from 'node:path';
import { createImage } from '../src/disk/index.js';
import { collect, exited, REPO_ROOT, runSanbox, spawnChild, tempDir } from './helpers/tmp.js';

const WRITER = path.join(REPO_ROOT, 'dist/test/helpers/sector-writer.js');

test('a stall set with `sanbox fault set` holds a running process until `sanbox fault clear`', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'x.img');
  const control = path.join(dir, 'faults.json');
  createImage(img, { sizeBytes: 64 * 512 });
  const set = await runSanbox(t, ['fault', 'set', control, '--action', 'stall', '--op', 'write', '--id', 'hold']);
  t.is(set.code, 0, set.stderr);
  const child = spawnChild(t, process.execPath, [WRITER, img, '0', '1', '64', '1'], { env: { ...process.env, SANBOX_FAULTS: control } });
  const io = collect(child);
  await new Promise((r) => setTimeout(r, 700));
  t.is(child.exitCode, null, 'the writer is stalled');
  const ls = JSON.parse((await runSanbox(t, ['fault', 'ls', control, '--json'])).stdout);
  t.is(ls.length, 1);
  t.is(ls[0].id, 'hold');
  t.is((await runSanbox(t, ['fault', 'clear', control, 'hold'])).code, 0);
  const { code } = await exited(child, 20_000);
  t.is(code, 0, io.err());
  t.is(JSON.parse(io.out()).failures, 0);
});

test('fault set rejects bad rules with a usage error', async (t) => {
  const control = path.join(tempDir(t), 'faults.json');
  const bad = await runSanbox(t, ['fault', 'set', control, '--action', 'explode']);
  t.is(bad.code, 2);
  t.regex(bad.stderr, /--action must be one of/);
  const missing = await runSanbox(t, ['fault', 'clear', control, 'nope']);
  t.is(missing.code, 2);
});
