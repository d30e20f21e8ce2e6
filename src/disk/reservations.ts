// SCSI-3 persistent reservations, emulated for an image file (reference/locking.md §4.1-4.2).
// Each node is one initiator (I_T nexus) and registers an 8-byte key; fence_scsi-style fencing
// is PREEMPT AND ABORT of the victim's key under a Write Exclusive – Registrants Only reservation,
// after which the victim's writes are refused by its fence gate (src/disk/fence-gate.ts).
//
// The state lives on the shared disk (the cluster image's reservations region, or a sidecar file
// for a plain disk; codec in src/format/reservations.ts). Local lock files serialize commands and
// make the preempt atomic against the victim's writes:
//   LOCKDIR/pr.lock      exclusive while a PR OUT command reads-modifies-writes the state;
//   LOCKDIR/gate-N.lock  held SHARED by node N across each write's check-and-pwrite, taken
//                        EXCLUSIVELY by whoever changes node N's registration. So once a preempt
//                        returns, every write of N that passed its check has landed, and every
//                        later write of N sees its key gone (ARCHITECTURE.md, fence gate).
//   LOCKDIR/gate-N.intent taken EXCLUSIVELY by that changer first, and SHARED for an instant by
//                        each write of N before it takes gate-N, so a node writing back to back
//                        cannot starve a preempt (flock grants no queue to a waiting locker).
// All lock waits are non-blocking attempts with a bounded retry loop: never a blocking flock on
// the event loop, never an async flock occupying a libuv thread (reference/baselines.md A1).

import fs from 'node:fs';
import path from 'node:path';
import fsExt from 'fs-ext';
import { assert, DiskError, FormatError, SanboxError } from '../errors.js';
import { isSyncDevice, type BlockDevice, type SyncBlockDevice } from './device.js';
import { openFileDevice, schemeOf } from './open.js';
import { sleepSyncMs } from './sleep.js';
import { readStable, readStableSync } from './stable-read.js';
import { LOCAL_TIMING, PR_LOCK_RETRY_MS } from '../timing.js';
import {
  decodeReservationCopies,
  decodeReservations,
  emptyReservations,
  encodeReservations,
  INITIATORS,
  nextCopyIndex,
  PR_TYPES,
  RESERVATIONS_PAYLOAD_BYTES,
  RESERVATIONS_RECORD_BYTES,
  type ReservationState,
} from '../format/reservations.js';

/**
 * Bound on waiting for another PR command to finish (they take well under a millisecond), unless
 * the caller passes its cluster's timing.reservationLockWaitMs.
 */
export const PR_LOCK_WAIT_MS = LOCAL_TIMING.reservationLockWaitMs;
/** Where updateSeq sits in a reservations record (src/format/reservations.ts). */
const UPDATE_SEQ_OFFSET = 0x10;

export { PR_TYPES };

/** Where the reservation state of one device lives, and where its lock files go. */
export interface ReservationStoreSpec {
  /** The device the reservations protect (for messages and the lock directory). */
  deviceName: string;
  /** File holding the state, and the byte offset of its payload (two copies). */
  statePath: string;
  stateOffsetBytes: number;
  /** Directory of the local lock files (created if missing). */
  lockDir: string;
}

/** The lock directory beside a device path: `IMG.fence/`. */
/** The suffix of the directory beside a device that holds its fence state (`IMG.fence/`). */
export const FENCE_DIR_SUFFIX = '.fence';

export function defaultLockDir(devicePath: string): string {
  return `${path.resolve(devicePath)}${FENCE_DIR_SUFFIX}`;
}

/** A sidecar state file for a plain disk that has no reservations region: `IMG.fence/reservations`. */
export function sidecarStoreSpec(devicePath: string): ReservationStoreSpec {
  const lockDir = defaultLockDir(devicePath);
  return { deviceName: devicePath, statePath: path.join(lockDir, 'reservations'), stateOffsetBytes: 0, lockDir };
}

/**
 * Reads and writes the state through a BlockDevice of its own: by default the state file opened
 * with openFileDevice, so a process started with SANBOX_FAULTS gets fault injection on it too; a
 * node's device provider may pass another (an nbd:// export: the image's region over NBD). PR
 * commands use the promise form, so any device serves them; the fence gate checks the state inside
 * the synchronous write path, so it needs a device with the synchronous form (a local file).
 * These are the device's own commands, not gated writes.
 */
export class ReservationStore {
  private dev: BlockDevice | undefined;
  private readonly buf = Buffer.alloc(RESERVATIONS_PAYLOAD_BYTES);

  /** With readOnly, nothing is created and the state is opened for reading only (cluster status). */
  constructor(
    readonly spec: ReservationStoreSpec,
    readOnly = false,
    open: (path: string, readOnly: boolean) => BlockDevice = defaultStoreDevice,
  ) {
    if (!readOnly && schemeOf(spec.statePath) === undefined) {
      fs.mkdirSync(spec.lockDir, { recursive: true });
      if (spec.stateOffsetBytes === 0) {
        // Sidecar: create it sparse, as long as the payload; zeros decode as "no registrations".
        const fd = fs.openSync(spec.statePath, 'a');
        try {
          if (fs.fstatSync(fd).size < RESERVATIONS_PAYLOAD_BYTES) fs.ftruncateSync(fd, RESERVATIONS_PAYLOAD_BYTES);
        } finally {
          fs.closeSync(fd);
        }
      }
    }
    this.dev = open(spec.statePath, readOnly);
  }

  /** The device the state is read and written through (for status displays and fault rules). */
  get device(): BlockDevice {
    return this.liveAsync();
  }

  private liveAsync(): BlockDevice {
    if (this.dev === undefined) throw new DiskError('ECLOSED', `${this.spec.deviceName}: reservation store is closed`, { device: this.spec.deviceName });
    return this.dev;
  }

  private liveDev(): SyncBlockDevice {
    const dev = this.liveAsync();
    if (!isSyncDevice(dev)) throw new DiskError('EINVAL', `${this.spec.deviceName}: reservation state on ${dev.name} has no synchronous form (a fence gate needs a local file)`, { device: this.spec.deviceName });
    return dev;
  }

  /** The current state, read with the promise form (PR commands: works over any device, nbd:// too). */
  async readAsync(): Promise<ReservationState> {
    const dev = this.liveAsync();
    const where = { device: this.spec.statePath, offsetBytes: this.spec.stateOffsetBytes };
    const n = Math.max(0, Math.min(this.buf.length, dev.sizeBytes - this.spec.stateOffsetBytes));
    this.buf.fill(0); // a sidecar file may be shorter than the payload: the rest reads as zeros
    try {
      return await readStable(dev, this.buf.subarray(0, n), this.spec.stateOffsetBytes, () => decodeReservationCopies(this.buf, where, 'both'));
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      return decodeReservationCopies(this.buf, where, 'either');
    }
  }

  /** write()'s promise form; `flush` false leaves the flush to the caller (flushAsync). */
  async writeAsync(current: ReservationState, next: ReservationState, flush = true): Promise<void> {
    const dev = this.liveAsync();
    const { rec, off } = this.encodeNext(current, next);
    await dev.write(rec, off);
    if (flush) await dev.flush();
  }

  /** Makes the last writeAsync durable. */
  async flushAsync(): Promise<void> {
    await this.liveAsync().flush();
  }

  /**
   * The current state. A copy being rewritten by another process's PR command may read torn: both
   * copies are re-read (readStableSync) until they decode, so the state is never older than the
   * updateSeqs read just before it. A copy that stays bad for the whole bound was torn by a crash
   * mid-write; the other copy holds the state (the next command rewrites the torn one).
   */
  read(): ReservationState {
    const dev = this.liveDev();
    const where = { device: this.spec.statePath, offsetBytes: this.spec.stateOffsetBytes };
    const readSync = (b: Buffer): void => {
      b.fill(0); // a sidecar file may be shorter than the payload: the rest reads as zeros
      const n = Math.max(0, Math.min(b.length, dev.sizeBytes - this.spec.stateOffsetBytes));
      dev.readSync(b.subarray(0, n), this.spec.stateOffsetBytes);
    };
    try {
      return readStableSync(readSync, this.buf, (b) => decodeReservationCopies(b, where, 'both'));
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      return decodeReservationCopies(this.buf, where, 'either');
    }
  }

  /** Both copies' updateSeq fields and the bytes between them: one pread for the fence gate's probe. */
  private readonly seqBuf = Buffer.alloc(RESERVATIONS_RECORD_BYTES + 8);
  /**
   * The updateSeq field of both copies, as raw (unvalidated) values: a cheap "has anything been
   * written since?" probe for the fence gate. Equal values mean neither copy was rewritten. One
   * read spans both fields (copy B's sits RESERVATIONS_RECORD_BYTES after copy A's): one syscall
   * per gated write instead of two.
   */
  readUpdateSeqs(): [bigint, bigint] {
    const dev = this.liveDev();
    this.seqBuf.fill(0);
    dev.readSync(this.seqBuf, this.spec.stateOffsetBytes + UPDATE_SEQ_OFFSET);
    return [this.seqBuf.readBigUInt64LE(0), this.seqBuf.readBigUInt64LE(RESERVATIONS_RECORD_BYTES)];
  }

  /** Writes `next` into the copy not holding `current`, then makes it durable. */
  write(current: ReservationState, next: ReservationState): void {
    const dev = this.liveDev();
    const { rec, off } = this.encodeNext(current, next);
    dev.writeSync(rec, off);
    dev.flushSync();
  }

  /** The record of `next` (updateSeq one past current's) and where it goes: the copy not holding `current`. */
  private encodeNext(current: ReservationState, next: ReservationState): { rec: Buffer; off: number } {
    next.updateSeq = current.updateSeq + 1n;
    const rec = encodeReservations(next);
    const off = this.spec.stateOffsetBytes + nextCopyIndex(current) * RESERVATIONS_RECORD_BYTES;
    // Pair assertion (checked again by every reader's decode): the record decodes back to the
    // state we mean to store, so an encoder bug never reaches the disk every node fences through.
    const back = decodeReservations(rec, { device: this.spec.statePath, offsetBytes: off });
    assert(back !== null && sameReservations(back, next), `${this.spec.deviceName}: reservations record does not decode back to the state being written`);
    return { rec, off };
  }

  close(): void {
    const dev = this.dev;
    this.dev = undefined;
    if (dev === undefined) return;
    if (isSyncDevice(dev)) dev.closeSync();
    else void dev.close().catch(() => undefined);
  }
}

function sameReservations(a: ReservationState, b: ReservationState): boolean {
  return (
    a.updateSeq === b.updateSeq &&
    a.prGeneration === b.prGeneration &&
    a.reservationKey === b.reservationKey &&
    a.reservationType === b.reservationType &&
    a.registered.every((k, i) => k === b.registered[i]) &&
    a.preempted.every((k, i) => k === b.preempted[i])
  );
}

/** The state file as a device of its own: no in-use guard (many nodes open it), no gate. */
function defaultStoreDevice(statePath: string, readOnly: boolean): SyncBlockDevice {
  return openFileDevice(statePath, { guard: 'none', readOnly });
}

/** A lock file taken with non-blocking flock attempts. */
export class LockFile {
  private fd: number | undefined;
  constructor(readonly path: string) {}

  private open(): number {
    this.fd ??= fs.openSync(this.path, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
    return this.fd;
  }

  /** One non-blocking attempt; true if taken. */
  tryLock(mode: 'sh' | 'ex'): boolean {
    const fd = this.open();
    try {
      fsExt.flockSync(fd, mode === 'sh' ? 'shnb' : 'exnb');
      return true;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return false;
      throw err;
    }
  }

  /** Retries on a timer (the event loop stays free) until taken or waitMs passes. */
  async lock(mode: 'sh' | 'ex', waitMs: number): Promise<boolean> {
    const t0 = performance.now();
    for (;;) {
      if (this.tryLock(mode)) return true;
      if (performance.now() - t0 >= waitMs) return false;
      await new Promise((r) => setTimeout(r, PR_LOCK_RETRY_MS));
    }
  }

  /** Synchronous bounded retry, for the write path (which is synchronous). */
  lockSync(mode: 'sh' | 'ex', waitMs: number): boolean {
    const t0 = performance.now();
    for (;;) {
      if (this.tryLock(mode)) return true;
      if (performance.now() - t0 >= waitMs) return false;
      sleepSyncMs(PR_LOCK_RETRY_MS);
    }
  }

  unlock(): void {
    if (this.fd !== undefined) fsExt.flockSync(this.fd, 'un');
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/**
 * Gate leases held in this process (src/disk/fence-gate.ts), by gate lock path. A fence gate keeps
 * gate-N shared for the rest of an event-loop turn; a PR command of this same process that needs
 * gate-N exclusively (a node registering its key on a device it opens while it already writes
 * through another handle of the same reservations) ends them first. Otherwise it would wait a
 * turn holding the intent lock, and this process's next write, its heartbeat's included, would
 * wait for that intent lock synchronously: the event loop blocked up to the gate's wait bound.
 */
const localLeases = new Map<string, Set<() => void>>();

/** Registers a lease's way to end it early; returns the function that unregisters it. */
export function registerLocalLease(gatePath: string, end: () => void): () => void {
  let set = localLeases.get(gatePath);
  if (set === undefined) localLeases.set(gatePath, (set = new Set()));
  set.add(end);
  return () => {
    set.delete(end);
    if (set.size === 0 && localLeases.get(gatePath) === set) localLeases.delete(gatePath);
  };
}

/** Ends every lease this process holds on `gatePath` (a write in progress ends its lease when it leaves). */
export function endLocalLeases(gatePath: string): void {
  for (const end of [...(localLeases.get(gatePath) ?? [])]) end();
}

/** Ends every lease this process holds on any gate (a test's pause point: src/disk/pause-point.ts). */
export function endAllLocalLeases(): void {
  for (const gatePath of [...localLeases.keys()]) endLocalLeases(gatePath);
}

export function gateLockPath(lockDir: string, nodeId: number): string {
  return path.join(lockDir, `gate-${nodeId}.lock`);
}

/** Taken exclusively by a fencer before gate-N, shared for an instant by each write of N. */
export function gateIntentPath(lockDir: string, nodeId: number): string {
  return path.join(lockDir, `gate-${nodeId}.intent`);
}

export interface PreemptResult {
  /** 'preempted': the key was registered and is now removed; 'absent': it was not registered. */
  outcome: 'preempted' | 'absent';
  prGeneration: number;
}

/** PR OUT / PR IN over one device's reservation state. */
export class PersistentReservations {
  readonly store: ReservationStore;
  private readonly prLock: LockFile;

  /** `open` supplies the device the state is kept on (default: the state file, see ReservationStore). */
  constructor(
    readonly spec: ReservationStoreSpec,
    open?: (path: string, readOnly: boolean) => BlockDevice,
    private readonly lockWaitMs = PR_LOCK_WAIT_MS,
  ) {
    this.store = new ReservationStore(spec, false, open);
    this.prLock = new LockFile(path.join(spec.lockDir, 'pr.lock'));
  }

  private checkNode(nodeId: number): void {
    if (!Number.isInteger(nodeId) || nodeId < 0 || nodeId >= INITIATORS) throw new SanboxError('EINVAL', `initiator ${nodeId} is outside 0..${INITIATORS - 1}`);
  }

  /** Runs one PR OUT command under pr.lock; `fn` returns the new state or null for "no change". */
  private async command<T>(what: string, fn: (cur: ReservationState) => Promise<{ next: ReservationState | null; result: T }>, flush = true): Promise<T> {
    if (!(await this.prLock.lock('ex', this.lockWaitMs))) {
      throw new SanboxError('EBUSY', `${this.spec.deviceName}: ${what}: another reservation command held the lock for ${this.lockWaitMs} ms`, { device: this.spec.deviceName });
    }
    try {
      const cur = await this.store.readAsync();
      const { next, result } = await fn(cur);
      if (next !== null) await this.store.writeAsync(cur, next, flush);
      return result;
    } finally {
      this.prLock.unlock();
    }
  }

  /**
   * REGISTER AND IGNORE EXISTING KEY for initiator `nodeId`: replaces whatever key it had (a
   * previous incarnation's). Taken under gate-N exclusively, so a write of the previous
   * incarnation that is between its check and its pwrite lands before the new key counts;
   * returns false if such a write held the gate for longer than gateWaitMs.
   */
  async register(nodeId: number, key: bigint, gateWaitMs: number): Promise<boolean> {
    this.checkNode(nodeId);
    if (key === 0n) throw new SanboxError('EINVAL', 'a reservation key must be non-zero');
    // The new key counts for every checker as soon as it is written (they read the same state);
    // the flush that makes it durable comes after gate-N is let go. A node registering on one
    // more of its own devices holds its own intent lock while it waits here, and every write it
    // makes meanwhile (its heartbeat's included) waits for that lock synchronously: an fdatasync
    // under it took hundreds of ms on a loaded host and nodes fenced themselves.
    const done = await this.withGate(nodeId, gateWaitMs, () =>
      this.command('register', async (cur) => {
        const next = cloneState(cur);
        next.registered[nodeId] = key;
        next.prGeneration = (cur.prGeneration + 1) >>> 0;
        return { next, result: true };
      }, false),
    );
    if (done) await this.store.flushAsync();
    return done;
  }

  /**
   * REGISTER with service-action key 0: removes our own registration (clean leave). Under gate-N
   * exclusively, like every change of N's registration: a gate lease of N vouched for by its
   * registration (fence-gate.ts) ends first. EBUSY if a write of N held the gate past gateWaitMs.
   */
  async unregister(nodeId: number, key: bigint, gateWaitMs = this.lockWaitMs): Promise<void> {
    this.checkNode(nodeId);
    const done = await this.withGate(nodeId, gateWaitMs, () =>
      this.command('unregister', async (cur) => {
        if (cur.registered[nodeId] !== key) return { next: null, result: true };
        const next = cloneState(cur);
        next.registered[nodeId] = 0n;
        next.prGeneration = (cur.prGeneration + 1) >>> 0;
        if (cur.reservationKey === key) {
          // The holder left: SPC releases a reservation whose holder unregisters.
          next.reservationKey = 0n;
          next.reservationType = PR_TYPES.none;
        }
        return { next, result: true };
      }),
    );
    if (done === false) throw new SanboxError('EBUSY', `${this.spec.deviceName}: unregister: node ${nodeId} held its fence gate for ${gateWaitMs} ms (a write of it is stalled)`, { device: this.spec.deviceName });
  }

  /** RESERVE: creates a reservation held by `key` unless one exists. Does not bump PRgeneration. */
  async reserve(nodeId: number, key: bigint, type: number = PR_TYPES.writeExclusiveRegistrantsOnly): Promise<void> {
    this.checkNode(nodeId);
    await this.command('reserve', async (cur) => {
      if (cur.registered[nodeId] !== key) throw new SanboxError('EFENCED', `${this.spec.deviceName}: reserve: key 0x${key.toString(16)} of node ${nodeId} is not registered (reservation conflict)`);
      if (cur.reservationKey !== 0n) {
        if (cur.reservationType !== type) throw new SanboxError('EBUSY', `${this.spec.deviceName}: reserve: a type ${cur.reservationType} reservation exists (reservation conflict)`);
        return { next: null, result: undefined };
      }
      const next = cloneState(cur);
      next.reservationKey = key;
      next.reservationType = type;
      return { next, result: undefined };
    });
  }

  /**
   * PREEMPT AND ABORT: removes `victimKey` from initiator `victimNode` (the fencer cannot preempt
   * itself). If the victim held the reservation, it passes to the fencer. The state is changed
   * while holding gate-victim exclusively: when this resolves, no write of the victim that starts
   * later can land. Returns null if the victim held its gate (it is stalled inside a write) for
   * longer than gateWaitMs: the caller must escalate to the power fence and retry.
   */
  async preemptAndAbort(byNode: number, byKey: bigint, victimNode: number, victimKey: bigint, gateWaitMs: number): Promise<PreemptResult | null> {
    this.checkNode(byNode);
    if (byNode === victimNode) throw new SanboxError('EINVAL', `node ${byNode} cannot preempt its own key`);
    return this.preemptUnderGate({ node: byNode, key: byKey }, victimNode, victimKey, gateWaitMs);
  }

  /**
   * PREEMPT AND ABORT of `victimKey` on behalf of the cluster, by an agent that is not an
   * initiator of this device (a container takeover, src/node/failover.ts: the taker has no key
   * here). Like preemptAndAbort it changes the state under gate-victim held exclusively, so when
   * it resolves no later write of the victim can land; a reservation the victim held is released
   * (nobody registered takes it over; the next opener reserves). Idempotent. Null: the victim held
   * its gate longer than gateWaitMs.
   */
  async preemptForCluster(victimNode: number, victimKey: bigint, gateWaitMs: number): Promise<PreemptResult | null> {
    return this.preemptUnderGate(undefined, victimNode, victimKey, gateWaitMs);
  }

  private async preemptUnderGate(by: { node: number; key: bigint } | undefined, victimNode: number, victimKey: bigint, gateWaitMs: number): Promise<PreemptResult | null> {
    this.checkNode(victimNode);
    const res = await this.withGate(victimNode, gateWaitMs, () =>
      this.command('preempt and abort', async (cur) => {
        if (by !== undefined && cur.registered[by.node] !== by.key) {
          throw new SanboxError('EFENCED', `${this.spec.deviceName}: preempt: fencer node ${by.node} key 0x${by.key.toString(16)} is not registered (reservation conflict)`);
        }
        // A preempted key never counts again, even registered anew by its stale incarnation (as the fence gate refuses its writes).
        if (by !== undefined && cur.preempted[by.node] === by.key) {
          throw new SanboxError('EFENCED', `${this.spec.deviceName}: preempt: fencer node ${by.node} key 0x${by.key.toString(16)} was preempted (fenced)`);
        }
        const next = cloneState(cur);
        const present = cur.registered[victimNode] === victimKey;
        // Recorded even if absent, so "this incarnation was fenced" is visible to every reader —
        // but an absent key never displaces another key recorded preempted in the node's one slot
        // (review 5, M2): with no reservation left, the gate's refusal of that fenced incarnation
        // rests on the slot alone (fence-gate.ts), and a client can ask for a preempt of any
        // key the cluster once fenced (dev-preempt).
        const keepSlot = !present && cur.preempted[victimNode] !== 0n && cur.preempted[victimNode] !== victimKey;
        if (!keepSlot) next.preempted[victimNode] = victimKey;
        if (present) next.registered[victimNode] = 0n;
        if (cur.reservationKey === victimKey) {
          next.reservationKey = by?.key ?? 0n;
          if (by === undefined) next.reservationType = PR_TYPES.none;
        }
        // SPC bumps PRgeneration only for a successful preempt; an absent key is a conflict there.
        if (present) next.prGeneration = (cur.prGeneration + 1) >>> 0;
        // Every survivor fences a dead node; after the first, the state already says so and is
        // not written (nor flushed) again — each rewrite was a flush under this lock, on the
        // failover's path (bench:fs measured fences of up to 1 s behind such flushes).
        const unchanged = !present && (cur.preempted[victimNode] === victimKey || keepSlot) && cur.reservationKey !== victimKey;
        return { next: unchanged ? null : next, result: { outcome: present ? ('preempted' as const) : ('absent' as const), prGeneration: next.prGeneration } };
      }),
    );
    return res === false ? null : res;
  }

  /**
   * Records that `victimKey` of `victimNode` was fenced by another agent (the power fence), so
   * every reader (cluster status, peers) sees the incarnation as fenced, and its gate refuses it
   * should it ever write again. Registrations are untouched; PRgeneration is not bumped.
   */
  async markFenced(victimNode: number, victimKey: bigint): Promise<void> {
    this.checkNode(victimNode);
    await this.command('mark fenced', async (cur) => {
      if (cur.preempted[victimNode] === victimKey) return { next: null, result: undefined };
      const next = cloneState(cur);
      next.preempted[victimNode] = victimKey;
      return { next, result: undefined };
    });
  }

  /**
   * CLEAR: drops every registration and the reservation. Holds the gate of every registered node
   * (in node order, so two clears cannot deadlock) while it does, as every change of a node's
   * registration does. EBUSY if a node registered meanwhile or a writer held its gate past gateWaitMs.
   */
  async clear(gateWaitMs = this.lockWaitMs): Promise<void> {
    const nodes = this.store.read().registered.flatMap((k, n) => (k !== 0n ? [n] : []));
    const underGates = async (i: number): Promise<boolean> => {
      if (i < nodes.length) return (await this.withGate(nodes[i]!, gateWaitMs, () => underGates(i + 1))) === true;
      return this.command('clear', async (cur) => {
        if (cur.registered.some((k, n) => k !== 0n && !nodes.includes(n))) return { next: null, result: false };
        const next = emptyReservations();
        next.preempted = [...cur.preempted];
        next.prGeneration = (cur.prGeneration + 1) >>> 0;
        return { next, result: true };
      });
    };
    if (!(await underGates(0))) {
      throw new SanboxError('EBUSY', `${this.spec.deviceName}: clear: a node registered meanwhile, or a writer held its fence gate past ${gateWaitMs} ms; try again`, { device: this.spec.deviceName });
    }
  }

  /** PR IN READ KEYS + READ RESERVATION. */
  readState(): ReservationState {
    return this.store.read();
  }

  /**
   * Runs fn holding gate-N exclusively. First the intent lock, exclusively: from then on node N
   * cannot start a new write (its gate.enter waits on the intent lock), so a busy writer cannot
   * starve the fencer by re-taking the shared gate lock between writes (flock has no queue).
   * Then the gate lock itself, which waits for the write in progress, if any, to finish.
   */
  private async withGate<T>(nodeId: number, gateWaitMs: number, fn: () => Promise<T>): Promise<T | false> {
    const t0 = performance.now();
    const intent = new LockFile(gateIntentPath(this.spec.lockDir, nodeId));
    const gate = new LockFile(gateLockPath(this.spec.lockDir, nodeId));
    try {
      if (!(await intent.lock('ex', gateWaitMs))) return false;
      try {
        // This process's own gate leases on gate-N end first (in the same synchronous step as the
        // first attempt below, so no write of ours starts a new one in between).
        endLocalLeases(gate.path);
        if (!(await gate.lock('ex', Math.max(0, gateWaitMs - (performance.now() - t0))))) return false;
        try {
          return await fn();
        } finally {
          gate.unlock();
        }
      } finally {
        intent.unlock();
      }
    } finally {
      gate.close();
      intent.close();
    }
  }

  close(): void {
    this.store.close();
    this.prLock.close();
  }
}

function cloneState(s: ReservationState): ReservationState {
  return { ...s, registered: [...s.registered], preempted: [...s.preempted] };
}

/**
 * The key of one node incarnation, fence_scsi-style (reference/locking.md §4.2): the top 16 bits
 * from the cluster, then the node number, then the low 32 bits of the join generation, so a
 * rejoined node has a new key and a stale incarnation's key stays preempted.
 */
export function nodeKey(clusterTag: number, nodeId: number, generation: bigint): bigint {
  const key = (BigInt(clusterTag & 0xffff) << 48n) | (BigInt(nodeId & 0xffff) << 32n) | (generation & 0xffff_ffffn);
  // Key 0 means "unregistered"; a zero low half is bumped so a key is never 0.
  return key === 0n ? 1n : key;
}
