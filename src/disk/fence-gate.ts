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
// end of its event-loop turn, or at its first write once the lease is older than GATE_LEASE_MS_MAX
// (the clock is read on every write anyway, for the heartbeat lease below) if a fencer holds the
// intent lock by then (else the lease is renewed: renewOrEndLease), and does not take the gate
// again while the fencer holds the intent lock. A writer stopped inside a lease (SIGSTOP), or
// one that blocks its event loop after a write without writing again, holds the gate for that
// long, and is escalated to the power fence after fenceGateWaitMs, exactly like one stopped inside
// a write.
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
//
// The heartbeat leases (src/disk/write-lease.ts, DeviceProvider.addLease): every write also checks
// the node's self-fence deadlines, after the gate's own check, right before the pwrite, against a
// clock read taken after anything in enter() that can wait (taking the gate). A write past one is
// refused (EFENCED), and the lease's owner has fenced the node by then.
//
// One clock read and one compare per write (issue 18: the cluster-locked LV's writes at ≥ 0.95 of
// an unlocked LV's). While a lease is vouched for, `passUntilNs` is its end (GATE_LEASE_MS_MAX
// after the gate was taken), else MONO_NS_PAST. A write that reads the clock once and finds it at
// or before passUntilNs and before every heartbeat lease's leaseValidUntilNs goes straight to its
// pwrite: it is a write of a vouched lease that is not past its time bound (so nothing on the disk
// can refuse it, above), and the node is inside every self-fence deadline at that read, with
// nothing that can wait between the read and the pwrite. It is exactly the slow path's verdict:
// the slow path would find the lease not yet to be ended (its age inside the bound), skip the
// reservation check (vouched), and find no lease past its time. passUntilNs falls back to
// MONO_NS_PAST whenever one of those stops holding: the lease ends (endLease), the node fences
// itself (selfFence), a check does not vouch. Any other write takes the slow path, which does what
// the fast one skipped and reads the clock again for the heartbeat leases.

import { assert, DiskError } from '../errors.js';
import { PR_TYPES } from '../format/reservations.js';
import { gateIntentPath, gateLockPath, LockFile, registerLocalLease, type ReservationStore } from './reservations.js';
import { pauseInsideWrite } from './pause-point.js';
import type { WriteGate } from './write-gate.js';
import { anyLeaseExpired, leasesHoldAt, monoNowNs, MONO_NS_PAST, type WriteLease } from './write-lease.js';

/**
 * Longest a gate lease lasts (above). Far below the fencer's wait for a gate (fenceGateWaitMs =
 * ioTimeoutMs: 500 ms with the local preset, 10 s with o2cb's), so a fence of a live writer never
 * escalates because of a lease; long enough for a lock+unlock's three writes (about 50 µs).
 */
export const GATE_LEASE_MS_MAX = 2;

/** GATE_LEASE_MS_MAX on the writes' clock (write-lease.ts monoNowNs). */
const GATE_LEASE_NS_MAX = BigInt(GATE_LEASE_MS_MAX * 1_000_000);

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
  private readonly fenceListeners = new FenceListeners();
  /** When the current lease reaches its time bound (monoNowNs: taken + GATE_LEASE_MS_MAX); undefined: the gate is not held. */
  private leaseUntilNs: bigint | undefined;
  /** Up to when a write may skip every check but the heartbeat leases' (header: the vouched lease's end, else MONO_NS_PAST). */
  private passUntilNs = MONO_NS_PAST;
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
  /** Times a lease at its time bound was renewed (renewOrEndLease): for tests. */
  renewals = 0;
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
    /** The node's heartbeat leases, checked on every write (header); the provider's list itself, as leases come and go. */
    private readonly heartbeatLeases: readonly WriteLease[] = [],
  ) {
    this.lock = new LockFile(gateLockPath(store.spec.lockDir, nodeId));
    this.intent = new LockFile(gateIntentPath(store.spec.lockDir, nodeId));
  }

  /** Stops all further writes of this node through this gate, for good. */
  selfFence(reason: string): void {
    if (this.selfFenced !== undefined) return;
    this.selfFenced = reason;
    this.passUntilNs = MONO_NS_PAST;
    this.fenceListeners.fire(reason);
  }

  get fencedReason(): string | undefined {
    return this.selfFenced;
  }

  onSelfFence(listener: (reason: string) => void): void {
    this.fenceListeners.add(listener, this.selfFenced);
  }

  /**
   * A write that entered and then waited (an async device's queue): refused if this node fenced
   * itself meanwhile. The reservation state needs no new look: while the write is in flight its
   * lease holds gate-N (no lease ends while a write is in flight), so nothing that changes this
   * node's registration has been written since its enter checked it (header).
   */
  check(deviceName: string, offsetBytes: number): void {
    if (this.selfFenced !== undefined) this.refuse(deviceName, offsetBytes, `node ${this.nodeId} has fenced itself (${this.selfFenced})`);
    if (anyLeaseExpired(this.heartbeatLeases)) this.refuse(deviceName, offsetBytes, this.selfFenced ?? 'the node is past its self-fence deadline');
  }

  enter(deviceName: string, offsetBytes: number): void {
    const nowNs = monoNowNs();
    // A vouched lease inside its time bound, every heartbeat lease inside its own: one clock read (header).
    if (nowNs <= this.passUntilNs && leasesHoldAt(this.heartbeatLeases, nowNs)) {
      this.writesInFlight++;
      pauseInsideWrite(deviceName, offsetBytes);
      return;
    }
    this.enterChecked(deviceName, offsetBytes, nowNs);
    // After the gate's check (which may have waited for the gate): the clock read again.
    if (anyLeaseExpired(this.heartbeatLeases)) {
      this.leave();
      // The lease check fenced the node (every gate of it refuses from now on); this write is refused too.
      this.refuse(deviceName, offsetBytes, this.selfFenced ?? 'the node is past its self-fence deadline');
    }
    pauseInsideWrite(deviceName, offsetBytes);
  }

  /** The gate's own checks (header), the write counted in flight once they pass. */
  private enterChecked(deviceName: string, offsetBytes: number, nowNs: bigint): void {
    if (this.selfFenced !== undefined) this.refuse(deviceName, offsetBytes, `node ${this.nodeId} has fenced itself (${this.selfFenced})`);
    // A lease past its time bound ends here, before this write: a fencer waiting on the gate gets
    // it now, and this write takes the gate afresh (through the intent lock, which the fencer holds).
    // Never while another write is in flight: that write's check and pwrite must stay inside one lease.
    if (this.leaseUntilNs !== undefined && this.writesInFlight === 0 && nowNs > this.leaseUntilNs) this.renewOrEndLease(nowNs);
    if (this.leaseUntilNs === undefined) this.takeGate(deviceName, offsetBytes);
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
      this.passUntilNs = this.vouched ? this.leaseUntilNs! : MONO_NS_PAST;
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
    this.leaseUntilNs = monoNowNs() + GATE_LEASE_NS_MAX;
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

  /**
   * A lease at its time bound (no write in flight): renewed for another GATE_LEASE_MS_MAX when no
   * changer has announced itself on the intent lock (one shared attempt and its release: two flock
   * calls, where ending and re-taking the lease cost four and a pread of the reservation state,
   * ~10-16 µs, every 2 ms of writing: ~35 ns per 4 KiB write, issue 18), else ended: the changer
   * then gets the gate, and this write waits on the intent lock in takeGate. Renewing is safe
   * because the lease never let go of gate-N: nothing that changes this node's registration ran
   * since its check (header), so its verdict stands. Every changer takes the intent lock before it
   * waits for the gate (reservations.ts withGate), so one that comes later waits at most another
   * GATE_LEASE_MS_MAX, or until the event loop turns, as it would for a fresh lease.
   */
  private renewOrEndLease(nowNs: bigint): void {
    let nobodyWaits = false;
    try {
      nobodyWaits = this.intent.tryLock('sh');
      if (nobodyWaits) this.intent.unlock();
    } catch {
      nobodyWaits = false; // takeGate meets the same error and reports it
    }
    if (!nobodyWaits) {
      this.endLease();
      return;
    }
    this.leaseUntilNs = nowNs + GATE_LEASE_NS_MAX;
    if (this.vouched) this.passUntilNs = this.leaseUntilNs;
    this.renewals++;
  }

  /** Ends the lease now, or when the write in progress leaves (the turn's end, or a PR command of this process: reservations.ts). */
  private readonly endSoon = (): void => {
    if (this.writesInFlight > 0) this.endAtLeave = true;
    else this.endLease();
  };

  private endLease(): void {
    if (this.leaseUntilNs === undefined) return;
    this.leaseUntilNs = undefined;
    this.vouched = false;
    this.passUntilNs = MONO_NS_PAST;
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
 * the refusing, by cutting the victim's connection). It only enforces this node's own self-fence
 * and its heartbeat leases (as FenceGate does, after its own check).
 */
export class SelfFenceGate implements WriteGate {
  private selfFenced: string | undefined;
  private readonly fenceListeners = new FenceListeners();
  refusedWrites = 0;

  constructor(private readonly heartbeatLeases: readonly WriteLease[] = []) {}

  selfFence(reason: string): void {
    if (this.selfFenced !== undefined) return;
    this.selfFenced = reason;
    this.fenceListeners.fire(reason);
  }

  get fencedReason(): string | undefined {
    return this.selfFenced;
  }

  onSelfFence(listener: (reason: string) => void): void {
    this.fenceListeners.add(listener, this.selfFenced);
  }

  enter(deviceName: string, offsetBytes: number): void {
    this.check(deviceName, offsetBytes);
    pauseInsideWrite(deviceName, offsetBytes);
  }

  /** enter()'s question again (it counts nothing here), for a write that waited. */
  check(deviceName: string, offsetBytes: number): void {
    if (this.selfFenced !== undefined || anyLeaseExpired(this.heartbeatLeases)) this.refuse(deviceName, offsetBytes);
  }

  private refuse(deviceName: string, offsetBytes: number): never {
    this.refusedWrites++;
    throw new DiskError('EFENCED', `${deviceName}: write at offset ${offsetBytes} refused: this node has fenced itself (${this.selfFenced ?? 'past its self-fence deadline'})`, { device: deviceName, offsetBytes });
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

/**
 * The listeners of one gate's self-fence (WriteGate.onSelfFence): each is called once, when the
 * gate fences itself, or at once if it has already. A listener that throws is a bug; it must not
 * stop the self-fence of the node's other gates (the provider fences them one after the other),
 * so its error is rethrown outside this call, where it ends the process.
 */
class FenceListeners {
  private listeners: ((reason: string) => void)[] = [];

  add(listener: (reason: string) => void, fencedReason: string | undefined): void {
    if (fencedReason === undefined) this.listeners.push(listener);
    else this.call(listener, fencedReason);
  }

  fire(reason: string): void {
    const listeners = this.listeners;
    this.listeners = [];
    for (const listener of listeners) this.call(listener, reason);
  }

  private call(listener: (reason: string) => void, reason: string): void {
    try {
      listener(reason);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }
}
