// Review 7, M2: a write that waits in the NBD client's queue (the pipeline full) must not leave the
// node after the node fenced itself. A node's self-fence argument (timing.ts: selfFenceMs +
// watchdogMs < deadMs) is about when its writes stop reaching the wire; a queued write that the
// replies of earlier ones wake would otherwise go out after it.
//
// The server is real (nbdkit, and qemu-nbd) and SIGSTOPped while the writes are issued, so exactly
// INFLIGHT_MAX of them are on the wire and the rest wait; the node self-fences (or its heartbeat
// lease runs out); the server resumes and answers. Judged by the served file's bytes: the writes
// that were on the wire are in it, no queued one is.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { SanboxError } from '../src/errors.js';
import type { BlockDevice } from '../src/disk/device.js';
import { DeviceProvider } from '../src/node/provider.js';
import { MONO_NS_NEVER, MONO_NS_PAST, type WriteLease } from '../src/disk/write-lease.js';
import { presetTiming } from '../src/timing.js';
import { NBD_SERVER_KINDS, startNbdServer, type NbdServer, type NbdServerKind } from './helpers/nbdkit.js';
import { readFileAt, tempDir, waitFor } from './helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const BLOCK = 4 * KiB;
/** nbd-device.ts INFLIGHT_MAX: requests on the wire at once; the writes issued after these wait. */
const ON_WIRE = 64;
const QUEUED = 8;
/** The client's largest request (nbd-device.ts PAYLOAD_MAX_BYTES): a write of twice this is two requests, both queued here. */
const PAYLOAD_MAX_BYTES = 32 * MiB;
const BIG_AT = 16 * MiB;
const IMAGE_BYTES = BIG_AT + 2 * PAYLOAD_MAX_BYTES;
/** Bound on waiting for the stopped server's replies once it runs again. */
const SETTLE_MS = 20_000;

type Outcome = { settled: false } | { settled: true; error: unknown };

function track(p: Promise<void>): Outcome {
  const o: { settled: boolean; error: unknown } = { settled: false, error: undefined };
  p.then(
    () => Object.assign(o, { settled: true }),
    (error: unknown) => Object.assign(o, { settled: true, error }),
  );
  return o as Outcome;
}

async function stoppedServer(t: ExecutionContext, kind: NbdServerKind): Promise<{ file: string; srv: NbdServer; dev: BlockDevice; provider: DeviceProvider }> {
  const dir = tempDir(t);
  const file = path.join(dir, 'q.img');
  fs.writeFileSync(file, '');
  fs.truncateSync(file, IMAGE_BYTES);
  const srv = await startNbdServer(kind, file);
  t.teardown(() => srv.stop('SIGKILL'));
  const provider = new DeviceProvider({ nodeId: 1, key: 0x1234n, timing: presetTiming('local') });
  t.teardown(() => provider.close());
  // A long I/O timeout: the stop below must not look like a dead server.
  const dev = await provider.open(srv.uri('q.img', 'timeout=60s'));
  await dev.write(Buffer.alloc(BLOCK, 0x11), 0); // the connection works
  srv.child.kill('SIGSTOP');
  t.teardown(() => void srv.child.kill('SIGCONT'));
  return { file, srv, dev, provider };
}

/** Issues ON_WIRE writes (they fill the pipeline), then QUEUED small ones, a two-request write and a read (they wait). */
function issue(dev: BlockDevice): { wire: Outcome[]; queued: Outcome[]; read: Outcome } {
  const wire = Array.from({ length: ON_WIRE }, (_, i) => track(dev.write(Buffer.alloc(BLOCK, 0xa5), i * BLOCK)));
  const queued = Array.from({ length: QUEUED }, (_, i) => track(dev.write(Buffer.alloc(BLOCK, 0x5a), (ON_WIRE + i) * BLOCK)));
  queued.push(track(dev.write(Buffer.alloc(2 * PAYLOAD_MAX_BYTES, 0x5a), BIG_AT)));
  const read = track(dev.read(Buffer.alloc(BLOCK), 0));
  return { wire, queued, read };
}

function settled(outcomes: Outcome[]): Promise<void> {
  return waitFor(() => outcomes.every((o) => o.settled), SETTLE_MS, 'the requests to settle', 5);
}

function assertRefused(t: ExecutionContext, outcomes: Outcome[], why: RegExp): void {
  for (const o of outcomes) {
    const err = o.settled ? o.error : undefined;
    t.true(err instanceof SanboxError, `a queued write was not refused: ${String(err)}`);
    if (!(err instanceof SanboxError)) continue;
    t.is(err.code, 'EFENCED');
    t.regex(err.message, why);
    t.false(err.message.includes('\n'), 'one line');
  }
}

/** The served file: each write that was on the wire is in it, no queued one is (not a byte of one). */
function assertOnlyWireWritesLanded(t: ExecutionContext, file: string): void {
  const wire = readFileAt(file, 0, ON_WIRE * BLOCK);
  t.true(wire.every((b) => b === 0xa5), 'every write that was on the wire landed');
  const small = readFileAt(file, ON_WIRE * BLOCK, QUEUED * BLOCK);
  t.true(small.every((b) => b === 0), 'no queued small write reached the server');
  const big = readFileAt(file, BIG_AT, 2 * PAYLOAD_MAX_BYTES);
  t.true(big.every((b) => b === 0), 'no part of the queued two-request write reached the server');
}

for (const kind of NBD_SERVER_KINDS) {
  test(`${kind}: a self-fence fails every write queued behind a full pipeline at once, one-line EFENCED; none reaches the server, the ones on the wire and a queued read complete`, async (t) => {
    const { file, srv, dev, provider } = await stoppedServer(t, kind);
    const { wire, queued, read } = issue(dev);
    provider.selfFence('heartbeat lost (test)');
    await new Promise((r) => setImmediate(r));
    // At once, with the server still stopped: not when the replies make room.
    t.true(queued.every((o) => o.settled), 'every queued write failed at the self-fence');
    t.false(wire.some((o) => o.settled), 'the writes on the wire wait for their replies');
    t.false(read.settled, 'a queued read waits on');
    assertRefused(t, queued, /refused: this node has fenced itself \(heartbeat lost \(test\)\)/);
    srv.child.kill('SIGCONT');
    await settled([...wire, read]);
    t.deepEqual(
      wire.map((o) => (o.settled ? o.error : 'pending')),
      wire.map(() => undefined),
      'the writes on the wire succeeded',
    );
    t.is(read.settled ? read.error : 'pending', undefined, 'the queued read succeeded');
    assertOnlyWireWritesLanded(t, file);
    await t.throwsAsync(dev.write(Buffer.alloc(BLOCK, 0x77), 0), { code: 'EFENCED' });
  });
}

test('nbdkit: a heartbeat lease that runs out while writes wait refuses each of them when the replies make room (checked when sent, not only when issued)', async (t) => {
  const { file, srv, dev, provider } = await stoppedServer(t, 'nbdkit');
  let expired = false;
  const lease: WriteLease & { leaseValidUntilNs: bigint } = {
    leaseValidUntilNs: MONO_NS_NEVER,
    // As a heartbeat's lease: past its deadline it fences the node inside the check.
    leaseExpired: () => {
      if (expired) provider.selfFence('heartbeat lease past its time (test)');
      return expired;
    },
  };
  t.teardown(provider.addLease(lease));
  const { wire, queued, read } = issue(dev);
  // The node is stopped past its deadline: nothing in it runs until the server's replies arrive,
  // so the first to look at the clock is a queued write the replies wake.
  expired = true;
  lease.leaseValidUntilNs = MONO_NS_PAST;
  t.false(queued.some((o) => o.settled));
  srv.child.kill('SIGCONT');
  await settled([...wire, ...queued, read]);
  t.true(
    wire.every((o) => o.settled && o.error === undefined),
    'the writes on the wire succeeded',
  );
  assertRefused(t, queued, /refused: .*heartbeat lease past its time \(test\)/);
  t.is(read.settled ? read.error : 'pending', undefined, 'the queued read succeeded');
  assertOnlyWireWritesLanded(t, file);
});
