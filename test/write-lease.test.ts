// The self-fence deadline on the writes' clock (src/disk/write-lease.ts): a converted deadline is
// never later than the instant it stands for, a heartbeat's deadline on that clock follows its own
// through start, success, stop and fence, and a write that reads the clock past a lease's deadline
// is refused however recently its gate lease was vouched for (the one-compare path of fence-gate.ts).

import test from 'ava';
import path from 'node:path';
import { createImage, FileDisk } from '../src/disk/index.js';
import { anyLeaseExpired, leasesHoldAt, monoNowNs, msToMonoNs, MONO_NS_NEVER, MONO_NS_PAST, type WriteLease } from '../src/disk/write-lease.js';
import { Heartbeat } from '../src/heartbeat/heartbeat.js';
import type { MembershipService } from '../src/heartbeat/membership.js';
import { DeviceProvider } from '../src/node/provider.js';
import { presetTiming } from '../src/timing.js';
import { readFileAt, tempDir } from './helpers/tmp.js';

const MiB = 1024 * 1024;

test('a performance.now() time converted to the writes\' clock is never later than the instant it names, and at most a few µs earlier', (t) => {
  let worstEarlyNs = 0n;
  for (let i = 0; i < 100_000; i++) {
    const beforeNs = monoNowNs();
    const ms = performance.now();
    const afterNs = monoNowNs();
    const ns = msToMonoNs(ms);
    // The performance.now() read happened between the two hrtime reads.
    if (ns > afterNs) t.fail(`converted ${ms} ms to ${ns} ns, after the hrtime read that followed it (${afterNs} ns)`);
    if (beforeNs - ns > worstEarlyNs) worstEarlyNs = beforeNs - ns;
  }
  t.log(`worst: ${worstEarlyNs} ns early`);
  // The margin (1 µs) plus the calibration bracket; far below any deadline's slack.
  t.true(worstEarlyNs < 100_000n, `converted deadlines up to ${worstEarlyNs} ns early`);
  t.is(msToMonoNs(Infinity), MONO_NS_NEVER);
  t.is(msToMonoNs(-Infinity), MONO_NS_PAST);
  t.true(monoNowNs() > MONO_NS_PAST);
  t.throws(() => msToMonoNs(NaN));
});

test('only a lease past its deadline on the writes\' clock is asked, and its answer stands', (t) => {
  let asked = 0;
  const lease = (untilNs: bigint, expired: boolean): WriteLease => ({
    leaseValidUntilNs: untilNs,
    leaseExpired: () => {
      asked++;
      return expired;
    },
  });
  const soon = monoNowNs() + 10_000_000_000n;
  t.true(leasesHoldAt([], monoNowNs()));
  t.true(leasesHoldAt([lease(soon, false), lease(MONO_NS_NEVER, false)], monoNowNs()));
  t.false(leasesHoldAt([lease(soon, false), lease(MONO_NS_PAST, false)], monoNowNs()));
  t.false(anyLeaseExpired([lease(soon, true)]));
  t.is(asked, 0);
  // Past its time on the fast clock, but the lease itself says not yet (a late heartbeat): not expired.
  t.false(anyLeaseExpired([lease(monoNowNs() - 1n, false)]));
  t.is(asked, 1);
  t.true(anyLeaseExpired([lease(MONO_NS_PAST, true), lease(soon, true)]));
  t.is(asked, 2);
});

test("a heartbeat's deadline on the writes' clock follows its own: running, stopped, fenced", async (t) => {
  const img = path.join(tempDir(t), 'hb.img');
  createImage(img, { sizeBytes: MiB });
  const device = FileDisk.open(img, { guard: 'none' });
  t.teardown(() => device.close());
  const membership = { addRegion: () => undefined, observe: () => undefined, selfFenced: () => undefined } as unknown as MembershipService;
  const timing = presetTiming('local');
  const make = (): Heartbeat =>
    new Heartbeat({ region: { name: 'hb', device, offsetBytes: 0, blockBytes: 512, slotCount: 2 }, nodeId: 0, generation: 1n, timing, membership, gate: null, log: () => undefined });
  const a = make();
  t.is(a.leaseValidUntilNs, MONO_NS_NEVER, 'not started: no deadline');
  const t0Ns = monoNowNs();
  await a.start();
  const t1Ns = monoNowNs();
  t.is(a.leaseValidUntilNs, msToMonoNs(a.leaseValidUntilMs));
  const selfFenceNs = BigInt(timing.selfFenceMs * 1e6);
  t.true(a.leaseValidUntilNs <= t1Ns + selfFenceNs && a.leaseValidUntilNs > t0Ns + selfFenceNs - 1_000_000n, 'the deadline is selfFenceMs after the last good write');
  a.selfFence('test');
  t.is(a.leaseValidUntilNs, MONO_NS_PAST, 'fenced: every write is past it');
  t.true(anyLeaseExpired([a]));
  const b = make();
  await b.start();
  await b.stop(false);
  t.is(b.leaseValidUntilNs, MONO_NS_NEVER, 'stopped cleanly: no deadline');
  t.false(anyLeaseExpired([b]));
});

test("a node's write right after a vouched one is refused once a lease is past its deadline, within the same gate lease", async (t) => {
  const img = path.join(tempDir(t), 'disk.img');
  createImage(img, { sizeBytes: 4 * MiB });
  const provider = new DeviceProvider({ nodeId: 1, key: 0x1234n, timing: presetTiming('local') });
  t.teardown(() => provider.close());
  const dev = await provider.open(img);
  const lease: WriteLease & { leaseValidUntilNs: bigint } = {
    leaseValidUntilNs: MONO_NS_NEVER,
    leaseExpired: () => {
      provider.selfFence('heartbeat lease past its time');
      return true;
    },
  };
  provider.addLease(lease);
  // Synchronous writes, one gate lease (it ends only when the event loop turns): the first takes the
  // gate and vouches for it, the rest take the one-compare path.
  for (let i = 0; i < 100; i++) await dev.write(Buffer.alloc(4096, 1), 0);
  lease.leaseValidUntilNs = monoNowNs() - 1n;
  await t.throwsAsync(dev.write(Buffer.alloc(4096, 2), 0), { code: 'EFENCED' });
  t.is(readFileAt(img, 0, 1)[0], 1, 'the write past the deadline did not land (the byte is still the last vouched write)');
  await dev.close();
});
