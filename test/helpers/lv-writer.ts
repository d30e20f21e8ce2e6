// Test fixture process: joins a cluster as node N and writes checksummed blocks (lv-blocks.ts)
// through VG/LV under the lock-out (src/volume/locked-lv.ts), at random 4 KiB-aligned offsets in
// [FROM, TO) (ORDER random; distinct offsets within a round, so the last acknowledged write of an
// offset is the one on disk) or in order from FROM to TO over and over (ORDER sweep), CONCURRENCY
// requests at a time, pausing PAUSE_MS between rounds. One JSON line per event on stdout:
//   {"ev":"ready","gen":G,"size":S}
//   {"ev":"ok","seq":N,"off":O,"gen":G,"t":MS,"at":W} an acknowledged write (t: ms since ready; at: wall-clock ms)
//   {"ev":"err","code":C,"off":O,"t":MS,"at":W,"msg":M} a refused write
//   {"ev":"swept","t":MS}                             (sweep) every block of [FROM, TO) written once more
//   {"ev":"done","pauses":[…]}                        after SIGTERM: drained, closed, left
// Exits 0 after SIGTERM; 1 on an unexpected error. A write that fails with a code other than
// EBOUNDS (past the end) or ENOENT (LV removed) ends the writer with status 1.
//
// Mode `activated`: the writer opens no LV of its own; it runs the node with its control channel
// (lv-activate/lv-deactivate registered), prints {"ev":"listening"}, waits for the LV to be
// activated through it (`sanbox ctl C N lvm lvchange -aey VG/LV`) and writes through the device
// the node serves for the activation (node.volumeDevice); "gen" is the activation's seqno and
// "done" carries no pauses (ask `ctl status` for the activation's lock-outs).
//
// usage: node lv-writer.js CLUSTER NODE VG/LV DEVICES TAG FROM TO [pr|ex|activated] [CONCURRENCY] [PAUSE_MS] [random|sweep]

import { Mode } from '../../src/dlm/compat-matrix.js';
import { SanboxError } from '../../src/errors.js';
import { openLockedLv } from '../../src/node/lvm-cluster.js';
import { startNode, type RunningNode } from '../../src/node/node.js';
import { registerActivationCommands } from '../../src/node/activation.js';
import type { ControlServer } from '../../src/node/control.js';
import type { BlockDevice } from '../../src/disk/device.js';
import type { LockoutPause } from '../../src/volume/locked-lv.js';
import { encodeLvBlock, LV_BLOCK_BYTES } from './lv-blocks.js';

const [cluster, nodeArg, spec, devices, tag, fromArg, toArg, modeArg = 'pr', concArg = '4', pauseArg = '2', order = 'random'] = process.argv.slice(2);
const nodeId = Number(nodeArg);
const fromBytes = Number(fromArg);
const toBytes = Number(toArg);
const concurrency = Number(concArg);
const pauseMs = Number(pauseArg);
const out = (o: object): void => void process.stdout.write(JSON.stringify(o) + '\n');

/** Bound on the wait for the activation through the control channel (mode `activated`). */
const ACTIVATION_WAIT_MS = 60_000;
const activated = modeArg === 'activated';
const log = (m: string): void => void process.stderr.write(`${m}\n`);
const node = await startNode({
  clusterImage: cluster!,
  nodeId,
  control: activated,
  devices: devices!.split(','),
  log,
  ...(activated ? { commands: [(c: ControlServer, n: RunningNode) => void registerActivationCommands(c, n)] } : {}),
});

/** The activation's device, once `lvchange -aey|-asy` through the control channel made it. */
async function activatedDevice(): Promise<{ dev: BlockDevice; generation: () => number; pauses: () => LockoutPause[] }> {
  out({ ev: 'listening' });
  const until = Date.now() + ACTIVATION_WAIT_MS;
  while (!node.activations.has(spec!)) {
    if (Date.now() > until) throw new Error(`${spec} not activated within ${ACTIVATION_WAIT_MS} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { dev: await node.volumeDevice(spec!), generation: () => node.activations.get(spec!)?.seqno ?? -1, pauses: () => [] };
}

async function ownDevice(): Promise<{ dev: BlockDevice; generation: () => number; pauses: () => LockoutPause[] }> {
  const locked = await openLockedLv(node, spec!, modeArg === 'ex' ? Mode.EX : Mode.PR, log);
  return { dev: locked, generation: () => locked.generation, pauses: () => locked.pauses };
}

const io = activated ? await activatedDevice() : await ownDevice();
const dev = io.dev;
const t0 = performance.now();
out({ ev: 'ready', gen: io.generation(), size: dev.sizeBytes });

let stopping = false;
process.on('SIGTERM', () => (stopping = true));
let seq = 0;
let failed: unknown;

const blocks = Math.floor((toBytes - fromBytes) / LV_BLOCK_BYTES);
let cursor = 0;

/** The offsets of one round: distinct random blocks, or the next ones of the sweep. */
function round(): number[] {
  const n = Math.min(concurrency, blocks);
  if (order === 'sweep') {
    const offs: number[] = [];
    for (let i = 0; i < n && cursor < blocks; i++) offs.push(fromBytes + cursor++ * LV_BLOCK_BYTES);
    return offs;
  }
  const picked = new Set<number>();
  while (picked.size < n) picked.add(Math.floor(Math.random() * blocks));
  return [...picked].map((b) => fromBytes + b * LV_BLOCK_BYTES);
}

async function one(off: number): Promise<void> {
  const s = ++seq;
  try {
    await dev.write(encodeLvBlock({ tag: tag!, nodeId, seq: s, offsetBytes: off }), off);
    out({ ev: 'ok', seq: s, off, gen: io.generation(), t: performance.now() - t0, at: Date.now() });
  } catch (err) {
    const code = err instanceof SanboxError ? err.code : 'UNKNOWN';
    out({ ev: 'err', code, off, seq: s, t: performance.now() - t0, at: Date.now(), msg: (err as Error).message });
    if (code !== 'EBOUNDS' && code !== 'ENOENT') failed = err;
  }
}

while (!stopping && failed === undefined) {
  await Promise.all(round().map(one));
  if (order === 'sweep' && cursor >= blocks) {
    cursor = 0;
    out({ ev: 'swept', t: performance.now() - t0 });
  }
  if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
}
// An activation's device is the node's: its stop deactivates (drains, lets the LV lock go).
if (!activated) await dev.close();
await node.stop();
out({ ev: 'done', pauses: io.pauses() });
if (failed !== undefined) {
  process.stderr.write(`lv-writer: ${(failed as Error).message}\n`);
  process.exit(1);
}
process.exit(0);
