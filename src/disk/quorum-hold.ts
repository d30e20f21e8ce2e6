// Holding I/O while this node has no quorum (issue 18 item 6; EVMS CSM: only the partition with
// quorum may use shared storage, reference/locking.md §5.2). A node that loses quorum cannot tell
// whether it is the minority about to be fenced or the survivor of a majority that will come back,
// so it neither completes nor fails the I/O of its cluster volumes: it queues it, as dm-multipath
// queues I/O while no path is left (queue_if_no_path with no_path_retry):
//
//   quorate           → I/O passes (one boolean test: the fast path costs nothing measurable);
//   quorum lost at T  → every read, write, flush and discard waits;
//   quorum back       → the waiting I/O proceeds, in the order it arrived;
//   T + holdMs passed → every waiting I/O fails with EIO, and so does any new one until quorum
//                       returns (the hold is counted from the loss, not per I/O, so a node that
//                       stays without quorum answers at once instead of stalling each caller
//                       for another holdMs).
//
// An I/O already admitted when quorum is lost completes (its write still passes the fence gate
// below, which is what refuses a fenced node). The hold does not apply to heartbeat or lockspace
// I/O: the node must go on proving it is alive and watching its peers for quorum to come back.
// A node that fenced itself is not held: its I/O fails at once (EFENCED).
//
// Which devices are held is the provider's decision (src/node/provider.ts): volumes of shared and
// private containers and the ocfs2 volumes a node mounts; local containers are not held.

import { DiskError } from '../errors.js';
import type { BlockDevice, SectorSize } from './device.js';

/** What the hold needs of the node's membership: quorum now, and a word when it may have changed. */
export interface QuorumSource {
  hasQuorum(): boolean;
  /** Set once the node fenced itself: its I/O is not held but refused. */
  readonly selfFencedReason: string | undefined;
  subscribe(listener: () => void): () => void;
}

export interface QuorumHoldOptions {
  nodeId: number;
  /** How long I/O is held after quorum is lost before it fails (src/timing.ts quorumHoldMs). */
  holdMs: number;
  log?: (msg: string) => void;
  now?: () => number;
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
  what: string;
  device: string;
  offsetBytes: number | undefined;
}

export interface QuorumHoldStatus {
  /** 'open': I/O passes; 'held': I/O waits for quorum; 'failing': held past holdMs, I/O fails with EIO; 'fenced': refused for good. */
  state: 'open' | 'held' | 'failing' | 'fenced';
  /** Wall-clock time (ISO) quorum was lost, or null. */
  since: string | null;
  holdMs: number;
  /** I/O waiting now. */
  waiting: number;
  /** I/O held and then let through because quorum came back (since the node started). */
  released: number;
  /** I/O failed with EIO because the hold ran out (since the node started). */
  failed: number;
}

export class QuorumHold {
  /** The fast path: quorate and not fenced (read by every held device before each I/O). */
  private open = true;

  get passing(): boolean {
    return this.open;
  }
  private fencedReason: string | undefined;
  private lostAtMs: number | undefined;
  private lostAtWall: Date | undefined;
  private expired = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly waiters: Waiter[] = [];
  private released = 0;
  private failed = 0;
  private readonly now: () => number;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly source: QuorumSource,
    private readonly o: QuorumHoldOptions,
  ) {
    if (!Number.isSafeInteger(o.holdMs) || o.holdMs <= 0) throw new RangeError(`quorum hold: holdMs must be a positive integer, not ${o.holdMs}`);
    this.now = o.now ?? (() => performance.now());
    this.unsubscribe = source.subscribe(() => this.update());
    this.update();
  }

  /** Re-reads quorum; the membership calls it on every event (quorum changes only with one). */
  update(): void {
    const fenced = this.source.selfFencedReason;
    if (fenced !== undefined) {
      if (this.fencedReason !== undefined) return;
      // For good: a node that fenced itself never does I/O again.
      this.fencedReason = fenced;
      this.open = false;
      this.lostAtMs = undefined;
      this.lostAtWall = undefined;
      clearTimeout(this.timer);
      for (const w of this.waiters.splice(0)) w.reject(this.fencedError(w.device, w.what, w.offsetBytes, fenced));
      return;
    }
    if (this.fencedReason !== undefined) return;
    if (this.source.hasQuorum()) {
      if (this.lostAtMs === undefined) return;
      const heldMs = Math.round(this.now() - this.lostAtMs);
      this.lostAtMs = undefined;
      this.lostAtWall = undefined;
      this.expired = false;
      this.open = true;
      clearTimeout(this.timer);
      const ws = this.waiters.splice(0);
      this.o.log?.(`node ${this.o.nodeId} has quorum again after ${heldMs} ms: ${ws.length} held I/O proceed`);
      this.released += ws.length;
      for (const w of ws) w.resolve();
      return;
    }
    if (this.lostAtMs !== undefined) return;
    this.lostAtMs = this.now();
    this.lostAtWall = new Date();
    this.open = false;
    this.o.log?.(`node ${this.o.nodeId} has no quorum: I/O to cluster volumes is held for up to ${this.o.holdMs} ms`);
    // Not unref'd: a held I/O is work in progress, and this timer is what bounds it.
    this.timer = setTimeout(() => this.expire(), this.o.holdMs);
  }

  /**
   * Before one I/O: undefined when it may go now (the fast path: one boolean), else a promise that
   * resolves when quorum is back or rejects (EIO) when the hold runs out. Throws at once when the
   * hold has run out already or the node fenced itself.
   */
  admit(device: string, what: string, offsetBytes?: number): Promise<void> | undefined {
    if (this.open) return undefined;
    if (this.fencedReason !== undefined) throw this.fencedError(device, what, offsetBytes, this.fencedReason);
    if (this.expired) {
      this.failed++;
      throw this.expiredError(device, what, offsetBytes);
    }
    return new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject, what, device, offsetBytes }));
  }

  private expire(): void {
    if (this.lostAtMs === undefined) return;
    this.expired = true;
    const ws = this.waiters.splice(0);
    this.failed += ws.length;
    this.o.log?.(`node ${this.o.nodeId} has had no quorum for ${this.o.holdMs} ms: ${ws.length} held I/O fail with EIO, and new I/O fails until quorum is back`);
    for (const w of ws) w.reject(this.expiredError(w.device, w.what, w.offsetBytes));
  }

  private at(what: string, offsetBytes: number | undefined): string {
    return offsetBytes === undefined ? what : `${what} at offset ${offsetBytes}`;
  }

  private expiredError(device: string, what: string, offsetBytes: number | undefined): DiskError {
    return new DiskError('EIO', `${device}: ${this.at(what, offsetBytes)} failed: node ${this.o.nodeId} has had no quorum since ${this.lostAtWall?.toISOString()} (held ${this.o.holdMs} ms, the limit)`, {
      device,
      offsetBytes,
    });
  }

  private fencedError(device: string, what: string, offsetBytes: number | undefined, reason: string): DiskError {
    return new DiskError('EFENCED', `${device}: ${this.at(what, offsetBytes)} refused: node ${this.o.nodeId} has fenced itself (${reason})`, { device, offsetBytes });
  }

  status(): QuorumHoldStatus {
    return {
      state: this.fencedReason !== undefined ? 'fenced' : this.lostAtMs === undefined ? 'open' : this.expired ? 'failing' : 'held',
      since: this.lostAtWall?.toISOString() ?? null,
      holdMs: this.o.holdMs,
      waiting: this.waiters.length,
      released: this.released,
      failed: this.failed,
    };
  }

  /** Stops following the membership; waiting I/O fails (the node is going away). */
  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    clearTimeout(this.timer);
    const ws = this.waiters.splice(0);
    for (const w of ws) w.reject(new DiskError('ECLOSED', `${w.device}: ${this.at(w.what, w.offsetBytes)} failed: node ${this.o.nodeId} stopped while the I/O was held for quorum`, { device: w.device }));
  }
}

/** A device whose I/O passes `hold` first. The promise form only: a held I/O cannot block the thread. */
export class QuorumHeldDevice implements BlockDevice {
  readonly name: string;
  readonly sectorSizeBytes: SectorSize;
  readonly readOnly: boolean;

  constructor(
    private readonly inner: BlockDevice,
    private readonly hold: QuorumHold,
  ) {
    this.name = inner.name;
    this.sectorSizeBytes = inner.sectorSizeBytes;
    this.readOnly = inner.readOnly;
  }

  /** Follows the inner device (an LV's size follows its layout). */
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }

  /** Runs `op` once the hold admits it; a refusal is a rejected promise, never a throw. Not on the fast path. */
  private gated(what: string, offsetBytes: number | undefined, op: () => Promise<void>): Promise<void> {
    let w: Promise<void> | undefined;
    try {
      w = this.hold.admit(this.name, what, offsetBytes);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return w === undefined ? op() : w.then(op);
  }

  read(buf: Buffer, offsetBytes: number): Promise<void> {
    if (this.hold.passing) return this.inner.read(buf, offsetBytes);
    return this.gated('read', offsetBytes, () => this.inner.read(buf, offsetBytes));
  }

  write(buf: Buffer, offsetBytes: number): Promise<void> {
    if (this.hold.passing) return this.inner.write(buf, offsetBytes);
    return this.gated('write', offsetBytes, () => this.inner.write(buf, offsetBytes));
  }

  flush(): Promise<void> {
    return this.gated('flush', undefined, () => this.inner.flush());
  }

  discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.gated('discard', offsetBytes, () => this.inner.discard(offsetBytes, lengthBytes));
  }

  /** Closes the inner device (the owner of this wrapper owns the device under it). */
  close(): Promise<void> {
    return this.inner.close();
  }
}
