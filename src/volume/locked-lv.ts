// I/O through a logical volume under its cluster lock, so that no write ever lands through a
// stale layout (issue 18 item 3; locking.md §5: EVMS corrupted data because a layout change
// reached the other nodes without locking them out first).
//
// A node doing I/O through an LV holds the LV's lock (PR for I/O under a shared container, EX for
// exclusive use) with a blocking callback, and a layout snapshot tagged with its generation (the
// VG seqno it was read at). A changer (lockout.ts) takes the VG lock EX, then asks for the LV lock
// EX; the lock manager calls our bast, and we:
//   1. stop admitting I/O (new requests wait),
//   2. wait for the I/O in flight to finish (every request was admitted under the old layout),
//   3. release the LV lock — only now can the changer have it and commit,
//   4. ask for the VG lock PR (queued behind the changer's EX), re-read the layout at the new
//      generation, take the LV lock again, release the VG lock, and admit I/O again.
// The layout is swapped only in step 4, with nothing in flight; so every write that reaches a PV
// went through the layout of the generation under which this node held the LV lock, and no change
// commits while anyone holds the LV lock. A request past the (new) end fails with LvRangeError;
// on a removed LV every request fails with ENOENT.
//
// Lock order everywhere: the VG lock before the LV lock (changers and holders alike), so no cycle.

import type { QuorumHold } from '../disk/quorum-hold.js';
import { assert, SanboxError } from '../errors.js';
import { Mode, modeName } from '../dlm/compat-matrix.js';
import { DlmError, type Lock, type Lockspace } from '../dlm/lock-manager.js';
import { mayRunInCall } from '../disk/turn-budget.js';
import { ioInCall, isSyncFit, type BlockDevice, type SectorSize, type SyncBlockDevice } from '../disk/device.js';
import type { LvDevice } from './lv-device.js';
import { lvLockResource, vgLockResource } from './lvm-locks.js';

/** A request past the end of the LV's current layout. */
export class LvRangeError extends SanboxError {
  constructor(lv: string, offsetBytes: number, lengthBytes: number, sizeBytes: number, generation: number) {
    super('EBOUNDS', `${lv}: ${lengthBytes} bytes at offset ${offsetBytes} are past the end of the logical volume (size ${sizeBytes} bytes at VG seqno ${generation})`, { device: lv, offsetBytes });
  }
}

export interface LockedLvOptions {
  /** PR: I/O beside other nodes (a shared container); EX: this node alone. */
  mode: Mode.PR | Mode.EX;
  /** Bound on each lock wait (the cluster's lockTimeoutMs): a lock-out that never ends fails I/O. */
  lockTimeoutMs: number;
  log?: (msg: string) => void;
  /**
   * The node's quorum hold (src/disk/quorum-hold.ts) for an LV of a shared or private container:
   * its I/O waits for quorum before it is admitted here, so a held request is not in flight and
   * never holds up a lock-out's drain.
   */
  hold?: QuorumHold;
  /**
   * The first take of the LV lock fails at once on a conflict (DlmError EAGAIN) instead of
   * queueing: an activation (lvchange -aey|-asy) is refused when another node's activation
   * conflicts, as lvmlockd refuses it. A NOQUEUE request writes nothing, so the holders get no
   * blocking notice: only a layout change (which queues) makes them let go. The re-takes after a
   * lock-out queue as always.
   */
  noqueue?: boolean;
  /** The caller holds the VG lock (PR or stronger) across open(): open() takes none of its own. */
  vgLockHeld?: boolean;
}

/** One lock-out as this node saw it: how long I/O was held back, and the generations. */
export interface LockoutPause {
  pausedMs: number;
  fromGeneration: number;
  toGeneration: number;
}

type State = 'running' | 'paused' | 'failed';
/** An I/O through io(): a read or write carries its buffer, a discard or flush none. */
type IoKind = 'read' | 'write' | 'discard' | 'flush';

export class LockedLv implements BlockDevice {
  readonly name: string;
  readonly sectorSizeBytes: SectorSize;
  readonly readOnly: boolean;
  /** Every lock-out this device went through, oldest first (tests, bench). */
  readonly pauses: LockoutPause[] = [];
  private state: State = 'running';
  private failedWith: SanboxError | undefined;
  private inflight = 0;
  private onDrained: (() => void) | undefined;
  private resumed: Promise<void> = Promise.resolve();
  private letGoCycle: Promise<void> | undefined;
  /** A blocking notice on the re-taken lock that came while the let-go cycle was still finishing. */
  private blockedAgain = false;
  private closed = false;
  /** o.hold, in a field of its own: read on every I/O (inCall). */
  private readonly hold: QuorumHold | undefined;

  private constructor(
    private readonly ls: Lockspace,
    private readonly lv: LvDevice,
    private readonly vgName: string,
    private lvLock: Lock,
    private readonly o: LockedLvOptions,
  ) {
    this.name = lv.name;
    this.sectorSizeBytes = lv.sectorSizeBytes;
    this.readOnly = lv.readOnly;
    this.hold = o.hold;
  }

  /**
   * Takes the VG lock PR, opens the LV (`openLv` reads its layout), takes the LV lock in `o.mode`
   * with the blocking callback, and lets the VG lock go.
   */
  static async open(ls: Lockspace, vgName: string, openLv: () => Promise<LvDevice>, o: LockedLvOptions): Promise<LockedLv> {
    const vgLock = o.vgLockHeld === true ? undefined : await ls.lock(vgLockResource(vgName), Mode.PR, { timeoutMs: o.lockTimeoutMs });
    try {
      const lv = await openLv();
      try {
        let self: LockedLv | undefined;
        const wait = o.noqueue === true ? { noqueue: true } : { timeoutMs: o.lockTimeoutMs };
        const lvLock = await ls.lock(lvLockResource(vgName, lv.lvId), o.mode, { ...wait, bast: () => self?.blocked() });
        self = new LockedLv(ls, lv, vgName, lvLock, o);
        return self;
      } catch (err) {
        await lv.close();
        throw err;
      }
    } finally {
      await vgLock?.unlock().catch(() => undefined);
    }
  }

  /** Why I/O fails for good (the LV was removed, the lock could not be re-taken), if it does. */
  get failure(): SanboxError | undefined {
    return this.state === 'failed' ? this.failedWith : undefined;
  }

  get sizeBytes(): number {
    return this.lv.sizeBytes;
  }

  /** The VG seqno of the layout in use. */
  get generation(): number {
    return this.lv.generation;
  }

  get lvId(): string {
    return this.lv.lvId;
  }

  /** The bast: another node wants the LV lock in a conflicting mode. */
  private blocked(): void {
    if (this.state === 'failed' || this.closed) return;
    if (this.letGoCycle !== undefined) {
      this.blockedAgain = true;
      return;
    }
    this.letGoCycle = this.letGo().finally(() => {
      this.letGoCycle = undefined;
      if (this.blockedAgain) {
        this.blockedAgain = false;
        this.blocked();
      }
    });
  }

  private async letGo(): Promise<void> {
    const t0 = performance.now();
    const from = this.lv.generation;
    let resume!: () => void;
    this.resumed = new Promise<void>((r) => (resume = r));
    this.state = 'paused';
    try {
      if (this.inflight > 0) await new Promise<void>((r) => (this.onDrained = r));
      this.o.log?.(`${this.name}: node asked to let go of its layout (generation ${from}); ${this.inflight} I/O in flight, releasing ${modeName(this.o.mode)}`);
      await this.lvLock.unlock();
      const vgLock = await this.ls.lock(vgLockResource(this.vgName), Mode.PR, { timeoutMs: this.o.lockTimeoutMs });
      try {
        try {
          await this.lv.refresh(true);
        } catch (err) {
          if (err instanceof SanboxError && err.code === 'ENOENT') {
            this.fail(new SanboxError('ENOENT', `${this.name}: the logical volume was removed by another node (it was at VG seqno ${from})`, { device: this.name }));
            return;
          }
          throw err;
        }
        // A notice from here on is about the lock taken now (the old one's notices are moot).
        this.blockedAgain = false;
        this.lvLock = await this.ls.lock(lvLockResource(this.vgName, this.lv.lvId), this.o.mode, { timeoutMs: this.o.lockTimeoutMs, bast: () => this.blocked() });
      } finally {
        await vgLock.unlock().catch(() => undefined);
      }
      if (this.state === 'paused') this.state = 'running';
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      this.fail(new SanboxError(err instanceof DlmError && err.code === 'EFENCED' ? 'EFENCED' : 'EIO', `${this.name}: could not take the logical volume back after a layout change: ${why}`, { device: this.name, cause: err }));
    } finally {
      this.pauses.push({ pausedMs: performance.now() - t0, fromGeneration: from, toGeneration: this.lv.generation });
      resume();
    }
  }

  private fail(err: SanboxError): void {
    this.state = 'failed';
    this.failedWith ??= err;
  }

  /** Checks a request against the current layout (not paused) and counts it in flight. */
  private admit(offsetBytes: number, lengthBytes: number): void {
    if (this.closed) throw new SanboxError('ECLOSED', `${this.name}: device is closed`, { device: this.name, offsetBytes });
    if (this.state === 'failed') throw this.failedWith!;
    if (this.lvLock.lost !== undefined) throw new SanboxError('EFENCED', `${this.name}: the logical volume's lock was lost: ${this.lvLock.lost}`, { device: this.name, offsetBytes });
    if (!Number.isSafeInteger(offsetBytes) || offsetBytes < 0 || offsetBytes + lengthBytes > this.lv.sizeBytes) {
      throw new LvRangeError(this.name, offsetBytes, lengthBytes, this.lv.sizeBytes, this.lv.generation);
    }
    this.inflight++;
  }

  private done(generation: number): void {
    // The layout is only swapped with nothing in flight (letGo waits for the drain). (The message
    // is built only on failure: this runs on every I/O.)
    if (this.lv.generation !== generation) assert(false, `${this.name}: layout changed from generation ${generation} to ${this.lv.generation} under an I/O in flight`);
    this.inflight--;
    if (this.inflight === 0 && this.onDrained !== undefined) {
      const d = this.onDrained;
      this.onDrained = undefined;
      d();
    }
  }

  /**
   * The LV's synchronous form when a read or write of [offsetBytes, +lengthBytes) may run inside
   * the call now, else undefined: quorate (the hold's flag), running (no lock-out, not failed or
   * closed), the LV lock not lost, inside the current layout, the LV's synchronous form fit (no
   * fault rule could block the thread: isSyncFit), and the event loop turned recently enough with
   * nothing earlier deferred (turn-budget.ts; else the promise form, whose SyncLvDevice queues
   * behind the deferred ops). The same conditions io() checks, as plain field reads and compares
   * with no allocation: this is on every I/O (issue 18: the cluster-locked LV at ≥ 0.95 of the
   * unlocked one, bench:lvm "cluster"; docs/containers.md says where the time goes). When it says
   * no, io() decides, with the waits and the errors. test/locked-lv-fast-path.test.ts fails if any
   * condition is dropped.
   */
  private inCall(offsetBytes: number, lengthBytes: number): SyncBlockDevice | undefined {
    const hold = this.hold;
    const lv = this.lv;
    if (
      (hold === undefined || hold.passing) &&
      this.state === 'running' &&
      !this.closed &&
      this.lvLock.lost === undefined &&
      Number.isSafeInteger(offsetBytes) &&
      offsetBytes >= 0 &&
      offsetBytes + lengthBytes <= lv.sizeBytes &&
      isSyncFit(lv) &&
      mayRunInCall()
    ) {
      return lv;
    }
    return undefined;
  }

  /**
   * Waits out a quorum hold and a lock-out, then runs one I/O counted in flight, through the LV's
   * promise form (which itself runs inside the call when it can). The path of every I/O that
   * inCall turned away: a held, paused, failed or out-of-range one, a flush or discard, or one
   * over a device whose synchronous form is unfit now.
   */
  private io(what: IoKind, offsetBytes: number, lengthBytes: number, buf?: Buffer): Promise<void> {
    const hold = this.hold;
    if (hold !== undefined && !hold.passing) {
      let w: Promise<void> | undefined;
      try {
        w = hold.admit(this.name, what, offsetBytes);
      } catch (err) {
        return Promise.reject(err as Error);
      }
      if (w !== undefined) return w.then(() => this.io(what, offsetBytes, lengthBytes, buf));
    }
    if (this.state === 'paused') return this.resumed.then(() => this.io(what, offsetBytes, lengthBytes, buf));
    const generation = this.lv.generation;
    try {
      this.admit(offsetBytes, lengthBytes);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const lv = this.lv;
    let p: Promise<void>;
    try {
      if (buf !== undefined) p = what === 'read' ? lv.read(buf, offsetBytes) : lv.write(buf, offsetBytes);
      else p = what === 'discard' ? lv.discard(offsetBytes, lengthBytes) : lv.flush();
    } catch (err) {
      this.done(generation);
      return Promise.reject(err as Error);
    }
    return p.then(
      () => this.done(generation),
      (err: unknown) => {
        this.done(generation);
        throw err;
      },
    );
  }

  // The in-call read or write (inCall said yes) is not counted in flight: the layout is swapped
  // only in letGo, with nothing in flight, and letGo (a continuation of the bast's promise chain)
  // cannot run inside this one synchronous call, from inCall's admission to the pwrite's return.
  // Nothing below waits by running JS either: a gate's flock wait, a SIGSTOP at a pause point and
  // a fault layer's sleep block the thread (and a fault rule turns inCall away). So the layout the
  // admission checked is the one the I/O is mapped through, and no drain can be waiting for it.
  read(buf: Buffer, offsetBytes: number): Promise<void> {
    const lv = this.inCall(offsetBytes, buf.length);
    return lv !== undefined ? ioInCall(lv, 'read', buf, offsetBytes) : this.io('read', offsetBytes, buf.length, buf);
  }

  write(buf: Buffer, offsetBytes: number): Promise<void> {
    const lv = this.inCall(offsetBytes, buf.length);
    return lv !== undefined ? ioInCall(lv, 'write', buf, offsetBytes) : this.io('write', offsetBytes, buf.length, buf);
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.io('discard', offsetBytes, lengthBytes);
  }

  /**
   * Through io() like the rest (review finding 7): a flush is held without quorum, waits out a
   * lock-out, and is counted in flight, so a layout change never commits under a flush of the
   * old layout's PVs.
   */
  flush(): Promise<void> {
    return this.io('flush', 0, 0);
  }

  /** Drains, releases the LV lock (if held) and closes the LV. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.letGoCycle;
    if (this.inflight > 0) await new Promise<void>((r) => (this.onDrained = r));
    if (!this.lvLock.released && this.lvLock.lost === undefined) await this.lvLock.unlock().catch(() => undefined);
    await this.lv.close();
  }
}
