// The quorum hold in one process (src/disk/quorum-hold.ts): I/O passes with quorum, waits without
// it, proceeds in order when quorum is back, fails EIO when the hold runs out (and new I/O then
// fails at once), and a self-fenced node is refused, not held. The multi-process version is
// test/quorum-io.test.ts.

import test from 'ava';
import { DiskError } from '../src/errors.js';
import { QuorumHeldDevice, QuorumHold, type QuorumSource } from '../src/disk/quorum-hold.js';
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { openDevice } from '../src/disk/open.js';
import { readFileAt, tempDir } from './helpers/tmp.js';

class FakeQuorum implements QuorumSource {
  quorate = true;
  selfFencedReason: string | undefined;
  private readonly listeners = new Set<() => void>();
  hasQuorum(): boolean {
    return this.quorate;
  }
  subscribe(l: () => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }
  set(quorate: boolean): void {
    this.quorate = quorate;
    for (const l of this.listeners) l();
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** 'pending' if `p` has not settled after `ms`. */
async function settledWithin<T>(p: Promise<T>, ms: number): Promise<'pending' | 'resolved' | 'rejected'> {
  return Promise.race([p.then(() => 'resolved' as const, () => 'rejected' as const), sleep(ms).then(() => 'pending' as const)]);
}

async function setup(t: ExecutionContext, holdMs: number) {
  const file = path.join(tempDir(t), 'vol');
  fs.writeFileSync(file, '');
  fs.truncateSync(file, 1 << 20);
  const q = new FakeQuorum();
  const hold = new QuorumHold(q, { nodeId: 2, holdMs });
  const inner = await openDevice(file, { guard: 'none' });
  const dev = new QuorumHeldDevice(inner, hold);
  t.teardown(async () => {
    hold.close();
    await dev.close();
  });
  return { q, hold, dev, byte0: () => readFileAt(file, 0, 1)[0] };
}

test('with quorum I/O passes; without it a write waits (not done, not failed) and lands when quorum is back, in order', async (t) => {
  const { q, hold, dev, byte0 } = await setup(t, 5000);
  await dev.write(Buffer.alloc(4096, 1), 0);
  t.is(hold.status().state, 'open');
  q.set(false);
  t.is(hold.status().state, 'held');
  t.truthy(hold.status().since);
  const w1 = dev.write(Buffer.alloc(4096, 2), 0);
  const w2 = dev.write(Buffer.alloc(4096, 3), 0);
  const r = Buffer.alloc(4096);
  const rd = dev.read(r, 0);
  t.is(await settledWithin(w1, 100), 'pending');
  t.is(hold.status().waiting, 3);
  t.is(byte0(), 1, 'nothing of the held writes landed');
  q.set(true);
  await Promise.all([w1, w2, rd]);
  t.is(byte0(), 3, 'the writes landed in the order they were made');
  t.is(r[0], 3, 'the read queued after them sees the last');
  t.like(hold.status(), { state: 'open', waiting: 0, released: 3, failed: 0 });
});

test('held past holdMs: the waiting I/O fails EIO naming device, offset and the loss; new I/O fails at once until quorum is back', async (t) => {
  const { q, hold, dev } = await setup(t, 150);
  q.set(false);
  const t0 = performance.now();
  const err = await t.throwsAsync(dev.write(Buffer.alloc(512), 4096), { instanceOf: DiskError });
  const waitedMs = performance.now() - t0;
  t.is((err as DiskError).code, 'EIO');
  t.regex(err!.message, /vol: write at offset 4096 failed: node 2 has had no quorum since \S+ \(held 150 ms, the limit\)$/);
  t.true(waitedMs >= 140 && waitedMs < 2000, `failed after ${waitedMs} ms`);
  t.is(hold.status().state, 'failing');
  const t1 = performance.now();
  await t.throwsAsync(dev.flush(), { message: /vol: flush failed: node 2 has had no quorum/ });
  t.true(performance.now() - t1 < 50, 'after the limit, new I/O fails at once');
  q.set(true);
  await dev.write(Buffer.alloc(512), 0);
  t.like(hold.status(), { state: 'open', failed: 2 });
});

test('a node that fenced itself is refused at once (EFENCED), and I/O held before its fence is refused too', async (t) => {
  const { q, hold, dev } = await setup(t, 5000);
  q.set(false);
  const held = dev.read(Buffer.alloc(512), 0);
  q.selfFencedReason = 'no heartbeat write has succeeded';
  q.set(false);
  const err = await t.throwsAsync(held, { instanceOf: DiskError });
  t.is((err as DiskError).code, 'EFENCED');
  await t.throwsAsync(dev.write(Buffer.alloc(512), 0), { message: /refused: node 2 has fenced itself/ });
});

test('close fails what is held and stops following the membership', async (t) => {
  const { q, hold, dev } = await setup(t, 5000);
  q.set(false);
  const held = dev.write(Buffer.alloc(512), 0);
  hold.close();
  await t.throwsAsync(held, { message: /stopped while the I\/O was held/ });
  q.set(true);
  t.is(hold.status().state, 'held', 'a closed hold no longer follows the source');
});
