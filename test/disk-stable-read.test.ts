// The one torn-read retry for coordination sectors (src/disk/stable-read.ts): its bound, what it
// retries and what it does not, and a real race: another process tearing a node record while
// this one reads it through readNodeRecords.

import test from 'ava';
import path from 'node:path';
import { DiskError, FormatError } from '../src/errors.js';
import type { BlockDevice } from '../src/disk/device.js';
import { openDevice } from '../src/disk/open.js';
import { readStable, readStableSync, retryTorn, TORN_READ_PAUSE_MS_TOTAL, TORN_READ_RETRIES_MAX } from '../src/disk/stable-read.js';
import { decodeNodeRecord, NODE_RECORD_BYTES } from '../src/format/node-record.js';
import { initClusterImage, nodeRecordOffset, readNodeRecords } from '../src/heartbeat/cluster-image.js';
import { presetTiming } from '../src/timing.js';
import { readSlots } from '../src/heartbeat/heartbeat.js';
import { encodeO2hbBlock } from '../src/format/o2hb-block.js';
import { collect, REPO_ROOT, spawnChild, tempDir, waitFor } from './helpers/tmp.js';

const TORN_WRITER = path.join(REPO_ROOT, 'dist/test/helpers/torn-record-writer.js');

/** A one-sector device whose first `tornReads` reads return a torn record (0xee), then a good one (0x11). */
function flakyDevice(tornReads: number): BlockDevice & { reads: number } {
  const dev = {
    name: 'flaky',
    sizeBytes: 512,
    sectorSizeBytes: 512 as const,
    readOnly: true,
    reads: 0,
    async read(buf: Buffer): Promise<void> {
      buf.fill(dev.reads++ < tornReads ? 0xee : 0x11);
    },
    async write(): Promise<void> {},
    async flush(): Promise<void> {},
    async discard(): Promise<void> {},
    async close(): Promise<void> {},
  };
  return dev;
}

function decodeGood(b: Buffer): number {
  if (b[0] !== 0x11) throw new FormatError(`flaky: torn record (byte 0x${b[0]!.toString(16)})`, { device: 'flaky', offsetBytes: 0 });
  return b[0];
}

test('a torn record is read again until it decodes, within the bound', async (t) => {
  const dev = flakyDevice(TORN_READ_RETRIES_MAX);
  const retries: number[] = [];
  const v = await readStable(dev, Buffer.alloc(512), 0, decodeGood, { onRetry: (_e, attempt) => retries.push(attempt) });
  t.is(v, 0x11);
  t.is(dev.reads, TORN_READ_RETRIES_MAX + 1);
  t.deepEqual(retries, Array.from({ length: TORN_READ_RETRIES_MAX }, (_, i) => i + 1));
});

test('a record that stays bad is reported after exactly the bound, with its FormatError', async (t) => {
  const dev = flakyDevice(Number.MAX_SAFE_INTEGER);
  const t0 = performance.now();
  await t.throwsAsync(readStable(dev, Buffer.alloc(512), 0, decodeGood), { instanceOf: FormatError, message: /torn record/ });
  t.is(dev.reads, TORN_READ_RETRIES_MAX + 1);
  // The pauses are timers: at least their sum (setTimeout never fires early by more than 1 ms each).
  t.true(performance.now() - t0 >= TORN_READ_PAUSE_MS_TOTAL - TORN_READ_RETRIES_MAX);
});

test('an I/O error or a bug is not retried', async (t) => {
  const dev = flakyDevice(0);
  await t.throwsAsync(
    readStable(dev, Buffer.alloc(512), 0, () => {
      throw new DiskError('EIO', 'flaky: injected');
    }),
    { instanceOf: DiskError },
  );
  t.is(dev.reads, 1);
  await t.throwsAsync(
    readStable(dev, Buffer.alloc(512), 0, () => {
      throw new TypeError('a bug');
    }),
    { instanceOf: TypeError },
  );
  t.is(dev.reads, 2);
});

test('preRead decodes the bulk-read bytes first and reads only to retry', async (t) => {
  const dev = flakyDevice(0);
  t.is(await readStable(dev, Buffer.alloc(512, 0x11), 0, decodeGood, { preRead: true }), 0x11);
  t.is(dev.reads, 0);
  t.is(await readStable(dev, Buffer.alloc(512, 0xee), 0, decodeGood, { preRead: true }), 0x11);
  t.is(dev.reads, 1);
});

test('readStableSync has the same bound', (t) => {
  let reads = 0;
  const fill = (tornReads: number) => (b: Buffer) => void b.fill(reads++ < tornReads ? 0xee : 0x11);
  t.is(readStableSync(fill(3), Buffer.alloc(512), decodeGood), 0x11);
  t.is(reads, 4);
  reads = 0;
  t.throws(() => readStableSync(fill(Number.MAX_SAFE_INTEGER), Buffer.alloc(512), decodeGood), { instanceOf: FormatError });
  t.is(reads, TORN_READ_RETRIES_MAX + 1);
});

test('node records torn by another process mid-write are never reported as corrupt', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  const info = await initClusterImage(img, { clusterName: 'torn', nodeCount: 3, timing: presetTiming('local'), lockspaceBytes: 256 * 1024 });
  // The writer leaves each record torn for 2 ms, then whole for 6 ms.
  const child = spawnChild(t, process.execPath, [TORN_WRITER, img, '1', '2', '6']);
  const out = collect(child);
  await waitFor(() => out.out().includes('ready'), 10_000, `torn writer to start (${out.err()})`);
  const dev = await openDevice(img, { guard: 'none', readOnly: true });
  t.teardown(() => dev.close());
  const raw = Buffer.alloc(NODE_RECORD_BYTES);
  const off = nodeRecordOffset(info, 1);
  let tornSeen = 0;
  const generations = new Set<bigint>();
  const t0 = performance.now();
  for (let i = 0; performance.now() - t0 < 1500 && (i < 200 || tornSeen === 0); i++) {
    // A plain read sees the writes torn (so the race is real) …
    await dev.read(raw, off);
    try {
      decodeNodeRecord(raw, 1);
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      tornSeen++;
    }
    // … readNodeRecords never does: every answer is one of the two whole records.
    const recs = await readNodeRecords(dev, info);
    const g = recs[1]?.generation;
    t.true(g === 1n || g === 2n, `node record 1 read as ${String(g)}`);
    if (g !== undefined) generations.add(g);
    t.is(recs[0], null);
    t.is(recs[2], null);
  }
  t.true(tornSeen > 0, 'the writer never tore a plain read: the race did not happen');
  t.deepEqual([...generations].sort(), [1n, 2n]);
});

test('retryTorn with sameErrorIsDamage reports an error seen twice at once, and retries one that changes', async (t) => {
  let runs = 0;
  const sameEveryTime = async (): Promise<number> => {
    runs++;
    throw new FormatError('pv: label CRC mismatch at offset 528');
  };
  await t.throwsAsync(retryTorn(sameEveryTime, { sameErrorIsDamage: true }), { instanceOf: FormatError });
  t.is(runs, 2);
  runs = 0;
  const movingThenGood = async (): Promise<number> => {
    runs++;
    if (runs < 4) throw new FormatError(`pv: mda_header checksum mismatch #${runs}`);
    return runs;
  };
  t.is(await retryTorn(movingThenGood, { sameErrorIsDamage: true }), 4);
  // Without the option the same error is retried for the whole bound.
  runs = 0;
  await t.throwsAsync(retryTorn(sameEveryTime), { instanceOf: FormatError });
  t.is(runs, TORN_READ_RETRIES_MAX + 1);
});

test('readSlots with stable re-reads a slot torn in the bulk read; without it the torn block is returned', async (t) => {
  const good = encodeO2hbBlock({ seq: 5n, nodeId: 2, generation: 9n, deadMs: 1000 }, 512);
  const torn = Buffer.from(good);
  torn[0] ^= 0xff; // seq half-written: the checksum no longer matches
  let reads = 0;
  const dev: BlockDevice = {
    name: 'hb',
    sizeBytes: 4 * 512,
    sectorSizeBytes: 512,
    readOnly: true,
    async read(buf: Buffer, offsetBytes: number): Promise<void> {
      buf.fill(0);
      const slot2 = 2 * 512 - offsetBytes;
      if (slot2 >= 0 && slot2 < buf.length) (reads++ === 0 ? torn : good).copy(buf, slot2);
    },
    async write(): Promise<void> {},
    async flush(): Promise<void> {},
    async discard(): Promise<void> {},
    async close(): Promise<void> {},
  };
  const region = { name: 'hb', device: dev, offsetBytes: 0, blockBytes: 512, slotCount: 4 };
  const stable = await readSlots(region, undefined, { stable: true });
  t.true(stable.every((b) => b.cksumValid));
  t.is(stable[2]!.seq, 5n);
  t.is(reads, 2);
  reads = 0;
  const plain = await readSlots(region);
  t.false(plain[2]!.cksumValid);
  t.is(reads, 1);
});
