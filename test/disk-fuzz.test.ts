// The disk layer's own parsers (the sector-size sidecar and the fault control file) take files a
// user or another process wrote: random and mutated contents may only produce typed errors.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { readControlFile, readRecordedSectorSize, sidecarPath, writeControlFile, writeRecordedSectorSize } from '../src/disk/index.js';
import { DiskError } from '../src/errors.js';
import { tempDir } from './helpers/tmp.js';
import { fuzzRandom, type FuzzRandom } from './helpers/fuzz.js';

const CASES = 400;

function mutate(b: Buffer, rnd: FuzzRandom): Buffer {
  const m = Buffer.from(b);
  const flips = 1 + rnd.int(4);
  for (let i = 0; i < flips && m.length > 0; i++) m[rnd.int(m.length)]! ^= 1 << rnd.int(8);
  return m;
}

test('random and mutated sidecars give a sector size or a DiskError, nothing else', (t) => {
  const rnd = fuzzRandom(t);
  const dir = tempDir(t);
  const img = path.join(dir, 'a.img');
  writeRecordedSectorSize(img, 4096);
  const good = fs.readFileSync(sidecarPath(img));
  let typed = 0;
  for (let i = 0; i < CASES; i++) {
    const edge = ['null', '[]', '"x"', '7', '{"version":1,"sectorSizeBytes":null}'];
    fs.writeFileSync(sidecarPath(img), i < edge.length ? edge[i]! : i % 2 ? rnd.bytes(rnd.int(64)) : mutate(good, rnd));
    try {
      const r = readRecordedSectorSize(img);
      t.true(r.sectorSizeBytes === 512 || r.sectorSizeBytes === 4096);
    } catch (err) {
      if (!(err instanceof DiskError)) t.fail(`unexpected ${String(err)}`);
      typed++;
    }
  }
  t.true(typed > 0);
});

test('random and mutated fault control files give valid rules or a DiskError, nothing else', (t) => {
  const rnd = fuzzRandom(t);
  const control = path.join(tempDir(t), 'faults.json');
  writeControlFile(control, [
    { id: 'a', action: 'latency', latencyMs: 5, op: 'write', offsetBytes: 4096, lengthBytes: 512 },
    { id: 'b', action: 'torn', tornSectors: 1, afterOps: 3, count: 2 },
  ]);
  const good = fs.readFileSync(control);
  let typed = 0;
  const edge = ['null', '[]', '{"rules":null}', '{"rules":[null]}', '{"rules":[{"action":"eio","count":-1}]}', '{"rules":[', ''];
  for (const e of edge) {
    fs.writeFileSync(control, e);
    t.throws(() => readControlFile(control), { instanceOf: DiskError }, JSON.stringify(e));
  }
  for (let i = 0; i < CASES; i++) {
    fs.writeFileSync(control, i < edge.length ? edge[i]! : i % 2 ? rnd.bytes(rnd.int(64)) : mutate(good, rnd));
    try {
      const rules = readControlFile(control);
      for (const r of rules) t.true(['eio', 'latency', 'stall', 'torn'].includes(r.action));
    } catch (err) {
      if (!(err instanceof DiskError)) t.fail(`unexpected ${String(err)}`);
      typed++;
    }
  }
  t.true(typed > CASES / 4, `${typed} typed errors`);
});
