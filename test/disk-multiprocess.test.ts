// Separate OS processes on one image file, as the nodes of a shared-disk cluster are.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { createImage, FileDisk, writeControlFile } from '../src/disk/index.js';
import { checkRecord, RECORD_BYTES } from './helpers/sector-record.js';
import { collect, exited, REPO_ROOT, spawnChild, tempDir } from './helpers/tmp.js';

const WRITER = path.join(REPO_ROOT, 'dist/test/helpers/sector-writer.js');
const CHILD_TIMEOUT_MS = 60_000;

test('4 processes write interleaved disjoint sectors; every sector is intact afterwards', async (t) => {
  const img = path.join(tempDir(t), 'shared.img');
  const writers = 4;
  const sectors = 2048;
  const rounds = 5;
  createImage(img, { sizeBytes: sectors * RECORD_BYTES });
  const children = Array.from({ length: writers }, (_, id) =>
    spawnChild(t, process.execPath, [WRITER, img, String(id), String(writers), String(sectors), String(rounds)]),
  );
  const outs = children.map(collect);
  const results = await Promise.all(children.map((c) => exited(c, CHILD_TIMEOUT_MS)));
  results.forEach((r, i) => t.is(r.code, 0, outs[i]!.err()));
  for (const o of outs) t.is(JSON.parse(o.out()).failures, 0);
  const dev = FileDisk.open(img, { readOnly: true });
  t.teardown(() => dev.closeSync());
  const b = Buffer.alloc(RECORD_BYTES);
  let bad = 0;
  for (let s = 0; s < sectors; s++) {
    dev.readSync(b, s * RECORD_BYTES);
    const c = checkRecord(b);
    if (!c.ok || c.sector !== s || c.writer !== s % writers || c.seq !== rounds) bad++;
  }
  t.is(bad, 0);
});

test('a torn write injected into a child through SANBOX_FAULTS is detected by a reader through the CRC', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'torn.img');
  const control = path.join(dir, 'faults.json');
  createImage(img, { sizeBytes: 64 * RECORD_BYTES });
  // The child's 512-byte write of sector 10 is torn with no sector landing (it died mid-write):
  // the old content stays, and a reader must reject it through the CRC rather than trust it.
  writeControlFile(control, [{ action: 'torn', op: 'write', offsetBytes: 10 * RECORD_BYTES, lengthBytes: RECORD_BYTES, tornSectors: 0 }]);
  const child = spawnChild(t, process.execPath, [WRITER, img, '0', '1', '64', '1'], { env: { ...process.env, SANBOX_FAULTS: control } });
  const io = collect(child);
  t.is((await exited(child, CHILD_TIMEOUT_MS)).code, 0);
  t.regex(io.err(), /torn write injected/);
  t.is(JSON.parse(io.out()).failures, 1);
  const data = fs.readFileSync(img);
  for (let s = 0; s < 64; s++) {
    const c = checkRecord(data.subarray(s * RECORD_BYTES, (s + 1) * RECORD_BYTES));
    t.is(c.ok, s !== 10, `sector ${s}`);
  }
});
