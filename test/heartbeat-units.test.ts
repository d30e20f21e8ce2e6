// Pure pieces of heartbeat and membership: liveness on the observer's clock (a kernel-style peer
// with dead_ms 62000 beside our 1.5 s), quorum and its two-node tie-break, timing presets and
// the safety inequality, membership fencing only with quorum.

import test from 'ava';
import { decodeO2hbBlock, encodeO2hbBlock } from '../src/format/o2hb-block.js';
import { Fencer } from '../src/heartbeat/fencer.js';
import { SlotTracker } from '../src/heartbeat/liveness.js';
import { MembershipService } from '../src/heartbeat/membership.js';
import { hasQuorum } from '../src/heartbeat/quorum.js';
import { deriveTiming, presetTiming } from '../src/timing.js';
import type { MembershipEvent } from '../src/heartbeat/membership-api.js';

const blk = (nodeId: number, seq: bigint, generation: bigint, deadMs: number) => decodeO2hbBlock(encodeO2hbBlock({ seq, nodeId, generation, deadMs }, 512));

test('timing presets: local and the real o2cb defaults; the inequality is enforced', (t) => {
  const local = presetTiming('local');
  t.like(local, { intervalMs: 100, deadMs: 2000, selfFenceMs: 1700, ioTimeoutMs: 500 });
  const o2cb = presetTiming('o2cb');
  t.like(o2cb, { intervalMs: 2000, deadThreshold: 31, deadMs: 62_000, selfFenceMs: 60_000 });
  t.true(o2cb.selfFenceMs + o2cb.watchdogMs < o2cb.deadMs);
  t.throws(() => deriveTiming({ intervalMs: 100, deadThreshold: 2, ioTimeoutMs: 50 }), { message: /dead threshold 2/ });
  t.throws(() => deriveTiming({ intervalMs: 100, deadThreshold: 5, ioTimeoutMs: 200 }), { message: /I\/O timeout 200 ms/ });
  t.throws(() => deriveTiming({ intervalMs: 1, deadThreshold: 5, ioTimeoutMs: 1 }), { message: /interval 1 ms/ });
  t.throws(() => presetTiming('fast'), { message: /unknown timing preset/ });
});

test('liveness: up once seq moves, dead after the dead time without a change, on the observer clock', (t) => {
  const s = new SlotTracker(1, 1500, 1);
  t.deepEqual(s.observe(blk(1, 1000n, 7n, 1500), 0), []); // baseline
  t.deepEqual(s.observe(blk(1, 1000n, 7n, 1500), 100), []); // no change yet: not up
  t.like(s.observe(blk(1, 1100n, 7n, 1500), 200)[0], { kind: 'up', nodeId: 1, generation: 7n });
  t.deepEqual(s.observe(blk(1, 1100n, 7n, 1500), 1700), []); // exactly 1500 ms: not yet
  t.like(s.observe(blk(1, 1100n, 7n, 1500), 1701)[0], { kind: 'down', reason: 'timeout' });
});

test('liveness: a kernel-style peer (seq in seconds every 2 s, dead_ms 62000) is not declared dead by our 1.5 s threshold', (t) => {
  const s = new SlotTracker(4, 1500, 1);
  let now = 0;
  let seq = 1_795_000_000n;
  s.observe(blk(4, seq, 9n, 62_000), now);
  const events = [];
  for (let i = 0; i < 30; i++) {
    // Reads every 100 ms; the kernel bumps seq by 2 every 2000 ms.
    for (let k = 0; k < 20; k++) {
      now += 100;
      events.push(...s.observe(blk(4, seq, 9n, 62_000), now));
    }
    seq += 2n;
    events.push(...s.observe(blk(4, seq, 9n, 62_000), now));
  }
  t.deepEqual(events.map((e) => e.kind), ['up']);
  // It stops: dead only after max(1500, 62000) ms without a change.
  const stopAt = now;
  t.deepEqual(s.observe(blk(4, seq, 9n, 62_000), stopAt + 61_000), []);
  t.like(s.observe(blk(4, seq, 9n, 62_000), stopAt + 62_001)[0], { kind: 'down', reason: 'timeout' });
});

test('liveness: bad crc, clean leave (generation 0) and a new generation', (t) => {
  const s = new SlotTracker(2, 1500, 1);
  s.observe(blk(2, 1n, 5n, 1500), 0);
  s.observe(blk(2, 2n, 5n, 1500), 100);
  t.true(s.live);
  const bad = encodeO2hbBlock({ seq: 3n, nodeId: 2, generation: 5n, deadMs: 1500 }, 512);
  bad[0x30] = 1;
  t.deepEqual(s.observe(decodeO2hbBlock(bad), 200), []);
  t.is(s.badCrcCount, 1);
  t.is(s.currentSeq, 2n, 'a bad block does not update seq');
  t.like(s.observe(blk(2, 3n, 0n, 1500), 300)[0], { kind: 'down', reason: 'left', generation: 5n });
  // A restart with a new generation comes up on its first seq change.
  t.deepEqual(s.observe(blk(2, 10n, 6n, 1500), 400), []);
  t.like(s.observe(blk(2, 11n, 6n, 1500), 500)[0], { kind: 'up', generation: 6n });
  t.like(s.observe(blk(2, 12n, 8n, 1500), 600)[0], { kind: 'down', reason: 'generation', generation: 6n });
  // A bad crc on a slot that is not live is ignored silently.
  const s2 = new SlotTracker(3, 1500, 1);
  t.deepEqual(s2.observe(decodeO2hbBlock(bad), 0), []);
  t.is(s2.badCrcCount, 0);
});

test('quorum: majority for odd N; exact half keeps the half with the lowest node', (t) => {
  const q = (base: number[], alive: number[]) => hasQuorum(new Set(base), new Set(alive));
  t.true(q([0], [0]));
  t.true(q([0, 1], [0]), 'two nodes: the lower one survives');
  t.false(q([0, 1], [1]), 'two nodes: the higher one does not');
  t.true(q([0, 1, 2], [1, 2]));
  t.false(q([0, 1, 2], [2]));
  t.true(q([0, 1, 2, 3], [0, 1, 2]));
  t.true(q([0, 1, 2, 3], [0, 3]));
  t.false(q([0, 1, 2, 3], [1, 2]));
  t.false(q([0, 1, 2, 3, 4], [3, 4]));
});

function membership(localNodeId: number, nodeCount: number, fenced: number[], now: { ms: number }): MembershipService {
  const timing = presetTiming('local');
  const fencer = { fence: async (nodeId: number, generation: bigint) => (fenced.push(nodeId), { nodeId, generation, steps: ['test'], durationMs: 0 }) } as unknown as Fencer;
  const m = new MembershipService({ localNodeId, localGeneration: 1n, nodeCount, timing, fencer, log: () => {}, now: () => now.ms });
  m.addRegion('r');
  return m;
}

async function settle(): Promise<void> {
  await new Promise((r) => setImmediate(r));
}

test('membership: a death is fenced (with quorum) before it is reported fenced; the higher of two nodes has no quorum', async (t) => {
  for (const [local, peer, expectFence] of [
    [0, 1, true],
    [1, 0, false],
  ] as const) {
    const now = { ms: 0 };
    const fenced: number[] = [];
    const m = membership(local, 2, fenced, now);
    const events: MembershipEvent[] = [];
    m.subscribe((e) => events.push(e));
    const round = (peerSeq: bigint) => {
      const blocks = [0, 1].map((n) => blk(n, n === peer ? peerSeq : 0n, n === peer ? 77n : 0n, 1500));
      m.observe('r', blocks);
    };
    round(1n);
    now.ms = 100;
    round(2n);
    t.deepEqual(m.members().map((x) => x.state), ['up', 'up']);
    t.true(m.hasQuorum());
    now.ms = 2200;
    round(2n);
    await settle();
    t.deepEqual(events.map((e) => e.kind), expectFence ? ['up', 'down', 'fenced'] : ['up', 'down']);
    t.is(m.hasQuorum(), expectFence);
    t.is(m.isFenced(peer, 77n), expectFence);
    t.deepEqual(fenced, expectFence ? [peer] : []);
    t.is(m.members()[peer]!.state, expectFence ? 'fenced' : 'dead');
    // After the fence the dead node leaves the quorum base: the survivor alone has quorum.
    if (expectFence) t.true(m.hasQuorum());
  }
});

test('liveness: an incarnation never seen alive is reported stale once, after the dead time', (t) => {
  const s = new SlotTracker(5, 2000, 1);
  t.deepEqual(s.observe(blk(5, 77n, 9n, 2000), 0), []);
  t.deepEqual(s.observe(blk(5, 77n, 9n, 2000), 2000), []);
  t.like(s.observe(blk(5, 77n, 9n, 2000), 2001)[0], { kind: 'stale', nodeId: 5, generation: 9n });
  t.deepEqual(s.observe(blk(5, 77n, 9n, 2000), 5000), [], 'reported once');
  // A free slot or a clean leave is never stale.
  const f = new SlotTracker(6, 2000, 1);
  f.observe(blk(6, 5n, 0n, 2000), 0);
  t.deepEqual(f.observe(blk(6, 5n, 0n, 2000), 10_000), []);
});

test('membership: a node declared dead but not fenced (no quorum) that moves again is up again; nothing was recovered', async (t) => {
  const now = { ms: 0 };
  const fenced: number[] = [];
  const m = membership(1, 2, fenced, now);
  const events: string[] = [];
  m.subscribe((e) => events.push(`${e.kind}:${e.nodeId}`));
  const round = (seq: bigint) => m.observe('r', [blk(0, seq, 42n, 2000), blk(1, 0n, 0n, 2000)]);
  round(1n);
  now.ms = 100;
  round(2n);
  now.ms = 2200;
  round(2n); // dead; node 1 has no quorum (two-node tie-break), so it is not fenced
  await settle();
  t.is(m.members()[0]!.state, 'dead');
  now.ms = 2300;
  round(3n); // the stopped process resumed
  await settle();
  t.deepEqual(events, ['up:0', 'down:0', 'up:0']);
  t.is(m.members()[0]!.state, 'up');
  t.false(m.isFenced(0, 42n));
  t.deepEqual(fenced, []);
});
