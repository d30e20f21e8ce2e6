// Test fixture process: registers as node N on a cluster image and writes an increasing counter
// into sector N of the lockspace region as fast as it can, every write through a FenceGate. With
// WINDOW_MS > 0 it sleeps that long after the gate check and before the pwrite, so a SIGSTOP
// almost surely lands "between check and write". Prints `ready <key hex>` and, when a write is
// refused, `fenced <last counter that landed>` and exits 3. With WINDOW_MS = burst it writes back
// to back in one synchronous loop that never yields to the event loop (its gate lease then ends
// only by its time bound, GATE_LEASE_MS_MAX), for at most BURST_MS.
//
// usage: node gate-writer.js IMAGE NODE WINDOW_MS|burst

import { FenceGate } from '../../src/disk/fence-gate.js';
import { FileDisk } from '../../src/disk/file-disk.js';
import { nodeKey, PersistentReservations, PR_TYPES } from '../../src/disk/reservations.js';
import { isSanboxError } from '../../src/errors.js';
import { clusterTag, readClusterImage, reservationSpec } from '../../src/heartbeat/cluster-image.js';

const [image, nodeArg, windowArg] = process.argv.slice(2);
const nodeId = Number(nodeArg);
const burst = windowArg === 'burst';
const windowMs = burst ? 0 : Number(windowArg ?? '0');
/** A burst's bound: the test fences the writer well within it. */
const BURST_MS = 20_000;
const sleepCell = new Int32Array(new SharedArrayBuffer(4));

const info = await readClusterImage(image!);
const pr = new PersistentReservations(reservationSpec(info));
const key = nodeKey(clusterTag(info), nodeId, BigInt(process.pid));
await pr.register(nodeId, key, 1000);
await pr.reserve(nodeId, key, PR_TYPES.writeExclusiveRegistrantsOnly);
const inner = new FenceGate(pr.store, nodeId, key, 1000);
const gate = {
  enter(dev: string, off: number) {
    inner.enter(dev, off);
    if (windowMs > 0) Atomics.wait(sleepCell, 0, 0, windowMs);
  },
  check(dev: string, off: number) {
    inner.check(dev, off);
  },
  leave() {
    inner.leave();
  },
};
const disk = FileDisk.open(image!, { gate });
const offsetBytes = info.regions.get('lockspace')!.payloadOffsetBytes + nodeId * 512;
const buf = Buffer.alloc(512);
let counter = 0n;
let landed = 0n;
process.stdout.write(`ready ${key.toString(16)}\n`);
const writeOne = (): void => {
  counter++;
  buf.writeBigUInt64LE(counter, 0);
  try {
    disk.writeSync(buf, offsetBytes);
    landed = counter;
  } catch (err) {
    if (isSanboxError(err) && err.code === 'EFENCED') {
      process.stdout.write(`fenced ${landed}\n`);
      process.exit(3);
    }
    throw err;
  }
};
if (burst) {
  const end = performance.now() + BURST_MS;
  while (performance.now() < end) writeOne();
  process.stdout.write('burst ended unfenced\n');
  process.exit(4);
}
const loop = (): void => {
  writeOne();
  setImmediate(loop);
};
loop();
