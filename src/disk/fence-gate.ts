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

import { DiskError } from '../errors.js';
import { PR_TYPES } from '../format/reservations.js';
import { gateIntentPath, gateLockPath, LockFile, type ReservationStore } from './reservations.js';
import type { WriteGate } from './write-gate.js';

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
  private held = false;
  /** Writes refused so far (for status and tests). */
  refusedWrites = 0;
  /**
   * The last full check, keyed by both copies' updateSeq. While neither copy has been rewritten
   * the verdict cannot have changed: a change of OUR registration is only written under our gate
   * held exclusively, which excludes this check, and it rewrites a copy (new updateSeq) that is
   * complete before the fencer releases the gate. So the common case reads 16 bytes, not 16 KiB.
   */
  private cached: { seqA: bigint; seqB: bigint; reason: string | undefined } | undefined;

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
    let reason: string | undefined;
    try {
      const [seqA, seqB] = this.store.readUpdateSeqs();
      if (this.cached !== undefined && this.cached.seqA === seqA && this.cached.seqB === seqB) {
        reason = this.cached.reason;
      } else {
        const s = this.store.read();
        if (s.preempted[this.nodeId] === this.key) reason = `node ${this.nodeId} key 0x${this.key.toString(16)} was preempted (fenced)`;
        else if (REGISTRANTS_ONLY_WRITE.has(s.reservationType) && s.registered[this.nodeId] !== this.key) {
          reason = `node ${this.nodeId} key 0x${this.key.toString(16)} is not registered (reservation conflict)`;
        }
        this.cached = { seqA, seqB, reason };
      }
    } catch (err) {
      this.lock.unlock();
      throw err;
    }
    if (reason !== undefined) {
      this.lock.unlock();
      // A preempted key never comes back: make the refusal permanent and cheap.
      this.selfFence(reason);
      this.refuse(deviceName, offsetBytes, reason);
    }
    this.held = true;
  }

  leave(): void {
    if (!this.held) return;
    this.held = false;
    try {
      this.lock.unlock();
    } catch {
      // leave() must not throw (WriteGate contract); closing the fd at exit releases the lock anyway.
    }
  }

  private refuse(deviceName: string, offsetBytes: number, reason: string): never {
    this.refusedWrites++;
    throw new DiskError('EFENCED', `${deviceName}: write at offset ${offsetBytes} refused: ${reason}`, { device: deviceName, offsetBytes });
  }

  close(): void {
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
