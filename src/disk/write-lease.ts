// The self-fence deadline every write of a node checks (a heartbeat's lease: past it, the node
// fences itself), and the clock those checks read.
//
// Why on every write (DeviceProvider.addLease says it in full): a process resumed after a stop may
// run a queued write before its watchdog timer runs, and the survivors' fence may not have reached
// the device yet; a write that passes the check starts before any peer can have declared the node
// dead. So the check stays on every write; this module makes it one clock read and one compare
// per lease (issue 18: a cluster-locked LV's writes at ≥ 0.95 of an unlocked LV's; a 4 KiB
// page-cache write is ~2.5 µs, the 5 % ~125 ns, and the clock read was half the locked path's cost).
//
// The clock. performance.now() costs ~50-75 ns per call on the project's VM (the global
// `performance` is an accessor, the method checks its receiver, and it builds an [s, ns] array);
// the captured process.hrtime.bigint costs ~28-35 ns and compares as a BigInt without converting
// (a Number() of it costs ~20 ns more). Both read uv_hrtime, CLOCK_MONOTONIC, so they differ by a
// constant: performance.now() = (hrtime ns − origin) / 1e6. A lease states its deadline on the
// hrtime scale (leaseValidUntilNs) converted once per change from performance.now()'s with
// msToMonoNs, which never gives an instant later than the true one (origin calibrated as a lower
// bound at load, CONVERSION_MARGIN_NS subtracted for the doubles' rounding). So a write that finds
// monoNowNs() ≤ leaseValidUntilNs started before the lease's deadline; one past it asks the lease
// (leaseExpired, on performance.now()'s scale, the authority), which may still say "not expired"
// within that margin. test/write-lease.test.ts checks the conversion against both clocks.

import { assert } from '../errors.js';

/** The monotonic clock of the per-write checks (hrtime ns; module header). Captured: no `process` accessor per call. */
export const monoNowNs: () => bigint = process.hrtime.bigint;

/** A deadline no write ever reaches: a lease with no end (a heartbeat stopped cleanly). */
export const MONO_NS_NEVER = 2n ** 63n;
/** A deadline every write is past: a fenced lease (monoNowNs is never negative). */
export const MONO_NS_PAST = -1n;

/**
 * Subtracted from every converted deadline: covers the rounding of the doubles involved (a
 * performance.now() of a process up to ~100 days old is exact to well under a nanosecond; 1 µs is
 * a thousandfold margin and 0.001 % of the smallest self-fence deadline's slack).
 */
const CONVERSION_MARGIN_NS = 1000n;
/** Reads of the two clocks at load; the tightest bracket gives the origin. */
const CALIBRATION_READS = 9;

/** performance.now() = 0 on the hrtime scale, as a lower bound (module header). */
const originLowNs: bigint = (() => {
  let best: { spreadNs: bigint; originNs: bigint } | undefined;
  for (let i = 0; i < CALIBRATION_READS; i++) {
    const beforeNs = monoNowNs();
    const ms = performance.now();
    const afterNs = monoNowNs();
    // The performance.now() read happened at an hrtime in [beforeNs, afterNs]: origin ≥ beforeNs − ms·1e6.
    const originNs = beforeNs - BigInt(Math.ceil(ms * 1e6));
    if (best === undefined || afterNs - beforeNs < best.spreadNs) best = { spreadNs: afterNs - beforeNs, originNs };
  }
  return best!.originNs;
})();

/** `ms` on performance.now()'s scale as an hrtime deadline, never later than the true instant (±Infinity: never / already past). */
export function msToMonoNs(ms: number): bigint {
  if (ms === Infinity) return MONO_NS_NEVER;
  if (ms === -Infinity) return MONO_NS_PAST;
  assert(Number.isFinite(ms), `write lease: deadline ${ms} ms is not a time`);
  return originLowNs + BigInt(Math.floor(ms * 1e6)) - CONVERSION_MARGIN_NS;
}

/** A self-fence deadline every write of a node checks (a heartbeat's: src/heartbeat/heartbeat.ts). */
export interface WriteLease {
  /**
   * Up to when (monoNowNs) leaseExpired answers false, never later than its own deadline
   * (msToMonoNs): read on every write, so a field or a plain getter.
   */
  readonly leaseValidUntilNs: bigint;
  /** Whether the deadline has passed at `nowMs` (performance.now()); past it, the lease's owner fences the node. */
  leaseExpired(nowMs: number): boolean;
}

/** Whether every lease is inside its time at `nowNs` (one monoNowNs read): the write may go without asking them. */
export function leasesHoldAt(leases: readonly WriteLease[], nowNs: bigint): boolean {
  for (let i = 0; i < leases.length; i++) if (nowNs > leases[i]!.leaseValidUntilNs) return false;
  return true;
}

/**
 * Whether any of `leases` has run out now (a lease that has fences the node inside the check).
 * One read of each clock for all of them, and a lease is asked only past its leaseValidUntilNs,
 * where its answer may be yes. Every lease past its time is asked (each fences its own heartbeat).
 */
export function anyLeaseExpired(leases: readonly WriteLease[]): boolean {
  const n = leases.length;
  if (n === 0) return false;
  const nowNs = monoNowNs();
  let nowMs: number | undefined;
  let out = false;
  for (let i = 0; i < n; i++) {
    const lease = leases[i]!;
    if (nowNs > lease.leaseValidUntilNs) out = lease.leaseExpired((nowMs ??= performance.now())) || out;
  }
  return out;
}
