// mkfs benchmark: `sanbox mkfs` of a 1 TiB sparse image with 16 slots beside the real mkfs.ocfs2
// with the same geometry (4 KiB blocks and clusters, 256 MiB journals, o2cb stack), in the same
// run. Both run as separate processes on a fresh sparse image each iteration; reported: median
// wall time, the ratio, and the bytes each left allocated in the image. Both results are then
// judged by fsck.ocfs2 -fn (unless --no-verify).
//
// Usage: npm run bench:mkfs [-- --iterations N --json --no-verify --dir DIR]

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { arg } from './common.js';

const TiB = 1024 ** 4;
const SLOTS = 16;
const JOURNAL = '256M';
/** Bound on one mkfs or fsck run. */
const RUN_TIMEOUT_MS = 600_000;

const iterations = Number(arg('iterations', '3'));
const asJson = process.argv.includes('--json');
const verify = !process.argv.includes('--no-verify');
const dir = fs.mkdtempSync(path.join(arg('dir', os.tmpdir()), 'sanbox-bench-mkfs-'));
const sanboxBin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/sanbox.js');

function freshImage(file: string): void {
  fs.rmSync(file, { force: true });
  fs.writeFileSync(file, '');
  fs.truncateSync(file, TiB);
}

function run(cmd: string, args: string[], input?: string): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { input: input ?? '', timeout: RUN_TIMEOUT_MS, maxBuffer: 16 << 20, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

const sanboxImg = path.join(dir, 'sanbox.img');
const realImg = path.join(dir, 'real.img');
const hasReal = run('mkfs.ocfs2', ['--version']).out.includes('mkfs.ocfs2');
const allocated: Record<string, number> = {};

const bench = new Bench({ iterations, time: 0, warmupIterations: 0, warmupTime: 0 });
bench.add(
  'sanbox mkfs',
  () => {
    const r = run(process.execPath, [sanboxBin, 'mkfs', sanboxImg, '--slots', String(SLOTS), '--block-size', '4K', '--cluster-size', '4K', '--journal-size', JOURNAL, '--label', 'bench', '--cluster-stack', 'o2cb', '--cluster-name', 'bench', '--json']);
    if (r.status !== 0) throw new Error(`sanbox mkfs failed: ${r.out}`);
    allocated['sanbox mkfs'] = fs.statSync(sanboxImg).blocks * 512;
  },
  { beforeEach: () => freshImage(sanboxImg) },
);
if (hasReal) {
  bench.add(
    'mkfs.ocfs2 (real)',
    () => {
      // mkfs.ocfs2 1.8.7 exits 1 even on success here (reference/ocfs2.md §8): judged by fsck below.
      const r = run('mkfs.ocfs2', ['-b', '4096', '-C', '4096', '-N', String(SLOTS), '-J', `size=${JOURNAL}`, '-L', 'bench', '--cluster-stack=o2cb', '--cluster-name=bench', realImg], 'y\n');
      if (!r.out.includes('successful')) throw new Error(`mkfs.ocfs2 failed: ${r.out}`);
      allocated['mkfs.ocfs2 (real)'] = fs.statSync(realImg).blocks * 512;
    },
    { beforeEach: () => freshImage(realImg) },
  );
}

try {
  await bench.run();
  const rows = bench.tasks.map((task) => {
    const r = task.result as unknown as { latency: { p50: number; mean: number; min: number; max: number } } | undefined;
    if (!r || !('latency' in r)) throw new Error(`${task.name}: no result (${JSON.stringify(task.result)})`);
    return { name: task.name, medianMs: r.latency.p50, minMs: r.latency.min, maxMs: r.latency.max, allocatedBytes: allocated[task.name] ?? 0 };
  });
  const verdict: Record<string, string> = {};
  if (verify) {
    for (const [name, img] of [['sanbox mkfs', sanboxImg], ['mkfs.ocfs2 (real)', realImg]] as const) {
      if (!fs.existsSync(img)) continue;
      const r = run('fsck.ocfs2', ['-fn', img]);
      verdict[name] = r.status === 0 && r.out.includes('All passes succeeded.') ? 'fsck.ocfs2 -fn: All passes succeeded' : `fsck.ocfs2 -fn FAILED (exit ${r.status})`;
    }
  }
  const real = rows.find((r) => r.name === 'mkfs.ocfs2 (real)');
  const ours = rows.find((r) => r.name === 'sanbox mkfs')!;
  const result = {
    image: `1 TiB sparse, ${SLOTS} slots, 4K blocks, 4K clusters, ${JOURNAL} journals`,
    iterations,
    rows: rows.map((r) => ({ ...r, verdict: verdict[r.name] ?? 'not verified' })),
    speedup: real ? real.medianMs / ours.medianMs : undefined,
    allocatedRatio: real && ours.allocatedBytes > 0 ? real.allocatedBytes / ours.allocatedBytes : undefined,
  };
  if (asJson) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  else {
    process.stdout.write(`mkfs of a ${result.image} (${iterations} iterations each, median)\n`);
    for (const r of result.rows) {
      process.stdout.write(`${r.name.padEnd(20)} ${(r.medianMs / 1000).toFixed(2).padStart(8)} s  allocated ${(r.allocatedBytes / 2 ** 20).toFixed(1).padStart(9)} MiB  ${r.verdict}\n`);
    }
    if (result.speedup !== undefined) process.stdout.write(`sanbox is ${result.speedup.toFixed(1)}x faster and allocates ${result.allocatedRatio?.toFixed(1)}x fewer bytes than mkfs.ocfs2\n`);
    else process.stdout.write('mkfs.ocfs2 is not installed: no baseline\n');
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
