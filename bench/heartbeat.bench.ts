// Heartbeat benchmark.
//  1. Death-detection latency: an observer node (this process, startNode) and a victim node
//     (a separate `sanbox node` process). kill -9 of the victim → the observer's down event, and
//     → its fenced event; over N trials (default 20), min / median / max.
//  2. Heartbeat I/O per node per second, measured on the observer, beside o2hb's default timing.
//  3. The cost of one heartbeat round (read all slots + encode + gated write) with tinybench,
//     beside a baseline measured in the same run: the same pread + pwrite with no codec and no gate.
//
// Usage: npm run bench:heartbeat [-- --trials N --json]

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Bench } from 'tinybench';
import { encodeO2hbBlock } from '../src/format/o2hb-block.js';
import { initClusterImage } from '../src/heartbeat/cluster-image.js';
import { readSlots } from '../src/heartbeat/heartbeat.js';
import { presetTiming } from '../src/timing.js';
import type { MembershipEvent } from '../src/heartbeat/membership-api.js';
import { startNode } from '../src/node/node.js';
import { arg } from './common.js';

const SANBOX_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/sanbox.js');
/** Bound on one trial's wait for an event: far above the 2 s dead time. */
const EVENT_WAIT_MS = 15_000;
const NODES = 4;

const trials = Number(arg('trials', '20'));
const json = process.argv.includes('--json');

function stats(xs: number[]): { min: number; median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
  return { min: s[0]!, median: mid, max: s[s.length - 1]! };
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanbox-hbbench-'));
const img = path.join(dir, 'c.img');
const timing = presetTiming('local');
const o2cb = presetTiming('o2cb');
await initClusterImage(img, { clusterName: 'bench', nodeCount: NODES, timing, runDir: path.join(dir, 'run') });

const events: { ev: MembershipEvent; at: number }[] = [];
const observer = await startNode({ clusterImage: img, nodeId: 0, control: false });
observer.membership.subscribe((ev) => events.push({ ev, at: performance.now() }));
const waitEvent = async (pred: (ev: MembershipEvent) => boolean, sinceIdx: number): Promise<number> => {
  const t0 = performance.now();
  for (;;) {
    const hit = events.slice(sinceIdx).find((e) => pred(e.ev));
    if (hit) return hit.at;
    if (performance.now() - t0 > EVENT_WAIT_MS) throw new Error('timed out waiting for a membership event');
    await new Promise((r) => setTimeout(r, 5));
  }
};

const detectMs: number[] = [];
const fenceMs: number[] = [];
const ioStart = { ...observer.heartbeat.stats, at: performance.now() };
for (let i = 0; i < trials; i++) {
  const victimId = 1 + (i % (NODES - 1));
  const mark = events.length;
  const child = spawn(process.execPath, [SANBOX_BIN, 'node', '--cluster', img, '--node', String(victimId)], { stdio: 'ignore' });
  await waitEvent((e) => e.kind === 'up' && e.nodeId === victimId, mark);
  // Let it run a few intervals, as a node would, before it dies.
  await new Promise((r) => setTimeout(r, 3 * timing.intervalMs));
  const killMark = events.length;
  const killedAt = performance.now();
  child.kill('SIGKILL');
  const downAt = await waitEvent((e) => e.kind === 'down' && e.nodeId === victimId, killMark);
  const fencedAt = await waitEvent((e) => e.kind === 'fenced' && e.nodeId === victimId, killMark);
  detectMs.push(downAt - killedAt);
  fenceMs.push(fencedAt - killedAt);
  if (!json) process.stderr.write(`trial ${i + 1}/${trials}: down after ${(downAt - killedAt).toFixed(0)} ms, fenced after ${(fencedAt - killedAt).toFixed(0)} ms\n`);
}
const ioEnd = { ...observer.heartbeat.stats, at: performance.now() };
const seconds = (ioEnd.at - ioStart.at) / 1000;
const io = {
  writesPerSecond: (ioEnd.writesOk - ioStart.writesOk) / seconds,
  writeBytesPerSecond: (ioEnd.bytesWritten - ioStart.bytesWritten) / seconds,
  readBytesPerSecond: (ioEnd.bytesRead - ioStart.bytesRead) / seconds,
};
// o2hb: one sector written and the configured slots read once per 2000 ms (reference/ocfs2.md §4.4).
const o2hbIo = { writesPerSecond: 1000 / o2cb.intervalMs, writeBytesPerSecond: (512 * 1000) / o2cb.intervalMs, readBytesPerSecond: (NODES * 512 * 1000) / o2cb.intervalMs };

// Cost of one round beside the raw I/O baseline, same image, same run.
const info = observer.info;
const hbOff = info.regions.get('heartbeat')!.payloadOffsetBytes;
const region = { name: 'bench', device: observer.device, offsetBytes: hbOff, blockBytes: 512, slotCount: NODES };
const scratchSlot = hbOff + (NODES + 10) * 512; // an unused slot: the bench must not disturb node 0
const rawFd = fs.openSync(img, 'r+');
const rawBuf = Buffer.alloc(NODES * 512);
let seq = 1n;
const bench = new Bench({ name: 'heartbeat round', time: 1000, warmupTime: 100 });
bench.add('raw pread + pwrite (baseline)', () => {
  fs.readSync(rawFd, rawBuf, 0, rawBuf.length, hbOff);
  fs.writeSync(rawFd, rawBuf, 0, 512, scratchSlot);
});
bench.add('sanbox round (read + decode + encode + gated write)', async () => {
  await readSlots(region);
  await observer.device.write(encodeO2hbBlock({ seq: seq++, nodeId: 0, generation: 1n, deadMs: 2000 }, 512), scratchSlot);
});
await bench.run();
fs.closeSync(rawFd);
const [base, ours] = bench.tasks.map((t) => t.result);
if (base?.state !== 'completed' || ours?.state !== 'completed') throw new Error('tinybench task failed');
const roundUs = { baseline: base.latency.p50 * 1000, sanbox: ours.latency.p50 * 1000 };

await observer.stop();
fs.rmSync(dir, { recursive: true, force: true });

const detect = stats(detectMs);
const fence = stats(fenceMs);
const result = {
  trials,
  timing: { local: { intervalMs: timing.intervalMs, deadMs: timing.deadMs }, o2cb: { intervalMs: o2cb.intervalMs, deadMs: o2cb.deadMs } },
  detectionMs: detect,
  fencedMs: fence,
  o2hbDefaultDetectionMs: { min: o2cb.deadMs, max: o2cb.deadMs + o2cb.intervalMs },
  ioPerNodePerSecond: { sanbox: io, o2hbDefault: o2hbIo },
  roundUs,
};
if (json) {
  process.stdout.write(JSON.stringify(result, null, 2) + '\n');
} else {
  const f = (x: number) => x.toFixed(0).padStart(7);
  process.stdout.write(`\nDeath detection, kill -9 → down event (${trials} trials, local timing: interval ${timing.intervalMs} ms, dead after ${timing.deadMs} ms)\n`);
  process.stdout.write(`                       min   median      max  (ms)\n`);
  process.stdout.write(`  sanbox down       ${f(detect.min)}  ${f(detect.median)}  ${f(detect.max)}\n`);
  process.stdout.write(`  sanbox fenced     ${f(fence.min)}  ${f(fence.median)}  ${f(fence.max)}\n`);
  process.stdout.write(`  o2hb defaults     ${f(o2cb.deadMs)}        –  ${f(o2cb.deadMs + o2cb.intervalMs)}   (31 × 2000 ms, + up to one read interval)\n`);
  process.stdout.write(`  ratio o2hb / sanbox (median): ${(o2cb.deadMs / detect.median).toFixed(1)}×\n`);
  process.stdout.write(`\nHeartbeat I/O per node per second (${NODES} slots read each round)\n`);
  process.stdout.write(`  sanbox local   ${io.writesPerSecond.toFixed(1)} writes/s, ${(io.writeBytesPerSecond / 1024).toFixed(1)} KiB/s written, ${(io.readBytesPerSecond / 1024).toFixed(1)} KiB/s read (+ two 8-byte reservation probes per write, in the fence gate)\n`);
  process.stdout.write(`  o2hb default   ${o2hbIo.writesPerSecond.toFixed(1)} writes/s, ${(o2hbIo.writeBytesPerSecond / 1024).toFixed(2)} KiB/s written, ${(o2hbIo.readBytesPerSecond / 1024).toFixed(1)} KiB/s read\n`);
  process.stdout.write(`  ratio sanbox / o2hb writes: ${(io.writesPerSecond / o2hbIo.writesPerSecond).toFixed(1)}×\n`);
  process.stdout.write(`\nOne heartbeat round (median, tinybench, same run)\n`);
  process.stdout.write(`  raw pread + pwrite baseline  ${roundUs.baseline.toFixed(1)} µs\n`);
  process.stdout.write(`  sanbox round                 ${roundUs.sanbox.toFixed(1)} µs   (${(roundUs.sanbox / roundUs.baseline).toFixed(1)}× the baseline)\n`);
}
