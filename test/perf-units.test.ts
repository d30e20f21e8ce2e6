// The pure pieces behind `sanbox bench` and mkfs.ocfs2's flags: latency percentiles and the
// histogram, the measurement loop on a real image (writes stay in the region; the timeline adds
// up), fio's JSON parser (fuzzed: a result or an EINVAL SanboxError, nothing else), the workload
// set, and the mkfs.ocfs2 defaults and feature rules (fuzzed the same way).

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { createImage, FileDisk } from '../src/disk/index.js';
import { SanboxError } from '../src/errors.js';
import { defaultBlockSize, defaultClusterSize, defaultJournalSize, defaultSlots, parseJournalOptions, resolveFeatures } from '../src/fs/mkfs-options.js';
import { parseFioJson } from '../src/perf/fio.js';
import { histogram, measureWorkload, quantile } from '../src/perf/measure.js';
import { BENCH_WORKLOADS, workloadId, writes, type Workload } from '../src/perf/workloads.js';
import { parseSizeBytes } from '../src/units.js';
import { fuzzRandom } from './helpers/fuzz.js';
import { tempDir } from './helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

test('quantile is the nearest rank and the histogram holds every sample in contiguous log bins', (t) => {
  const rnd = fuzzRandom(t);
  for (let round = 0; round < 50; round++) {
    const n = rnd.int(1, 5000);
    // Log-normal-ish latencies from 0.5 µs to ~50 ms, as a disk gives.
    const xs = Float64Array.from({ length: n }, () => 0.5 * Math.exp(rnd.next() * 11));
    xs.sort();
    for (const q of [0.5, 0.9, 0.99, 0.999]) t.is(quantile(xs, q), xs[Math.max(0, Math.ceil(q * n) - 1)]);
    const bins = histogram(xs);
    t.is(bins.reduce((a, b) => a + b.count, 0), n, `seed ${rnd.seed} round ${round}`);
    for (let i = 1; i < bins.length; i++) t.is(bins[i]!.fromUs, bins[i - 1]!.toUs);
    t.true(bins[0]!.fromUs <= xs[0]! || xs[0]! < 0.01);
    t.true(bins[bins.length - 1]!.toUs > xs[n - 1]!);
  }
  t.true(Number.isNaN(quantile(new Float64Array(0), 0.5)));
  t.deepEqual(histogram(new Float64Array(0)), []);
});

test('measureWorkload on an image: reads and writes only inside the region, at queue depth 1 (sync) and 4 (promise); the timeline adds up', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'm.img');
  createImage(img, { sizeBytes: 8 * MiB });
  const dev = FileDisk.open(img);
  t.teardown(() => dev.closeSync());
  const startBytes = 2 * MiB;
  const regionBytes = 4 * MiB;
  for (const w of [
    { name: 'w1', blockBytes: 4096, op: 'write', pattern: 'random', queueDepth: 1 },
    { name: 'w4', blockBytes: 512, op: 'read', readPercent: 50, pattern: 'random', queueDepth: 4 },
    { name: 's1', blockBytes: MiB, op: 'write', pattern: 'sequential', queueDepth: 1 },
  ] as Workload[]) {
    let progress = 0;
    const r = await measureWorkload(dev, w, { durationMs: 60, regionBytes, startBytes, onProgress: (f) => void (progress = f) });
    t.is(r.path, w.queueDepth === 1 ? 'sync' : 'promise', w.name);
    t.true(r.ops > 0 && r.bytes === r.ops * w.blockBytes, w.name);
    t.true(r.elapsedMs >= 60, w.name);
    t.is(progress, 1);
    const l = r.latency;
    t.true(l.minUs <= l.p50Us && l.p50Us <= l.p99Us && l.p99Us <= l.p999Us && l.p999Us <= l.maxUs, w.name);
    t.is(r.histogram.reduce((a, b) => a + b.count, 0), r.ops, 'every I/O is in the histogram');
    const timelineOps = Math.round(r.timeline.reduce((a, p) => a + p.iops, 0) * (r.timelineBucketMs / 1000));
    t.true(r.timeline.length === Math.floor(r.elapsedMs / r.timelineBucketMs) && timelineOps <= r.ops, `${w.name}: whole buckets only, ${timelineOps} of ${r.ops} I/Os`);
  }
  dev.flushSync();
  const data = fs.readFileSync(img);
  t.true(data.subarray(0, startBytes).equals(Buffer.alloc(startBytes)), 'nothing written before the region');
  t.true(data.subarray(startBytes + regionBytes).equals(Buffer.alloc(8 * MiB - startBytes - regionBytes)), 'nothing written after it');
  t.true(data.subarray(startBytes, startBytes + regionBytes).includes(0x5a), 'the writes landed in the region');
});

/** A fio JSON document of the shape fio 3.x prints. */
function fioDoc(readIops: number, writeIops: number): string {
  const s = (iops: number) => ({ iops, bw_bytes: iops * 4096, clat_ns: { min: 500, max: 90_000, mean: 1500, percentile: { '50.000000': 1400, '90.000000': 1600, '99.000000': 2000, '99.900000': 9000 } } });
  return `note: both iodepth >= 1 and synchronous I/O engine are selected\n${JSON.stringify({ 'fio version': 'fio-3.33', jobs: [{ jobname: 'x', error: 0, read: s(readIops), write: s(writeIops) }] })}`;
}

test('parseFioJson: IOPS of both directions for a mix, the main direction\'s clat percentiles in µs; refuses malformed output with EINVAL (fuzzed)', (t) => {
  const w = (op: 'read' | 'write', readPercent?: number): Workload => ({ name: 'x', blockBytes: 4096, op, pattern: 'random', ...(readPercent !== undefined ? { readPercent } : {}) });
  const r = parseFioJson(fioDoc(700, 300), w('read', 70), 'psync');
  t.is(r.iops, 1000);
  t.is(r.mbPerSec, (1000 * 4096) / 1e6);
  t.deepEqual(r.latency, { minUs: 0.5, meanUs: 1.5, p50Us: 1.4, p90Us: 1.6, p99Us: 2, p999Us: 9, maxUs: 90 });
  t.is(parseFioJson(fioDoc(0, 300), w('write'), 'io_uring').iops, 300);
  t.throws(() => parseFioJson(fioDoc(1, 1).replace('"error":0', '"error":5'), w('read'), 'psync'), { instanceOf: SanboxError, message: /failed with error 5/ });
  const rnd = fuzzRandom(t);
  const base = fioDoc(123, 45);
  let parsed = 0;
  for (let i = 0; i < 2000; i++) {
    const b = Buffer.from(base);
    const cut = rnd.next() < 0.3 ? rnd.int(b.length) : b.length;
    const m = b.subarray(0, cut);
    for (let k = rnd.int(4); k > 0 && m.length > 0; k--) m[rnd.int(m.length)] = rnd.int(32, 127);
    try {
      parseFioJson(m.toString('latin1'), w('read'), 'psync');
      parsed++;
    } catch (err) {
      if (!(err instanceof SanboxError)) t.fail(`seed ${rnd.seed} case ${i}: ${(err as Error).stack}`);
    }
  }
  t.log(`${parsed} of 2000 mutated documents still parsed`);
  t.pass();
});

test('the bench workloads: unique ids; 4 KiB and 512 B random reads and writes, 1 MiB sequential, queue depths 1 to 32, a mix', (t) => {
  const ids = BENCH_WORKLOADS.map(workloadId);
  t.is(new Set(ids).size, ids.length);
  for (const id of ['randread-4k-qd1', 'randwrite-4k-qd1', 'randread-512-qd1', 'randwrite-512-qd1', 'read-1m-qd1', 'write-1m-qd1', 'randread-4k-qd32', 'randrw70-4k-qd1', 'randrw70-4k-qd32']) t.true(ids.includes(id), id);
  t.deepEqual([...new Set(BENCH_WORKLOADS.map((w) => w.queueDepth))].sort((a, b) => a! - b!), [1, 4, 8, 32]);
  t.deepEqual(BENCH_WORKLOADS.filter((w) => !writes(w)).map(workloadId), ['randread-4k-qd1', 'randread-512-qd1', 'read-1m-qd1', 'randread-4k-qd4', 'randread-4k-qd8', 'randread-4k-qd32']);
});

test('mkfs.ocfs2 defaults as observed on mkfs.ocfs2 1.8.7: slots, block, cluster and journal sizes by volume size and -T', (t) => {
  // [size, -T, block, cluster, journal bytes, slots] — each row a real mkfs.ocfs2 run.
  const rows: [number, 'mail' | 'datafiles' | 'vmstore' | undefined, number, number, number, number][] = [
    [128 * MiB, undefined, KiB, 4 * KiB, 4 * MiB, 2],
    [256 * MiB, undefined, KiB, 4 * KiB, 16 * MiB, 2],
    [256 * MiB, 'mail', KiB, 4 * KiB, 32 * MiB, 2],
    [512 * MiB, undefined, 2 * KiB, 4 * KiB, 32 * MiB, 2],
    [GiB, undefined, 4 * KiB, 4 * KiB, 64 * MiB, 2],
    [GiB, 'mail', 4 * KiB, 4 * KiB, 128 * MiB, 2],
    [3 * GiB, 'datafiles', 4 * KiB, 128 * KiB, 32 * MiB, 4],
    [3 * GiB, 'vmstore', 4 * KiB, 128 * KiB, 128 * MiB, 4],
    [12 * GiB, undefined, 4 * KiB, 4 * KiB, 80527360, 8],
    [80 * GiB, 'datafiles', 4 * KiB, 256 * KiB, 32 * MiB, 8],
    [100 * GiB, 'vmstore', 4 * KiB, 512 * KiB, 128 * MiB, 8],
    [300 * GiB, 'datafiles', 4 * KiB, MiB, 32 * MiB, 8],
    [1200 * GiB, undefined, 4 * KiB, 4 * KiB, 256 * MiB, 16],
  ];
  for (const [size, type, bs, cs, journal, slots] of rows) {
    const what = `${size} bytes -T ${type ?? '-'}`;
    t.is(defaultBlockSize(size), bs, what);
    t.is(defaultClusterSize(size, type), cs, what);
    t.is(defaultJournalSize(size, bs, type), journal, what);
    t.is(defaultSlots(size), slots, what);
  }
  t.is(defaultSlots(100 * GiB, true), 1, '-M local');
  t.throws(() => defaultClusterSize(GiB, 'vmstore'), { instanceOf: SanboxError, message: /at least 2 GiB/ });
  t.deepEqual(parseJournalOptions('size=8M,block64', parseSizeBytes), { sizeBytes: 8 * MiB, block64: true });
  t.deepEqual(parseJournalOptions('noblock64', parseSizeBytes), { block64: false });
});

test('resolveFeatures: levels and lists as mkfs.ocfs2 reads them; a random list gives a consistent set or an EINVAL naming the problem (fuzzed)', (t) => {
  t.deepEqual(resolveFeatures({}), { backupSuper: true, sparse: true, unwritten: true, inlineData: true, extendedSlotMap: true, local: false });
  t.deepEqual(resolveFeatures({ level: 'max-compat' }), { backupSuper: true, sparse: false, unwritten: false, inlineData: false, extendedSlotMap: false, local: false });
  t.true(resolveFeatures({ level: 'max-compat', clusterStack: 'o2cb' }).extendedSlotMap, 'a cluster stack forces the extended slot map');
  t.false(resolveFeatures({ list: 'nosparse' }).unwritten, 'nosparse drops unwritten');
  t.throws(() => resolveFeatures({ list: 'sparse,xattr,metaecc' }), { message: 'sanbox cannot write features xattr, metaecc' });
  const vocab = ['backup-super', 'sparse', 'unwritten', 'inline-data', 'extended-slotmap', 'local', 'clusterinfo', 'strict-journal-super', 'xattr', 'refcount', 'metaecc', 'indexed-dirs', 'discontig-bg', 'usrquota', 'grpquota', 'append-dio', 'bogus', ''];
  const rnd = fuzzRandom(t);
  for (let i = 0; i < 3000; i++) {
    const list = Array.from({ length: rnd.int(0, 6) }, () => `${rnd.next() < 0.4 ? 'no' : ''}${vocab[rnd.int(vocab.length)]}`).join(rnd.next() < 0.9 ? ',' : ' ,');
    const req = {
      list,
      ...(rnd.next() < 0.3 ? { level: (['max-compat', 'default', 'max-features'] as const)[rnd.int(3)] } : {}),
      ...(rnd.next() < 0.3 ? { clusterStack: 'o2cb' } : {}),
      local: rnd.next() < 0.2,
    };
    try {
      const f = resolveFeatures(req);
      t.true(!f.unwritten || f.sparse, `unwritten needs sparse: ${JSON.stringify(req)}`);
      if (req.clusterStack) t.true(f.extendedSlotMap && !f.local, JSON.stringify(req));
      if (req.local) t.true(f.local);
    } catch (err) {
      if (!(err instanceof SanboxError && err.code === 'EINVAL')) t.fail(`seed ${rnd.seed} ${JSON.stringify(req)}: ${(err as Error).stack}`);
    }
  }
});
