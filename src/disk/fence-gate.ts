// The real WriteGate: every write of node N to a fenced device holds LOCKDIR/gate-N.lock SHARED
// from its check to the end of its pwrite, and the check reads the reservation state on the disk.
// A fencer changes N's registration only while holding gate-N EXCLUSIVELY (src/disk/reservations.ts),
// so the check and the write are atomic with respect to a preempt: once the preempt has completed,
// no write of N that starts afterwards can land — even if N was SIGSTOPped between its check and
// its pwrite (it then holds the gate, the preempt waits, and the fencer escalates to the power
// fence after a bounded wait). This lock is separate from the in-use guard (a flock on the image).
//
// A write is refused (DiskError EFENCED) when:
//   - this node fenced itself (selfFence: its heartbeat failed, or it saw its key preempted), or
//   - its key is recorded as preempted, or
//   - a registrants-only reservation exists and its key is not registered.
//
// The gate lease (issue 16: the cost per write). Taking the gate is three flocks (intent shared,
// gate shared, intent released) and letting go a fourth; a lock+unlock writes three sectors back
// to back. So the gate, once taken, stays held SHARED for a short lease: until the event loop next
// turns (setImmediate), and not much longer than GATE_LEASE_MS_MAX. Writes inside the lease take no
// lock; the first write of a lease checks the reservation state (one pread of both copies'
// updateSeq, and the whole state when one changed), and so does every later write of the lease
// unless the lease is vouched for (below).
// Why a fenced node still never writes after its fence is visible: a fence becomes visible when
// the fencer writes the preempt, which it does holding gate-N EXCLUSIVELY. A lease holds gate-N
// SHARED for its whole life, so no preempt can be written while a lease is held: every write of a
// lease happens before the preempt is written, or in a later lease, whose check runs after the
// lease took the gate, hence after the preempt was written (and its updateSeq changed), and
// refuses. A fencer waits for a lease as it waits for a write in progress: a writer lets go at the
// end of its event-loop turn, or once the lease is older than GATE_LEASE_MS_MAX at one of its next
// GATE_LEASE_CLOCK_EVERY writes (the clock is read at entry of every GATE_LEASE_CLOCK_EVERY-th
// write of a lease, which ends an older lease before it writes), and does not take the gate again
// while the fencer holds the intent lock. A writer stopped inside a lease (SIGSTOP), or one that
// blocks its event loop after a write without writing again, holds the gate for that long, and is
// escalated to the power fence after fenceGateWaitMs, exactly like one stopped inside a write.
// A PR command of this same process on gate-N (a node registering on a device it opens) does not
// wait for the turn: it ends this process's leases on gate-N first (reservations.ts,
// registerLocalLease), since waiting would hold the intent lock that our next write waits for.
//
// The vouched lease (issue 18: a cluster-locked LV's writes at ≥ 0.95 of an unlocked one's; the
// probe's pread was a third of a 4 KiB write). When a check made inside a lease finds this key
// registered and not preempted, the rest of that lease's writes skip the check: its verdict cannot
// change before the lease ends. Why: while the key is registered, the only things that can refuse
// it are its own entries (registered[N] no longer this key, preempted[N] = this key); a
// reservation's type matters only to an unregistered key. Every command that writes N's entries
// holds gate-N EXCLUSIVELY while it does (reservations.ts: register, unregister, preempt, and
// clear, which takes every registered node's gate), and the lease holds gate-N SHARED from before
// that check to its end, so no such write falls inside the lease. The one writer of N's entries
// without gate-N is markFenced, the record of a power fence: it runs after the victim process was
// killed (fencer.ts), so no lease of that process is left. A later lease checks afresh, after it
// took the gate, hence after any such command completed — the argument above, unchanged. A key
// found unregistered is never vouched for: each of its writes is checked, so a reservation made
// meanwhile by another node (which takes no gate of ours) refuses the next one.

import { assert, DiskError } from '../errors.js';
import { PR_TYPES } from '../format/reservations.js';
import { gateIntentPath, gateLockPath, LockFile, registerLocalLease, type ReservationStore } from './reservations.js';
import type { WriteGate } from './write-gate.js';

/**
 * Longest a gate lease lasts (above). Far below the fencer's wait for a gate (fenceGateWaitMs =
 * ioTimeoutMs: 500 ms with the local preset, 10 s with o2cb's), so a fence of a live writer never
 * escalates because of a lease; long enough for a lock+unlock's three writes (about 50 µs).
 */
export const GATE_LEASE_MS_MAX = 2;

/**
 * The lease's age is read from the clock at every this-many-th write of a lease only: a clock
 * read (~60-100 ns) cost as much as the rest of a vouched write's gate (issue 18, bench:lvm).
 * A writer that never yields then lets go within this many writes past GATE_LEASE_MS_MAX —
 * microseconds of 4 KiB writes, still far below fenceGateWaitMs. A power of two (a mask).
 */
export const GATE_LEASE_CLOCK_EVERY = 8;

/** Reservation types under which only registered initiators may write (SPC; locking.md §4.1). */
const REGISTRANTS_ONLY_WRITE = new Set<number>([
  PR_TYPES.writeExclusiveRegistrantsOnly,
  PR_TYPES.exclusiveAccessRegistrantsOnly,
  PR_TYPES.writeExclusiveAllRegistrants,
  PR_TYPES.exclusiveAccessAllRegistrants,
]);

export class FenceGate implements WriteGate {
  private readonly lock: LockFile;
  private readonly intent: LockFile;
  private selfFenced: string | undefined;
  /** When the current lease took the gate (performance.now()); undefined: the gate is not held. */
  private leaseSinceMs: number | undefined;
  /** Writes entered in the current lease when none was in flight (when to read the clock: GATE_LEASE_CLOCK_EVERY). */
  private leaseWrites = 0;
  private endScheduled = false;
  /**
   * Writes between enter and leave. More than one when a caller's write spans turns (an async
   * device); no lease ends while any is in flight (`endAtLeave`: its end waits for the last leave).
   */
  private writesInFlight = 0;
  private endAtLeave = false;
  /** Takes the current lease out of this process's registry (reservations.ts registerLocalLease). */
  private unregisterLease: (() => void) | undefined;
  /** Times the gate was taken (each a lease): for tests and the benchmark's syscall count. */
  leases = 0;
  /** Reservation-state checks made (a probe of updateSeq, or the cached verdict's re-read): a vouched lease's writes make none. */
  checks = 0;
  /** The current lease was vouched for: a check inside it found this key registered and not preempted (header). */
  private vouched = false;
  /** Writes refused so far (for status and tests). */
  refusedWrites = 0;
  /**
   * The last full check, keyed by both copies' updateSeq. While neither copy has been rewritten
   * the verdict cannot have changed: a change of OUR registration is only written under our gate
   * held exclusively, which excludes this check, and it rewrites a copy (new updateSeq) that is
   * complete before the fencer releases the gate. So the common case reads 16 bytes, not 16 KiB.
   */
  private cached: { seqA: bigint; seqB: bigint; reason: string | undefined; registered: boolean } | undefined;

  constructor(
    private readonly store: ReservationStore,
    readonly nodeId: number,
    readonly key: bigint,
    /** Bound on waiting for a fencer that holds the gate (it does for well under a millisecond). */
    private readonly lockWaitMs: number,
  ) {
    this.lock = new LockFile(gateLockPath(store.spec.lockDir, nodeId));
    this.intent = new LockFile(gateIntentPath(store.spec.lockDir, nodeId));
  }

  /** Stops all further writes of this node through this gate, for good. */
  selfFence(reason: string): void {
    this.selfFenced ??= reason;
  }

  get fencedReason(): string | undefined {
    return this.selfFenced;
  }

  enter(deviceName: string, offsetBytes: number): void {
    if (this.selfFenced !== undefined) this.refuse(deviceName, offsetBytes, `node ${this.nodeId} has fenced itself (${this.selfFenced})`);
    // A lease older than its bound ends here, before this write: a fencer waiting on the gate gets
    // it now, and this write takes the gate afresh (through the intent lock, which the fencer holds).
    // Never while another write is in flight: that write's check and pwrite must stay inside one lease.
    if (this.leaseSinceMs !== undefined && this.writesInFlight === 0 && (++this.leaseWrites & (GATE_LEASE_CLOCK_EVERY - 1)) === 0 && performance.now() - this.leaseSinceMs > GATE_LEASE_MS_MAX) this.endLease();
    if (this.leaseSinceMs === undefined) this.takeGate(deviceName, offsetBytes);
    else if (this.vouched) {
      // Checked inside this lease, registered: nothing can refuse this key before the lease ends (header).
      this.writesInFlight++;
      return;
    }
    let reason: string | undefined;
    try {
      this.checks++;
      const [seqA, seqB] = this.store.readUpdateSeqs();
      if (this.cached === undefined || this.cached.seqA !== seqA || this.cached.seqB !== seqB) {
        const s = this.store.read();
        let why: string | undefined;
        if (s.preempted[this.nodeId] === this.key) why = `node ${this.nodeId} key 0x${this.key.toString(16)} was preempted (fenced)`;
        else if (REGISTRANTS_ONLY_WRITE.has(s.reservationType) && s.registered[this.nodeId] !== this.key) {
          why = `node ${this.nodeId} key 0x${this.key.toString(16)} is not registered (reservation conflict)`;
        }
        this.cached = { seqA, seqB, reason: why, registered: s.registered[this.nodeId] === this.key };
      }
      reason = this.cached.reason;
      // The lease holds the gate since before this check (takeGate above, or a write before).
      this.vouched = reason === undefined && this.cached.registered;
    } catch (err) {
      this.endSoon();
      throw err;
    }
    if (reason !== undefined) {
      this.endSoon();
      // A preempted key never comes back: make the refusal permanent and cheap.
      this.selfFence(reason);
      this.refuse(deviceName, offsetBytes, reason);
    }
    this.writesInFlight++;
  }

  /** Takes gate-N shared (through the intent lock) and starts a lease, ended at the next turn of the event loop. */
  private takeGate(deviceName: string, offsetBytes: number): void {
    // A fencer announces itself on the intent lock before it waits for the gate: do not start a
    // write while one does (see src/disk/reservations.ts).
    if (!this.intent.lockSync('sh', this.lockWaitMs)) {
      throw new DiskError('EIO', `${deviceName}: write at offset ${offsetBytes}: node ${this.nodeId} is being fenced (gate busy for ${this.lockWaitMs} ms)`, { device: deviceName, offsetBytes });
    }
    let gotGate: boolean;
    try {
      gotGate = this.lock.lockSync('sh', this.lockWaitMs);
    } finally {
      this.intent.unlock();
    }
    if (!gotGate) {
      throw new DiskError('EIO', `${deviceName}: write at offset ${offsetBytes}: fence gate of node ${this.nodeId} busy for ${this.lockWaitMs} ms`, { device: deviceName, offsetBytes });
    }
    this.leaseSinceMs = performance.now();
    this.leaseWrites = 0;
    this.leases++;
    this.unregisterLease = registerLocalLease(this.lock.path, this.endSoon);
    // A FileDisk write is synchronous (enter, pwrite, leave in one call), so when this runs no
    // write is between its check and its pwrite; writes that span turns between enter and leave
    // keep the gate until the last of them leaves (writesInFlight).
    if (!this.endScheduled) {
      this.endScheduled = true;
      setImmediate(() => {
        this.endScheduled = false;
        this.endSoon();
      });
    }
  }

  /** Ends the lease now, or when the write in progress leaves (the turn's end, or a PR command of this process: reservations.ts). */
  private readonly endSoon = (): void => {
    if (this.writesInFlight > 0) this.endAtLeave = true;
    else this.endLease();
  };

  private endLease(): void {
    if (this.leaseSinceMs === undefined) return;
    this.leaseSinceMs = undefined;
    this.vouched = false;
    this.unregisterLease?.();
    this.unregisterLease = undefined;
    try {
      this.lock.unlock();
    } catch {
      // Must not throw (leave() and timers call this); closing the fd at exit releases the lock anyway.
    }
  }

  /** The write is done; the gate stays held until its lease ends (above). */
  leave(): void {
    // (The message is built only on failure: this runs on every write.)
    if (this.writesInFlight <= 0) assert(false, `fence gate of node ${this.nodeId}: leave without enter`);
    this.writesInFlight--;
    if (this.writesInFlight === 0 && this.endAtLeave) {
      this.endAtLeave = false;
      this.endLease();
    }
  }

  private refuse(deviceName: string, offsetBytes: number, reason: string): never {
    this.refusedWrites++;
    throw new DiskError('EFENCED', `${deviceName}: write at offset ${offsetBytes} refused: ${reason}`, { device: deviceName, offsetBytes });
  }

  close(): void {
    this.endLease();
    this.lock.close();
    this.intent.close();
  }
}

/**
 * The gate of a device whose reservations live elsewhere (an nbd:// disk: there the target does
 * the refusing, by cutting the victim's connection). It only enforces this node's own self-fence.
 */
export class SelfFenceGate implements WriteGate {
  private selfFenced: string | undefined;
  refusedWrites = 0;

  selfFence(reason: string): void {
    this.selfFenced ??= reason;
  }

  get fencedReason(): string | undefined {
    return this.selfFenced;
  }

  enter(deviceName: string, offsetBytes: number): void {
    if (this.selfFenced === undefined) return;
    this.refusedWrites++;
    throw new DiskError('EFENCED', `${deviceName}: write at offset ${offsetBytes} refused: this node has fenced itself (${this.selfFenced})`, { device: deviceName, offsetBytes });
  }

  leave(): void {}

  close(): void {}
}

/** What the heartbeat needs of a gate: a way to stop all further writes. */
export interface SelfFencingGate extends WriteGate {
  selfFence(reason: string): void;
  readonly fencedReason: string | undefined;
  close(): void;
}
