// The disk-only lock manager: Linux DLM semantics (six modes, conversions, FIFO queues, NOQUEUE,
// value blocks, blocking and completion notifications, conversion deadlock detection) over a
// lockspace region of a shared disk, with no server and no network. Each node process writes only
// its own records; every grant is decided by the requester itself from what all nodes wrote, by
// the rule in grant-rule.ts. Records of a node are ignored only once membership says that
// incarnation is fenced. docs/lockspace.md explains the protocol, the waiting and its costs.
//
//   const ls = await Lockspace.open(regionDevice, { membership, watchPath: imagePath });
//   const lock = await ls.lock('inode-17', Mode.PR, { timeoutMs: 5000, bast: (m) => ... });
//   await lock.convert(Mode.EX);            // queued up-conversion
//   await lock.unlock({ lvb: newValue });   // a PW/EX holder writes the value block
//   await ls.close();

import fs from 'node:fs';
import type { BlockDevice } from '../disk/device.js';
import { FormatError, SanboxError } from '../errors.js';
import {
  decodeLockRecord,
  decodeLockspaceHeader,
  decodeLvbRecord,
  decodeNodeHeader,
  encodeLockRecord,
  encodeLockspaceHeader,
  encodeLvbRecord,
  encodeNodeHeader,
  isBlankRecord,
  lockRecordOffset,
  lockspaceLayout,
  lvbRecordOffset,
  LVB_LEN_BYTES_DEFAULT,
  nodeHeaderOffset,
  RECORD_BYTES,
  RESOURCE_NAME_BYTES_MAX,
  type LockRecord,
  type LockspaceHeader,
  type LockspaceLayout,
  type LvbRecord,
} from '../format/lockspace.js';
import type { Membership } from '../heartbeat/membership-api.js';
import { isDownConversion, isMode, Mode, modeName, writesLvb } from './compat-matrix.js';
import { blockedMode, decide, nextTicket, type LockView } from './grant-rule.js';
import { resolveLvb, type FencedHold, type LvbState } from './lvb-rule.js';

/** Default bound on a lock request (the CLI's --timeout default is the same). */
export const LOCK_TIMEOUT_MS_DEFAULT = 10_000;
/** Poll backoff: first re-read after POLL_MIN_MS, doubling to POLL_MAX_MS while nothing changes.
 * POLL_MAX_MS bounds the hand-off latency when no change notification arrives (NBD, missed events). */
export const POLL_MIN_MS = 1;
export const POLL_MAX_MS = 50;
/** A torn or garbled sector is re-read this many times before the scan is abandoned (and retried). */
export const TORN_READ_RETRIES_MAX = 8;
/** Per-node table sizes when this node formats a blank region (docs/lockspace.md). */
export const LOCKS_PER_NODE_DEFAULT = 32;
export const LVBS_PER_NODE_DEFAULT = 32;

export class DlmError extends SanboxError {}

export interface LockspaceOptions {
  membership: Membership;
  /** A file whose changes (inotify, via fs.watch) wake waiters early: the image file. */
  watchPath?: string;
  pollMinMs?: number;
  pollMaxMs?: number;
  /** Used when the region is blank and this node formats it. */
  format?: Partial<Pick<LockspaceHeader, 'maxNodes' | 'locksPerNode' | 'lvbsPerNode' | 'lvbLenBytes' | 'name'>>;
  log?: (msg: string) => void;
}

export interface LockOptions {
  /** DLM NOQUEUE: fail with EAGAIN instead of waiting. */
  noqueue?: boolean;
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Blocking notification: called with the mode a blocked request wants (once per mode until regranted). */
  bast?: (mode: Mode) => void;
  /** Protocol trace for history checkers: 'queued' once the doorway (ticket) is on disk,
   * 'granting' just before the grant is written. */
  trace?: (event: 'queued' | 'granting') => void;
}

export interface ReleaseOptions {
  /** New value block; written only when the lock is held in PW or EX (DLM VALBLK). */
  lvb?: Buffer;
  /** DLM IVVALBLK: mark the value block invalid instead of writing it (PW/EX holders only). */
  invalidateLvb?: boolean;
}

export type ConvertOptions = LockOptions & ReleaseOptions;

/** What `dlm ls` and tests see of the region. */
export interface LockspaceSnapshot {
  header: LockspaceHeader;
  locks: (LockRecord & { slot: number; offsetBytes: number })[];
  lvbs: (LvbRecord & { slot: number; offsetBytes: number })[];
  nodes: { nodeId: number; generation: bigint; pid: number; startedMs: number }[];
}

type Waiting = {
  kind: 'lock' | 'convert';
  lock: Lock;
  mode: Mode;
  phase: 'doorway' | 'check';
  noqueue: boolean;
  deadlineMs: number;
  signal: AbortSignal | undefined;
  trace: LockOptions['trace'];
  resolve: () => void;
  reject: (err: Error) => void;
};

function resKey(b: Buffer): string {
  return b.toString('hex');
}

function toResource(name: string | Buffer): Buffer {
  const b = typeof name === 'string' ? Buffer.from(name) : Buffer.from(name);
  if (b.length < 1 || b.length > RESOURCE_NAME_BYTES_MAX) throw new DlmError('EINVAL', `resource name must be 1..${RESOURCE_NAME_BYTES_MAX} bytes, not ${b.length}`);
  return b;
}

export function resourceLabel(b: Buffer): string {
  return /^[\x20-\x7e]*$/.test(b.toString('latin1')) ? b.toString('latin1') : `0x${b.toString('hex')}`;
}

/** One lock held (or being requested) by this node. */
export class Lock {
  /** Granted mode; null while a new request waits. */
  mode: Mode | null = null;
  /** The value block read at the last grant (DLM: copied into the caller's LVB). */
  lvb: Buffer;
  /** False when the value block was marked invalid (DLM_SBF_VALNOTVALID). */
  lvbValid = true;
  /** Sequence of the value block this holder knows: the one current at grant, or its own last write. */
  lvbSeq = 0n;
  /** Set if this node was fenced or the lockspace closed while the lock was held. */
  lost: string | undefined;
  /** Blocking notification bookkeeping: the last mode reported, reset at each grant. */
  lastBast: Mode | null = null;
  bast: ((mode: Mode) => void) | undefined;
  busy = false;
  released = false;

  constructor(
    private readonly ls: Lockspace,
    readonly slot: number,
    readonly lockId: number,
    readonly resource: Buffer,
    lvbLenBytes: number,
  ) {
    this.lvb = Buffer.alloc(lvbLenBytes);
  }

  get name(): string {
    return resourceLabel(this.resource);
  }

  /** Up-conversions queue behind earlier conversions; down-conversions are immediate. */
  convert(mode: Mode, opts: ConvertOptions = {}): Promise<void> {
    return this.ls.convert(this, mode, opts);
  }

  unlock(opts: ReleaseOptions = {}): Promise<void> {
    return this.ls.unlock(this, opts);
  }
}

/** Wakes the pump early: on a file change (inotify), a membership event, or a new request. */
class Waker {
  private wake: (() => void) | undefined;
  private pending = false;
  private watcher: fs.FSWatcher | undefined;
  wakeups = 0;

  constructor(watchPath: string | undefined, log: (m: string) => void) {
    if (watchPath !== undefined) {
      try {
        this.watcher = fs.watch(watchPath, { persistent: false }, () => this.poke());
        this.watcher.on('error', () => this.stopWatching());
      } catch (err) {
        log(`cannot watch ${watchPath} for changes (${(err as Error).message}); polling only`);
      }
    }
  }

  poke(): void {
    this.wakeups++;
    this.pending = true;
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Resolves after ms, or earlier on poke(); a poke that came since the last wait returns at once. */
  wait(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wake = undefined;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(t);
        this.pending = false;
        resolve();
      };
    });
  }

  clearPending(): void {
    this.pending = false;
  }

  stopWatching(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}

export class Lockspace {
  readonly nodeId: number;
  readonly generation: bigint;
  private readonly own: (LockRecord | undefined)[];
  private readonly lockObjs: (Lock | undefined)[];
  private readonly ownLvb = new Map<string, { slot: number; rec: LvbRecord }>();
  private readonly ownLvbSlots: (LvbRecord | undefined)[];
  private readonly waiting = new Set<Waiting>();
  private readonly waker: Waker;
  private readonly unsubscribe: () => void;
  private readonly pollMinMs: number;
  private readonly pollMaxMs: number;
  private readonly log: (m: string) => void;
  private pumping = false;
  private closed = false;
  private nextLockId = 1;
  private writeSeq = 0n;
  /** Parsed lock area and the raw bytes it came from (only changed sectors are re-parsed); the
   * next scan reads into `spare` and the two are swapped, so a scan allocates nothing. */
  private raw: Buffer;
  private spare: Buffer;
  private parsed: (LockRecord | undefined)[];
  /** The same for the value-block area, read only when a grant needs it. */
  private lvbRaw: Buffer;
  private lvbSpare: Buffer;
  private lvbParsed: (LvbRecord | undefined)[];
  /** False until a read completed: then every sector is parsed, not just the changed ones. */
  private rawValid = false;
  private lvbRawValid = false;
  /** Counters for benchmarks and `status`. */
  readonly stats = { scans: 0, sectorsReparsed: 0, tornRetries: 0, writes: 0, grants: 0, waits: 0 };

  private constructor(
    readonly device: BlockDevice,
    readonly layout: LockspaceLayout,
    private readonly membership: Membership,
    opts: LockspaceOptions,
  ) {
    this.nodeId = membership.localNodeId;
    this.generation = membership.localGeneration;
    this.own = new Array(layout.header.locksPerNode).fill(undefined);
    this.lockObjs = new Array(layout.header.locksPerNode).fill(undefined);
    this.ownLvbSlots = new Array(layout.header.lvbsPerNode).fill(undefined);
    this.pollMinMs = opts.pollMinMs ?? POLL_MIN_MS;
    this.pollMaxMs = opts.pollMaxMs ?? POLL_MAX_MS;
    this.log = opts.log ?? (() => {});
    this.waker = new Waker(opts.watchPath, this.log);
    this.unsubscribe = membership.subscribe(() => this.waker.poke());
    this.raw = Buffer.alloc(layout.lockAreaBytes);
    this.spare = Buffer.alloc(layout.lockAreaBytes);
    this.parsed = new Array(layout.header.maxNodes * layout.header.locksPerNode).fill(undefined);
    this.lvbRaw = Buffer.alloc(layout.lvbAreaBytes);
    this.lvbSpare = Buffer.alloc(layout.lvbAreaBytes);
    this.lvbParsed = new Array(layout.header.maxNodes * layout.header.lvbsPerNode).fill(undefined);
  }

  /**
   * Opens (and, if blank, formats) the lockspace on `device` for membership's local node, and
   * starts this incarnation clean: records left by a previous incarnation of this node are cleared
   * (value blocks it held in PW/EX are marked invalid first). The caller's join must have made sure
   * the previous incarnation cannot write any more (startNode: slot lock + slot probe + fence key).
   */
  static async open(device: BlockDevice, opts: LockspaceOptions): Promise<Lockspace> {
    const layout = await readOrFormat(device, opts);
    const n = opts.membership.localNodeId;
    if (!Number.isInteger(n) || n < 0 || n >= layout.header.maxNodes) {
      throw new DlmError('EINVAL', `${device.name}: node ${n} has no records in this lockspace (nodes 0..${layout.header.maxNodes - 1})`, { device: device.name });
    }
    const ls = new Lockspace(device, layout, opts.membership, opts);
    await ls.startClean();
    return ls;
  }

  private where(offsetBytes: number) {
    return { device: this.device.name, offsetBytes };
  }

  private async write(buf: Buffer, offsetBytes: number): Promise<void> {
    if (this.closed) throw new DlmError('ECLOSED', `${this.device.name}: lockspace is closed`);
    this.stats.writes++;
    await this.device.write(buf, offsetBytes);
  }

  private async writeNodeHeader(): Promise<void> {
    this.writeSeq++;
    const s = this.layout.sectorSizeBytes;
    await this.write(encodeNodeHeader({ nodeId: this.nodeId, generation: this.generation, seq: this.writeSeq, pid: process.pid, startedMs: Date.now() }, s), nodeHeaderOffset(this.layout, this.nodeId));
  }

  private async startClean(): Promise<void> {
    const h = this.layout.header;
    const s = this.layout.sectorSizeBytes;
    // Our value-block table survives incarnations (values are facts about the past); read it.
    const lvbBuf = Buffer.alloc(h.lvbsPerNode * s);
    await this.device.read(lvbBuf, lvbRecordOffset(this.layout, this.nodeId, 0));
    for (let i = 0; i < h.lvbsPerNode; i++) {
      const off = lvbRecordOffset(this.layout, this.nodeId, i);
      const rec = decodeLvbRecord(lvbBuf.subarray(i * s, (i + 1) * s), this.nodeId, h.lvbLenBytes, this.where(off));
      if (rec === undefined) continue;
      this.ownLvbSlots[i] = rec;
      this.ownLvb.set(resKey(rec.resource), { slot: i, rec });
    }
    await this.writeNodeHeader();
    const lockBuf = Buffer.alloc(h.locksPerNode * s);
    await this.device.read(lockBuf, lockRecordOffset(this.layout, this.nodeId, 0));
    for (let i = 0; i < h.locksPerNode; i++) {
      const off = lockRecordOffset(this.layout, this.nodeId, i);
      let rec: LockRecord | undefined;
      try {
        rec = decodeLockRecord(lockBuf.subarray(i * s, (i + 1) * s), this.nodeId, this.where(off));
      } catch (err) {
        // Our own sector, torn by our previous incarnation's crash mid-write: we are its only
        // writer, so we may overwrite it. Log it; nobody trusted the torn bytes.
        if (!(err instanceof FormatError)) throw err;
        this.log(`clearing our torn lock record: ${err.message}`);
      }
      if (rec !== undefined && rec.state !== 'free' && rec.grantedMode !== null && writesLvb(rec.grantedMode as Mode)) {
        // The previous incarnation held PW/EX: whatever it protected may have changed without a
        // value write. Persist that before the record (the dynamic evidence) disappears.
        await this.writeLvb(rec.resource, { invalidSeq: rec.lvbSeqAtGrant });
      }
      if (rec !== undefined && rec.state === 'free') continue;
      if (rec === undefined && isBlankRecord(lockBuf.subarray(i * s, i * s + RECORD_BYTES))) continue;
      await this.writeOwn(i, undefined);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Reading

  /** Reads the whole lock area; re-parses only changed sectors; retries torn sectors. */
  private async scan(): Promise<(LockRecord | undefined)[]> {
    const { layout } = this;
    const s = layout.sectorSizeBytes;
    const buf = this.spare;
    // Any change notified before this read is covered by it.
    this.waker.clearPending();
    await this.device.read(buf, layout.lockAreaOffsetBytes);
    this.stats.scans++;
    const perNode = layout.header.locksPerNode;
    for (let i = 0; i < this.parsed.length; i++) {
      const a = i * s;
      const b = a + RECORD_BYTES;
      if (this.rawValid && buf.compare(this.raw, a, b, a, b) === 0) continue;
      const node = Math.floor(i / perNode);
      const off = layout.lockAreaOffsetBytes + a;
      let sector = buf.subarray(a, a + s);
      for (let attempt = 0; ; attempt++) {
        try {
          this.parsed[i] = decodeLockRecord(sector, node, this.where(off));
          break;
        } catch (err) {
          if (!(err instanceof FormatError) || attempt >= TORN_READ_RETRIES_MAX) {
            this.rawValid = false; // `parsed` is now partly from this read: parse all next time
            throw err;
          }
          // A torn read (a write in flight) or a corrupt sector: read it again, never trust it.
          this.stats.tornRetries++;
          const one = Buffer.alloc(s);
          await new Promise((r) => setTimeout(r, attempt));
          await this.device.read(one, off);
          one.copy(buf, a);
          sector = buf.subarray(a, a + s);
        }
      }
      this.stats.sectorsReparsed++;
    }
    this.spare = this.raw;
    this.raw = buf;
    this.rawValid = true;
    return this.parsed;
  }

  /** A record counts unless it is free or its incarnation has been fenced. Our own come from memory. */
  private liveOthers(parsed: (LockRecord | undefined)[], resource: Buffer, exceptSlot: number): { views: LockView[]; fenced: FencedHold[] } {
    const views: LockView[] = [];
    const fenced: FencedHold[] = [];
    const perNode = this.layout.header.locksPerNode;
    for (let i = 0; i < parsed.length; i++) {
      const node = Math.floor(i / perNode);
      const slot = i % perNode;
      const r = node === this.nodeId ? this.own[slot] : parsed[i];
      if (r === undefined || r.state === 'free' || !r.resource.equals(resource)) continue;
      if (node === this.nodeId && slot === exceptSlot) continue;
      if (node !== this.nodeId && this.membership.isFenced(node, r.generation)) {
        if (r.grantedMode !== null) fenced.push({ grantedMode: r.grantedMode as Mode, lvbSeqAtGrant: r.lvbSeqAtGrant });
        continue;
      }
      views.push(toView(r, slot));
    }
    return { views, fenced };
  }

  private async readLvb(resource: Buffer, fenced: FencedHold[]): Promise<LvbState> {
    const { layout } = this;
    const s = layout.sectorSizeBytes;
    const h = layout.header;
    const buf = this.lvbSpare;
    await this.device.read(buf, layout.lvbAreaOffsetBytes);
    const recs: LvbRecord[] = [];
    for (let i = 0; i < this.lvbParsed.length; i++) {
      const a = i * s;
      if (this.lvbRawValid && buf.compare(this.lvbRaw, a, a + RECORD_BYTES, a, a + RECORD_BYTES) === 0) {
        const r = this.lvbParsed[i];
        if (r !== undefined && r.resource.equals(resource)) recs.push(r);
        continue;
      }
      const node = Math.floor(i / h.lvbsPerNode);
      const off = layout.lvbAreaOffsetBytes + a;
      let sector = buf.subarray(a, a + s);
      for (let attempt = 0; ; attempt++) {
        try {
          this.lvbParsed[i] = decodeLvbRecord(sector, node, h.lvbLenBytes, this.where(off));
          break;
        } catch (err) {
          if (!(err instanceof FormatError) || attempt >= TORN_READ_RETRIES_MAX) {
            this.lvbRawValid = false;
            throw err;
          }
          this.stats.tornRetries++;
          await new Promise((r) => setTimeout(r, attempt));
          const one = Buffer.alloc(s);
          await this.device.read(one, off);
          one.copy(buf, a);
          sector = buf.subarray(a, a + s);
        }
      }
      const r = this.lvbParsed[i];
      if (r !== undefined && r.resource.equals(resource)) recs.push(r);
    }
    this.lvbSpare = this.lvbRaw;
    this.lvbRaw = buf;
    this.lvbRawValid = true;
    return resolveLvb(recs, fenced, h.lvbLenBytes);
  }

  /** Everything on the region, for `dlm ls` and tests (no liveness judgement). */
  async snapshot(): Promise<LockspaceSnapshot> {
    return readSnapshot(this.device);
  }

  // -------------------------------------------------------------------------------------------
  // Writing our own records

  private async writeOwn(slot: number, rec: LockRecord | undefined): Promise<void> {
    const s = this.layout.sectorSizeBytes;
    this.writeSeq++;
    const full: LockRecord = rec ?? {
      nodeId: this.nodeId,
      generation: this.generation,
      seq: 0n,
      state: 'free',
      grantedMode: null,
      requestedMode: null,
      claim: false,
      lockId: 0,
      ticket: 0n,
      lvbSeqAtGrant: 0n,
      pid: process.pid,
      resource: Buffer.alloc(0),
    };
    full.seq = this.writeSeq;
    await this.write(encodeLockRecord(full, s), lockRecordOffset(this.layout, this.nodeId, slot));
    this.own[slot] = full.state === 'free' ? undefined : full;
  }

  private async writeLvb(resource: Buffer, what: { value?: Buffer; valueSeq?: bigint; invalidSeq?: bigint }): Promise<void> {
    const h = this.layout.header;
    const key = resKey(resource);
    let entry = this.ownLvb.get(key);
    if (entry === undefined) {
      let slot = this.ownLvbSlots.findIndex((r) => r === undefined);
      if (slot < 0) slot = await this.evictableLvbSlot();
      const old = this.ownLvbSlots[slot];
      if (old !== undefined) this.ownLvb.delete(resKey(old.resource));
      entry = { slot, rec: { nodeId: this.nodeId, generation: this.generation, seq: 0n, resource, valueSeq: null, value: Buffer.alloc(h.lvbLenBytes), invalidSeq: null } };
    }
    const rec: LvbRecord = { ...entry.rec, generation: this.generation };
    if (what.valueSeq !== undefined) {
      rec.valueSeq = what.valueSeq;
      rec.value = Buffer.alloc(h.lvbLenBytes);
      (what.value ?? Buffer.alloc(0)).copy(rec.value, 0, 0, h.lvbLenBytes);
    }
    if (what.invalidSeq !== undefined) rec.invalidSeq = rec.invalidSeq === null || what.invalidSeq > rec.invalidSeq ? what.invalidSeq : rec.invalidSeq;
    this.writeSeq++;
    rec.seq = this.writeSeq;
    await this.write(encodeLvbRecord(rec, this.layout.sectorSizeBytes, h.lvbLenBytes), lvbRecordOffset(this.layout, this.nodeId, entry.slot));
    this.ownLvbSlots[entry.slot] = rec;
    this.ownLvb.set(key, { slot: entry.slot, rec });
  }

  /** A slot whose record is superseded: another node holds a newer value for that resource. */
  private async evictableLvbSlot(): Promise<number> {
    const snap = await readSnapshot(this.device);
    for (let slot = 0; slot < this.ownLvbSlots.length; slot++) {
      const mine = this.ownLvbSlots[slot]!;
      const mineSeq = [mine.valueSeq ?? 0n, mine.invalidSeq ?? 0n].reduce((a, b) => (a > b ? a : b));
      if (snap.lvbs.some((o) => o.nodeId !== this.nodeId && o.resource.equals(mine.resource) && o.valueSeq !== null && o.valueSeq > mineSeq)) return slot;
    }
    throw new DlmError('ENOSPC', `${this.device.name}: node ${this.nodeId}'s value-block table is full (${this.ownLvbSlots.length} resources) and none is superseded`, { device: this.device.name });
  }

  // -------------------------------------------------------------------------------------------
  // The API

  lock(resource: string | Buffer, mode: Mode, opts: LockOptions = {}): Promise<Lock> {
    if (this.closed) return Promise.reject(new DlmError('ECLOSED', `${this.device.name}: lockspace is closed`));
    if (!isMode(mode)) return Promise.reject(new DlmError('EINVAL', `invalid lock mode ${String(mode)}`));
    let res: Buffer;
    try {
      res = toResource(resource);
    } catch (err) {
      return Promise.reject(err);
    }
    const slot = this.lockObjs.findIndex((l) => l === undefined);
    if (slot < 0) return Promise.reject(new DlmError('ENOSPC', `${this.device.name}: node ${this.nodeId} already has ${this.lockObjs.length} locks (its lock-record table is full)`, { device: this.device.name }));
    const lock = new Lock(this, slot, this.nextLockId++, res, this.layout.header.lvbLenBytes);
    lock.bast = opts.bast;
    this.lockObjs[slot] = lock;
    return this.enqueue('lock', lock, mode, opts).then(
      () => lock,
      (err: unknown) => {
        this.lockObjs[slot] = undefined;
        throw err;
      },
    );
  }

  async convert(lock: Lock, mode: Mode, opts: ConvertOptions): Promise<void> {
    this.checkUsable(lock);
    if (!isMode(mode)) throw new DlmError('EINVAL', `invalid lock mode ${String(mode)}`);
    const from = lock.mode!;
    if (opts.bast !== undefined) lock.bast = opts.bast;
    if (mode === from) return;
    if (isDownConversion(from, mode)) {
      lock.busy = true;
      try {
        await this.releaseLvb(lock, opts);
        const cur = this.own[lock.slot]!;
        // lvbSeqAtGrant follows our own value writes, so if we die holding PW the invalidation
        // covers exactly the values up to the one we last wrote.
        await this.writeOwn(lock.slot, { ...cur, state: 'granted', grantedMode: mode, requestedMode: null, claim: false, lvbSeqAtGrant: lock.lvbSeq });
        lock.mode = mode;
        lock.lastBast = null;
      } finally {
        lock.busy = false;
      }
      this.waker.poke();
      return;
    }
    await this.enqueue('convert', lock, mode, opts);
  }

  async unlock(lock: Lock, opts: ReleaseOptions = {}): Promise<void> {
    this.checkUsable(lock);
    lock.busy = true;
    try {
      await this.releaseLvb(lock, opts);
      await this.writeOwn(lock.slot, undefined);
    } finally {
      lock.busy = false;
    }
    lock.released = true;
    lock.mode = null;
    this.lockObjs[lock.slot] = undefined;
    this.waker.poke();
  }

  private checkUsable(lock: Lock): void {
    if (lock.lost !== undefined) throw new DlmError('EFENCED', `lock on ${lock.name} was lost: ${lock.lost}`);
    if (lock.released || this.lockObjs[lock.slot] !== lock) throw new DlmError('EINVAL', `lock on ${lock.name} is not held`);
    if (lock.busy) throw new DlmError('EINVAL', `lock on ${lock.name} has an operation in progress`);
  }

  /** Writes (or invalidates) the value block before a PW/EX holder lets go of its mode. */
  private async releaseLvb(lock: Lock, opts: ReleaseOptions): Promise<void> {
    if (lock.mode === null || !writesLvb(lock.mode)) return;
    if (opts.invalidateLvb) {
      lock.lvbSeq++;
      await this.writeLvb(lock.resource, { invalidSeq: lock.lvbSeq });
      lock.lvbValid = false;
    } else if (opts.lvb !== undefined) {
      lock.lvbSeq++;
      await this.writeLvb(lock.resource, { value: opts.lvb, valueSeq: lock.lvbSeq });
      lock.lvb = Buffer.alloc(this.layout.header.lvbLenBytes);
      opts.lvb.copy(lock.lvb, 0, 0, lock.lvb.length);
      lock.lvbValid = true;
    }
  }

  private enqueue(kind: 'lock' | 'convert', lock: Lock, mode: Mode, opts: LockOptions): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? LOCK_TIMEOUT_MS_DEFAULT;
    if (!(timeoutMs >= 0)) return Promise.reject(new DlmError('EINVAL', `invalid timeout ${timeoutMs}`));
    if (opts.signal?.aborted) return Promise.reject(new DlmError('ECANCELED', `lock request on ${lock.name} cancelled`));
    lock.busy = true;
    return new Promise<void>((resolve, reject) => {
      const w: Waiting = {
        kind,
        lock,
        mode,
        phase: 'doorway',
        noqueue: opts.noqueue ?? false,
        deadlineMs: performance.now() + timeoutMs,
        signal: opts.signal,
        trace: opts.trace,
        resolve: () => {
          lock.busy = false;
          resolve();
        },
        reject: (err) => {
          lock.busy = false;
          reject(err);
        },
      };
      opts.signal?.addEventListener('abort', () => this.waker.poke(), { once: true });
      this.waiting.add(w);
      this.waker.poke();
      this.startPump();
    });
  }

  /** True when some granted lock wants blocking notifications (the pump then keeps polling). */
  private wantsBasts(): boolean {
    return this.lockObjs.some((l) => l !== undefined && l.bast !== undefined && l.mode !== null && !l.busy && l.lost === undefined);
  }

  startPump(): void {
    if (this.pumping || this.closed) return;
    this.pumping = true;
    void this.pump().finally(() => {
      this.pumping = false;
      if (!this.closed && (this.waiting.size > 0 || this.wantsBasts())) this.startPump();
    });
  }

  /**
   * The one loop that reads the region and moves every waiting request on. It re-reads at once
   * after any write of ours; otherwise it sleeps with exponential backoff, woken early by a change
   * of the image file, a membership event or a new request.
   */
  private async pump(): Promise<void> {
    let sleepMs = this.pollMinMs;
    while (!this.closed && (this.waiting.size > 0 || this.wantsBasts())) {
      const batch = [...this.waiting];
      const reparsedBefore = this.stats.sectorsReparsed;
      let parsed: (LockRecord | undefined)[];
      try {
        parsed = await this.scan();
      } catch (err) {
        if (this.failAllIfFenced(err)) return;
        // A sector that stays corrupt: nobody can decide on it. Keep waiting (bounded by each
        // request's timeout), and say why.
        this.log(`lockspace scan failed, retrying: ${(err as Error).message}`);
        for (const w of batch) if (this.isDue(w)) await this.withdraw(w, this.dueError(w, (err as Error).message));
        await this.waker.wait(this.pollMaxMs);
        continue;
      }
      let wrote = false;
      for (const w of batch) {
        if (!this.waiting.has(w)) continue;
        try {
          if (await this.advance(w, parsed)) wrote = true;
        } catch (err) {
          if (this.failAllIfFenced(err)) return; // rejected w and every other request
          this.waiting.delete(w);
          w.reject(err as Error);
        }
      }
      this.notifyBlocking(parsed);
      if (wrote || this.stats.sectorsReparsed !== reparsedBefore) sleepMs = this.pollMinMs;
      if (wrote) continue;
      const now = performance.now();
      let untilMs = sleepMs;
      for (const w of this.waiting) untilMs = Math.min(untilMs, Math.max(0, w.deadlineMs - now));
      this.stats.waits++;
      await this.waker.wait(untilMs);
      sleepMs = Math.min(this.pollMaxMs, sleepMs * 2);
    }
  }

  /** Takes one step for a waiting request on a fresh scan; returns true if it wrote. */
  private async advance(w: Waiting, parsed: (LockRecord | undefined)[]): Promise<boolean> {
    const { lock } = w;
    const { views: others, fenced } = this.liveOthers(parsed, lock.resource, lock.slot);
    if (w.phase === 'doorway') {
      // Bakery doorway: our queue position is one past every ticket on the resource. We also set
      // CLAIM at once when the rule would let us claim on this read (saves a round trip).
      const ticket = nextTicket(others);
      const rec: LockRecord = {
        nodeId: this.nodeId,
        generation: this.generation,
        seq: 0n,
        state: w.kind === 'lock' ? 'waiting' : 'converting',
        grantedMode: w.kind === 'lock' ? null : lock.mode,
        requestedMode: w.mode,
        claim: false,
        lockId: lock.lockId,
        ticket,
        lvbSeqAtGrant: w.kind === 'lock' ? 0n : this.own[lock.slot]!.lvbSeqAtGrant,
        pid: process.pid,
        resource: lock.resource,
      };
      const d = decide(toView(rec, lock.slot), others, { arriving: true });
      if (w.noqueue && d.action !== 'claim') return this.withdraw(w, new DlmError('EAGAIN', `lock ${modeName(w.mode)} on ${lock.name} would block (NOQUEUE)`));
      rec.claim = d.action === 'claim';
      await this.writeOwn(lock.slot, rec);
      w.phase = 'check';
      w.trace?.('queued');
      return true;
    }
    const me = this.own[lock.slot]!;
    const d = decide(toView(me, lock.slot), others);
    switch (d.action) {
      case 'grant': {
        const lvb = await this.readLvb(lock.resource, fenced);
        w.trace?.('granting');
        await this.writeOwn(lock.slot, { ...me, state: 'granted', grantedMode: w.mode, requestedMode: null, claim: false, lvbSeqAtGrant: lvb.currentSeq });
        lock.mode = w.mode;
        lock.lvb = lvb.value;
        lock.lvbValid = lvb.valid;
        lock.lvbSeq = lvb.currentSeq;
        lock.lastBast = null;
        this.stats.grants++;
        this.waiting.delete(w);
        w.resolve();
        return true;
      }
      case 'claim':
        await this.writeOwn(lock.slot, { ...me, claim: true });
        return true;
      case 'deadlock': {
        await this.writeOwn(lock.slot, { ...me, state: 'granted', requestedMode: null, claim: false });
        this.waiting.delete(w);
        const other = d.with;
        w.reject(new DlmError('EDEADLK', `conversion of ${lock.name} to ${modeName(w.mode)} cancelled: conversion deadlock with node ${other.nodeId}'s conversion ${modeName(other.grantedMode!)}->${modeName(other.requestedMode!)}`));
        return true;
      }
      case 'wait': {
        if (w.noqueue) return this.withdraw(w, new DlmError('EAGAIN', `lock ${modeName(w.mode)} on ${lock.name} would block (NOQUEUE)`));
        let wrote = false;
        if (d.dropClaim) {
          await this.writeOwn(lock.slot, { ...me, claim: false });
          wrote = true;
        }
        if (this.isDue(w)) return this.withdraw(w, this.dueError(w));
        return wrote;
      }
    }
  }

  private isDue(w: Waiting): boolean {
    return (w.signal?.aborted ?? false) || performance.now() >= w.deadlineMs;
  }

  private dueError(w: Waiting, why?: string): DlmError {
    if (w.signal?.aborted) return new DlmError('ECANCELED', `${w.kind === 'lock' ? 'lock' : 'conversion to'} ${modeName(w.mode)} on ${w.lock.name} cancelled`);
    const blockers = why ?? this.describeBlockers(w);
    return new DlmError('ETIMEDOUT', `${w.kind === 'lock' ? 'lock' : 'conversion to'} ${modeName(w.mode)} on ${w.lock.name} timed out${blockers ? ` (${blockers})` : ''}`);
  }

  private describeBlockers(w: Waiting): string {
    const { views } = this.liveOthers(this.parsed, w.lock.resource, w.lock.slot);
    const held = views.filter((v) => v.grantedMode !== null).map((v) => `node ${v.nodeId} holds ${modeName(v.grantedMode!)}${v.state === 'converting' ? `->${modeName(v.requestedMode!)}` : ''}`);
    const queued = views.filter((v) => v.state === 'waiting').length;
    return [...held, queued ? `${queued} queued` : ''].filter(Boolean).join(', ');
  }

  /** Withdraws a request: a new one frees its record, a conversion returns to its granted mode. */
  private async withdraw(w: Waiting, err: Error): Promise<boolean> {
    this.waiting.delete(w);
    try {
      const cur = this.own[w.lock.slot];
      if (w.kind === 'lock') {
        if (cur !== undefined) await this.writeOwn(w.lock.slot, undefined);
      } else if (cur !== undefined && cur.state === 'converting') {
        await this.writeOwn(w.lock.slot, { ...cur, state: 'granted', requestedMode: null, claim: false });
      }
    } finally {
      w.reject(err);
    }
    return true;
  }

  private notifyBlocking(parsed: (LockRecord | undefined)[]): void {
    for (const lock of this.lockObjs) {
      if (lock === undefined || lock.bast === undefined || lock.mode === null) continue;
      const me = this.own[lock.slot];
      if (me === undefined) continue;
      const { views } = this.liveOthers(parsed, lock.resource, lock.slot);
      const m = blockedMode(toView(me, lock.slot), views);
      if (m !== null && m !== lock.lastBast) {
        lock.lastBast = m;
        const cb = lock.bast;
        queueMicrotask(() => cb(m));
      }
    }
  }

  /** A write refused by the fence gate: this node is fenced; every request and lock is lost. */
  private failAllIfFenced(err: unknown): boolean {
    if (!(err instanceof SanboxError) || err.code !== 'EFENCED') return false;
    const why = `node ${this.nodeId} was fenced: ${err.message}`;
    for (const w of this.waiting) w.reject(new DlmError('EFENCED', why));
    this.waiting.clear();
    for (const l of this.lockObjs) if (l !== undefined) l.lost = why;
    return true;
  }

  /** Locks this node holds or requests (for status displays). */
  heldLocks(): Lock[] {
    return this.lockObjs.filter((l): l is Lock => l !== undefined);
  }

  /** Number of early wakeups from the change watcher so far. */
  get wakeups(): number {
    return this.waker.wakeups;
  }

  /**
   * Closes the lockspace: pending requests fail with ECANCELED and every lock this node holds is
   * released (DLM: closing a lockspace drops the process's locks).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    for (const w of [...this.waiting]) {
      this.waiting.delete(w);
      w.reject(new DlmError('ECANCELED', `lockspace closed while waiting for ${w.lock.name}`));
    }
    try {
      for (let slot = 0; slot < this.own.length; slot++) if (this.own[slot] !== undefined) await this.writeOwn(slot, undefined);
    } catch (err) {
      this.log(`releasing locks on close failed: ${(err as Error).message}`);
    } finally {
      for (const l of this.lockObjs) if (l !== undefined) l.lost = 'lockspace closed';
      this.closed = true;
      this.waker.stopWatching();
      this.waker.poke();
      this.unsubscribe();
    }
  }
}

function toView(r: LockRecord, slot: number): LockView {
  return {
    nodeId: r.nodeId,
    slot,
    state: r.state as LockView['state'],
    grantedMode: r.grantedMode as Mode | null,
    requestedMode: r.requestedMode as Mode | null,
    claim: r.claim,
    ticket: r.ticket,
  };
}

// ---------------------------------------------------------------------------------------------
// Format and raw reads (no membership needed: `dlm ls` uses these)

/** The header a blank region gets: a pure function of its size, sector size and node count, so
 * nodes that find the region blank at the same moment write identical bytes. */
export function defaultHeader(regionBytes: number, sectorSizeBytes: number, maxNodes: number, over: LockspaceOptions['format'] = {}): LockspaceHeader {
  const sectors = Math.floor(regionBytes / sectorSizeBytes);
  const perNodeFit = Math.floor((sectors - 1 - maxNodes) / (2 * maxNodes));
  const fit = Math.min(LOCKS_PER_NODE_DEFAULT, perNodeFit);
  const h: LockspaceHeader = {
    sectorSizeBytes,
    maxNodes: over.maxNodes ?? maxNodes,
    locksPerNode: over.locksPerNode ?? fit,
    lvbsPerNode: over.lvbsPerNode ?? Math.min(LVBS_PER_NODE_DEFAULT, perNodeFit),
    lvbLenBytes: over.lvbLenBytes ?? LVB_LEN_BYTES_DEFAULT,
    name: over.name ?? 'sanbox',
  };
  return h;
}

export async function formatLockspace(device: BlockDevice, header: LockspaceHeader): Promise<LockspaceLayout> {
  const layout = lockspaceLayout(header);
  if (header.sectorSizeBytes !== device.sectorSizeBytes) throw new DlmError('EINVAL', `${device.name}: lockspace sector size ${header.sectorSizeBytes} differs from the device's ${device.sectorSizeBytes}`, { device: device.name });
  if (layout.totalBytes > device.sizeBytes) {
    throw new DlmError('ENOSPC', `${device.name}: a lockspace of ${header.maxNodes} nodes x (${header.locksPerNode} locks + ${header.lvbsPerNode} value blocks) needs ${layout.totalBytes} bytes; the region has ${device.sizeBytes}`, { device: device.name });
  }
  await device.write(encodeLockspaceHeader(header), 0);
  await device.flush();
  return layout;
}

async function readHeader(device: BlockDevice): Promise<LockspaceHeader | undefined> {
  const s = device.sectorSizeBytes;
  if (device.sizeBytes < s) throw new FormatError(`${device.name}: region too small for a lockspace (${device.sizeBytes} bytes)`, { device: device.name, offsetBytes: 0 });
  const buf = Buffer.alloc(s);
  for (let attempt = 0; ; attempt++) {
    await device.read(buf, 0);
    if (isBlankRecord(buf)) return undefined;
    try {
      const h = decodeLockspaceHeader(buf, { device: device.name, offsetBytes: 0 });
      if (h.sectorSizeBytes !== s) throw new FormatError(`${device.name}: lockspace was made for ${h.sectorSizeBytes}-byte sectors; the device has ${s}`, { device: device.name, offsetBytes: 0 });
      const l = lockspaceLayout(h);
      if (l.totalBytes > device.sizeBytes) throw new FormatError(`${device.name}: lockspace needs ${l.totalBytes} bytes; the region has ${device.sizeBytes}`, { device: device.name, offsetBytes: 0 });
      return h;
    } catch (err) {
      // The header may be being written by a node formatting the region right now: retry briefly.
      if (!(err instanceof FormatError) || attempt >= TORN_READ_RETRIES_MAX) throw err;
      await new Promise((r) => setTimeout(r, 1 + attempt));
    }
  }
}

async function readOrFormat(device: BlockDevice, opts: LockspaceOptions): Promise<LockspaceLayout> {
  const h = await readHeader(device);
  if (h !== undefined) return lockspaceLayout(h);
  const maxNodes = opts.format?.maxNodes ?? opts.membership.members().length;
  const header = defaultHeader(device.sizeBytes, device.sectorSizeBytes, Math.max(1, maxNodes), opts.format);
  opts.log?.(`formatting blank lockspace on ${device.name}: ${header.maxNodes} nodes, ${header.locksPerNode} locks and ${header.lvbsPerNode} value blocks each`);
  return formatLockspace(device, header);
}

/** Reads every record of a lockspace (torn sectors are retried, then reported). */
export async function readSnapshot(device: BlockDevice): Promise<LockspaceSnapshot> {
  const header = await readHeader(device);
  if (header === undefined) throw new FormatError(`${device.name}: lockspace is not formatted yet (no node has opened it)`, { device: device.name, offsetBytes: 0 });
  const layout = lockspaceLayout(header);
  const s = layout.sectorSizeBytes;
  const readRecord = async <T>(off: number, decode: (b: Buffer) => T): Promise<T> => {
    const b = Buffer.alloc(s);
    for (let attempt = 0; ; attempt++) {
      await device.read(b, off);
      try {
        return decode(b);
      } catch (err) {
        if (!(err instanceof FormatError) || attempt >= TORN_READ_RETRIES_MAX) throw err;
        await new Promise((r) => setTimeout(r, attempt));
      }
    }
  };
  const snap: LockspaceSnapshot = { header, locks: [], lvbs: [], nodes: [] };
  for (let n = 0; n < header.maxNodes; n++) {
    const off = nodeHeaderOffset(layout, n);
    const nh = await readRecord(off, (b) => decodeNodeHeader(b, n, { device: device.name, offsetBytes: off }));
    if (nh !== undefined) snap.nodes.push(nh);
    for (let slot = 0; slot < header.locksPerNode; slot++) {
      const o = lockRecordOffset(layout, n, slot);
      const r = await readRecord(o, (b) => decodeLockRecord(b, n, { device: device.name, offsetBytes: o }));
      if (r !== undefined && r.state !== 'free') snap.locks.push({ ...r, slot, offsetBytes: o });
    }
    for (let slot = 0; slot < header.lvbsPerNode; slot++) {
      const o = lvbRecordOffset(layout, n, slot);
      const r = await readRecord(o, (b) => decodeLvbRecord(b, n, header.lvbLenBytes, { device: device.name, offsetBytes: o }));
      if (r !== undefined) snap.lvbs.push({ ...r, slot, offsetBytes: o });
    }
  }
  return snap;
}
