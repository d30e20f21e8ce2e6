// The disk-only lock manager: Linux DLM semantics (six modes, conversions, FIFO queues, NOQUEUE,
// value blocks, blocking and completion notifications, conversion deadlock detection) over a
// lockspace region of a shared disk, with no server and no network. Each node process writes only
// its own cells; every grant is decided by the requester itself from what all nodes wrote, by
// the rule in grant-rule.ts. A request reads and writes only its resource's window (two bucket
// rows, src/format/lockspace.ts), so its cost does not depend on locks held elsewhere. Records of a
// node are ignored only once membership says that incarnation is fenced. docs/lockspace.md
// explains the protocol, the waiting and its costs.
//
//   const ls = await Lockspace.open(regionDevice, { membership, hintDir: `${runDir}/dlm` });
//   const lock = await ls.lock('inode-17', Mode.PR, { timeoutMs: 5000, bast: (m) => ... });
//   await lock.convert(Mode.EX);            // queued up-conversion
//   await lock.unlock({ lvb: newValue });   // a PW/EX holder writes the value block
//   await ls.close();

import { hex64 } from '../format/where.js';
import type { BlockDevice } from '../disk/device.js';
import { readStable } from '../disk/stable-read.js';
import { assert, FormatError, SanboxError } from '../errors.js';
import {
  bucketOf,
  capacityForRegion,
  decodeLockCell,
  decodeLockspaceHeader,
  decodeLvbCell,
  decodeNodeHeader,
  encodeLockCell,
  encodeLockspaceHeader,
  encodeLvbCell,
  encodeNodeHeader,
  headerForCapacity,
  isBlankRecord,
  lockCellOffset,
  LOCK_ENTRIES_PER_CELL,
  lockspaceLayout,
  lvbCellOffset,
  nodeHeaderOffset,
  RESOURCE_NAME_BYTES_MAX,
  WINDOW_ROWS,
  type LockCell,
  type LockEntry,
  type LockRecord,
  type LockspaceHeader,
  type LockspaceLayout,
  type LvbCell,
  type LvbEntry,
  type LvbRecord,
} from '../format/lockspace.js';
import type { Membership } from '../heartbeat/membership-api.js';
import { CellWindows } from './cell-window.js';
import { SerialByKey } from './serial-writes.js';
import { InCallIo } from './in-call-io.js';
import { compatible, isDownConversion, isMode, Mode, modeName, writesLvb } from './compat-matrix.js';
import { blockedMode, decide, nextTicket, precedes, sameLock, type LockView } from './grant-rule.js';
import { resolveLvb, type FencedHold, type LvbState } from './lvb-rule.js';
import { Waker } from './wakeup.js';
import { cpuToSpare } from './cpu-room.js';
import { LOCAL_TIMING } from '../timing.js';

/** Default bound on a lock request, the local preset's lockTimeoutMs (the CLI's --timeout default is the same). */
export const LOCK_TIMEOUT_MS_DEFAULT = LOCAL_TIMING.lockTimeoutMs;
/** Poll backoff: first re-read after POLL_MIN_MS, doubling to POLL_MAX_MS while nothing changes.
 * POLL_MAX_MS bounds the hand-off latency when no hint arrives (NBD, lost hints): the stated bound. */
export const POLL_MIN_MS = LOCAL_TIMING.lockPollMinMs;
export const POLL_MAX_MS = LOCAL_TIMING.lockPollMaxMs;
export { LOCKS_PER_NODE_DEFAULT } from '../format/lockspace.js';
/**
 * After a pass that changed nothing, a waiting request at the head of its queue re-reads at once
 * for up to SPIN_MS before it sleeps (adaptive spinning, as a mutex spins before it blocks): a holder running on another
 * CPU often lets go within microseconds of our read, and the next read (a few µs) sees that far
 * sooner than a wake-up through the hint does (inotify, then an event-loop wake: 150-350 µs p50
 * measured under load). Bounded: at most this long of CPU per quiet wait, and the event loop is
 * held no longer than that. Decisions are unchanged (every one is still taken on a disk read).
 * Only while the CPUs have room (cpu-room.ts: no more runnable tasks than CPUs): otherwise the spin
 * runs on a CPU someone else (the holder, often) is waiting for, and the request sleeps until the
 * release's hint instead.
 */
export const SPIN_MS = 0.2;
/**
 * Queued locks that may be ahead of a request without CLAIM that still spins, if it is the last
 * in its queue (spinsWhileWaiting): the head and the one right behind it spin. The second one
 * spins so that it sees the head's grant at once and claims while the head holds, and then the
 * release on its next read: two processes taking turns on a resource hand it over without an
 * inotify wake-up (before, the request that arrived while the head had not yet seen the release
 * slept, and paid a wake-up AND a claim round trip per hand-off: 0.26-0.33x a flock mutex). The
 * rest sleep: with 8 processes on 2 CPUs, every waiter spinning made hand-offs 3x slower (the
 * holder lost its CPU to them), and spinning second requests of busy queues starved nodes'
 * heartbeats on a loaded machine (self-fenced in dlm-multiprocess).
 */
export const SPIN_QUEUE_AHEAD_MAX = 1;
/**
 * A spinning pump lets the event loop turn (setImmediate) at least this often: timers (the
 * heartbeat) and I/O callbacks run meanwhile, as the spin may go on while the queue keeps moving.
 */
export const SPIN_TURN_MS = 1;
/** Windows whose blocking notices one pass of the loop checks; the rest wait for the next pass
 * (round robin), so a node holding thousands of locks with basts costs a bounded pass. */
export const BAST_WINDOWS_PER_PASS_MAX = 32;
/** Encode buffers kept for reuse (more than a few lock-cell writes in flight at once is rare). */
const CELL_BUFS_KEPT = 8;
/** The one key of Lockspace.lvbWork: all value-cell work shares one turn. */
const LVB_WORK_KEY = 0;
/** Chunk of `readSnapshot` (dlm ls): it reads the whole region. */
const SNAPSHOT_CHUNK_BYTES = 1024 * 1024;
/**
 * The open scan (our column, every row) reads whole rows in chunks of this size while a row is at
 * most OPEN_SCAN_ROW_BYTES_MAX, else our sector of each row, and it goes from the last row DOWN
 * to the first. Ascending reads let the kernel's readahead fill the page cache of the lock area
 * with large folios (up to read_ahead_kb: 8 MiB on the benchmark machine), and every 512-byte
 * write of a lock cell in a large folio then costs in proportion to the folio (ext4 walks each of
 * its blocks): measured 1.1 µs -> 5.9 µs per pwrite after the old ascending 1 MiB-chunk scan
 * (Linux 6.18, ext4), for every node of the cluster until the pages are evicted — a cost that
 * grew with the nodes configured (rows are N sectors): the largest term of issue 16's
 * best-to-worst spread. A read whose preceding page is not cached is a "random" read to
 * readahead, which then reads just what was asked, in single pages; descending, the page before
 * each chunk is one the scan has not read yet.
 */
const OPEN_SCAN_CHUNK_BYTES = 256 * 1024;
/** Rows longer than a page: only our sector of each row is read (one page per row, not the whole row). */
const OPEN_SCAN_ROW_BYTES_MAX = 4096;
/** The open scan lets the event loop turn (the heartbeat's timers) at least this often. */
const OPEN_SCAN_TURN_MS = 5;

export class DlmError extends SanboxError {}

export interface LockspaceOptions {
  membership: Membership;
  /** Run directory for per-resource wake-up hints (src/dlm/wakeup.ts): e.g. `${runDir}/dlm`. */
  hintDir?: string;
  /** Without hintDir: a file whose changes (inotify, via fs.watch) wake waiters early: the image file. */
  watchPath?: string;
  pollMinMs?: number;
  pollMaxMs?: number;
  /** Used when the region is blank and this node formats it. */
  format?: Partial<Pick<LockspaceHeader, 'maxNodes' | 'locksPerNode' | 'lvbLenBytes' | 'name'>>;
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

/** Where an entry is: its cell (row, node), its position in the cell, the cell's offset. */
export interface EntryPlace {
  row: number;
  entry: number;
  /** row x entries-per-cell + entry: the lock's number within its node. */
  slot: number;
  offsetBytes: number;
}

/** What `dlm ls` and tests see of the region. */
export interface LockspaceSnapshot {
  header: LockspaceHeader;
  locks: (LockRecord & EntryPlace)[];
  lvbs: (LvbRecord & EntryPlace)[];
  nodes: { nodeId: number; generation: bigint; pid: number; startedMs: number }[];
}

type Waiting = {
  kind: 'lock' | 'convert';
  lock: Lock;
  mode: Mode;
  phase: 'doorway' | 'check';
  /** Whether it spins though it has no CLAIM (spinsWhileWaiting), as of its last decision. */
  spins: boolean;
  noqueue: boolean;
  deadlineMs: number;
  signal: AbortSignal | undefined;
  trace: LockOptions['trace'];
  resolve: () => void;
  reject: (err: Error) => void;
};

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
  /**
   * The value block read at the last grant (DLM: copied into the caller's LVB). Empty until the
   * first grant, which is before lock() hands the Lock out (one buffer less per lock held).
   */
  lvb: Buffer = NO_VALUE_YET;
  /** False when the value block was marked invalid (DLM_SBF_VALNOTVALID). */
  lvbValid = true;
  /** Sequence of the value block this holder knows: the one current at grant, or its own last write. */
  lvbSeq = 0n;
  /** Set if this node was fenced or the lockspace closed while the lock was held, or its release's outcome is unknown. */
  lost: string | undefined;
  /**
   * A release or down-conversion whose write failed (it may have landed): memory, and so the row's
   * next write, already let go of it; unlock() retries the row's write (writeEntry, 'letsGo').
   */
  releaseUnsure = false;
  /** A value write of this holder failed (it may have landed): its release without a value invalidates. */
  lvbUnsure = false;
  /** Blocking notification bookkeeping: the last mode reported, reset at each grant. */
  lastBast: Mode | null = null;
  bast: ((mode: Mode) => void) | undefined;
  busy = false;
  released = false;
  /** When this lock's window was last read (performance.now()) (mayHaveWaiters). */
  readAtMs = -Infinity;
  /** The other live entries on the resource that read saw (whom a release wakes: wakeTargets); null before the first read. */
  othersAtRead: readonly LockView[] | null = null;

  constructor(
    private readonly ls: Lockspace,
    /** The resource's bucket: the window is rows bucket and bucket+1. */
    readonly bucket: number,
    readonly row: number,
    readonly entry: number,
    readonly lockId: number,
    readonly resource: Buffer,
  ) {}

  /** The lock's number within its node (row x entries per cell + entry). */
  get slot(): number {
    return this.row * LOCK_ENTRIES_PER_CELL + this.entry;
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

/** Lock.lvb before its first grant: zero bytes long, so nothing can be written into it. */
const NO_VALUE_YET = Buffer.alloc(0);

/**
 * A zeroed small buffer carved from Node's shared pool: thousands of held locks then do not each
 * own an ArrayBuffer (every one of which the garbage collector tracks separately).
 */
function smallZeroed(n: number): Buffer {
  return Buffer.allocUnsafe(n).fill(0);
}

/**
 * A value entry of ours. `reserved`: kept for a PW/EX lock's release, not on disk yet (written as
 * free); `holds`: our PW/EX locks on the resource (a reservation goes with the last one).
 */
type OwnLvb = LvbEntry & { reserved?: boolean; holds?: number };

/**
 * An integer-keyed table over a preallocated array. Not a Map: V8's ordered hash tables rehash
 * under delete+set churn, measured at 22 µs per pair with 4000 entries — the cost of one lock
 * would then grow with the number of locks held.
 */
class IndexTable<T> {
  private readonly items: (T | undefined)[];
  size = 0;
  constructor(capacity: number) {
    this.items = new Array<T | undefined>(capacity).fill(undefined);
  }
  get(i: number): T | undefined {
    return this.items[i];
  }
  has(i: number): boolean {
    return this.items[i] !== undefined;
  }
  set(i: number, v: T): void {
    assert(i >= 0 && i < this.items.length, `index ${i} outside 0..${this.items.length - 1}`);
    if (this.items[i] === undefined) this.size++;
    this.items[i] = v;
  }
  delete(i: number): void {
    if (this.items[i] === undefined) return;
    this.size--;
    this.items[i] = undefined;
  }
  *keys(): Generator<number> {
    for (let i = 0; i < this.items.length; i++) if (this.items[i] !== undefined) yield i;
  }
  *values(): Generator<T> {
    for (const v of this.items) if (v !== undefined) yield v;
  }
}

const emptyLockEntries = (): (LockEntry | undefined)[] => new Array(LOCK_ENTRIES_PER_CELL).fill(undefined);

export class Lockspace {
  readonly nodeId: number;
  readonly generation: bigint;
  /** Our own lock cells by row (only rows with an entry); memory is authoritative for our column. */
  private readonly ownLocks: IndexTable<(LockEntry | undefined)[]>;
  /** Lock objects by slot, including requests whose doorway is not on disk yet. */
  private readonly lockObjs: IndexTable<Lock>;
  /** Our own value cells by row, loaded from disk on first use (they outlive incarnations). */
  private readonly ownLvbs: IndexTable<(OwnLvb | undefined)[]>;
  private readonly waiting = new Set<Waiting>();
  /** Locks with a bast callback: the only ones the pump polls for blocking notices (not all held). */
  private readonly bastWanted = new Set<Lock>();
  private readonly waker: Waker;
  /** The region's reads and writes, inside the call where that is fit (in-call-io.ts). */
  private readonly io: InCallIo;
  private readonly lockWindows: CellWindows<LockCell>;
  private readonly lvbWindows: CellWindows<LvbCell>;
  private readonly unsubscribe: () => void;
  private readonly pollMinMs: number;
  private readonly pollMaxMs: number;
  private readonly log: (m: string) => void;
  private readonly lvbEntriesPerCell: number;
  /** The zero value block every value reservation shares (reserveLvb). */
  private readonly zeroValue: Buffer;
  private pumping = false;
  private closed = false;
  /** close() has begun: no lock-cell write may start any more but close's own. */
  private closing = false;
  private nextLockId = 1;
  private writeSeq = 0n;
  private bastCursor = 0;
  /** Sectors lock cells are encoded into, reused once their write resolved (no allocation per write). */
  private readonly cellBufs: Buffer[] = [];
  /**
   * Our lock-cell writes, one at a time per row (writeEntry): each cell is built from the state the
   * row's previous write left, so concurrent changes of two entries of one row both reach the disk.
   */
  private readonly lockRowWrites = new SerialByKey();
  /**
   * Rows whose last lock-cell write failed: the disk may hold the old cell, which may still show
   * a lock memory let go of (a failed release, a failed withdrawal). Each is written again from
   * memory (repairUnsureRows) until a write lands; a row leaves the set on its next write that lands.
   */
  private readonly unsureRows = new Set<number>();
  /** The pending rewrite of unsureRows (scheduleRowRepair), and its backoff. */
  private rowRepairTimer: NodeJS.Timeout | undefined;
  private rowRepairDelayMs = 0;
  /**
   * All work on our value cells (reserve, unreserve, write), one at a time: a value's place is
   * chosen across two rows (bucket and overflow) and a reservation takes one without I/O, so a
   * per-row order would not keep two places apart. Only PW/EX grants and releases come here.
   */
  private readonly lvbWork = new SerialByKey();
  /** Counters for benchmarks and `status`. */
  readonly stats = { scans: 0, windowReads: 0, sectorsReparsed: 0, tornRetries: 0, writes: 0, grants: 0, waits: 0, spins: 0, spinsDeclined: 0 };

  private constructor(
    readonly device: BlockDevice,
    readonly layout: LockspaceLayout,
    private readonly membership: Membership,
    opts: LockspaceOptions,
  ) {
    this.nodeId = membership.localNodeId;
    this.generation = membership.localGeneration;
    this.pollMinMs = opts.pollMinMs ?? POLL_MIN_MS;
    this.pollMaxMs = opts.pollMaxMs ?? POLL_MAX_MS;
    assert(this.pollMinMs > 0 && this.pollMaxMs >= this.pollMinMs, `poll interval ${this.pollMinMs}..${this.pollMaxMs} ms`);
    this.log = opts.log ?? (() => {});
    this.waker = new Waker(opts.hintDir, opts.watchPath, this.log, this.nodeId);
    this.unsubscribe = membership.subscribe(() => this.waker.poke());
    const h = layout.header;
    this.lvbEntriesPerCell = layout.lvbEntriesPerCell;
    this.zeroValue = Buffer.alloc(h.lvbLenBytes);
    this.ownLocks = new IndexTable(layout.rows);
    this.ownLvbs = new IndexTable(layout.rows);
    this.lockObjs = new IndexTable(layout.rows * LOCK_ENTRIES_PER_CELL);
    this.io = new InCallIo(device);
    this.lockWindows = new CellWindows(this.io, layout, layout.lockAreaOffsetBytes, decodeLockCell, this.stats, this.nodeId);
    this.lvbWindows = new CellWindows(this.io, layout, layout.lvbAreaOffsetBytes, (b, e, w) => decodeLvbCell(b, e, h.lvbLenBytes, w), this.stats, -1);
  }

  /**
   * Opens (and, if blank, formats) the lockspace on `device` for membership's local node, and
   * starts this incarnation clean: entries left by a previous incarnation of this node are cleared
   * (value blocks it held in PW/EX are marked invalid first). The caller's join must have made sure
   * the previous incarnation cannot write any more (startNode: slot lock + slot probe + fence key).
   */
  static async open(device: BlockDevice, opts: LockspaceOptions): Promise<Lockspace> {
    const layout = await readOrFormat(device, opts);
    const n = opts.membership.localNodeId;
    if (!Number.isInteger(n) || n < 0 || n >= layout.header.maxNodes) {
      throw new DlmError('EINVAL', `${device.name}: node ${n} has no cells in this lockspace (nodes 0..${layout.header.maxNodes - 1})`, { device: device.name });
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
    await this.io.write(buf, offsetBytes);
  }

  private async startClean(): Promise<void> {
    const { layout } = this;
    const s = layout.sectorSizeBytes;
    const hOff = nodeHeaderOffset(layout, this.nodeId);
    const prev = await readStable(this.device, Buffer.alloc(s), hOff, (b) => decodeNodeHeader(b, this.nodeId, this.where(hOff)));
    // Invariant (issue 14 item 6): a lockspace is opened only after the previous incarnation of this
    // node can no longer write. Our generation is new per join, so an equal one means two live
    // openers of one incarnation; a different one must be fenced or gone (startNode's join: slot
    // lock, slot probe, new fence key), which membership reports for every incarnation but ours.
    if (prev !== undefined && prev.generation !== this.generation) {
      assert(!this.membership.members().some((m) => m.nodeId === this.nodeId && m.generation === prev.generation && m.state === 'up'), `node ${this.nodeId}'s previous incarnation ${hex64(prev.generation)} is still up while ${hex64(this.generation)} opens the lockspace`);
    }
    this.writeSeq = prev?.seq ?? 0n;
    this.writeSeq++;
    await this.write(encodeNodeHeader({ nodeId: this.nodeId, generation: this.generation, seq: this.writeSeq, pid: process.pid, startedMs: Date.now() }, s), hOff);
    for await (const { row, sector, offsetBytes } of this.ownColumn()) {
      if (isBlankRecord(sector)) continue;
      let cell: LockCell | undefined;
      try {
        cell = decodeLockCell(sector, { nodeId: this.nodeId, row }, this.where(offsetBytes));
      } catch (err) {
        // Our own sector, torn by our previous incarnation's crash mid-write: we are its only
        // writer, so we may overwrite it. Log it; nobody trusted the torn bytes.
        if (!(err instanceof FormatError)) throw err;
        this.log(`clearing our torn lock cell: ${err.message}`);
      }
      for (const e of cell?.entries ?? []) {
        if (e !== undefined && e.grantedMode !== null && writesLvb(e.grantedMode as Mode)) {
          // The previous incarnation held PW/EX: whatever it protected may have changed without a
          // value write. Persist that before the entry (the dynamic evidence) disappears.
          await this.writeLvb(e.resource, { invalidSeq: e.lvbSeqAtGrant });
        }
      }
      await this.write(Buffer.alloc(s), offsetBytes);
    }
  }

  /** Our column of the lock area, every row once, last row first (OPEN_SCAN_CHUNK_BYTES says why). */
  private async *ownColumn(): AsyncGenerator<{ row: number; sector: Buffer; offsetBytes: number }> {
    const { layout } = this;
    const s = layout.sectorSizeBytes;
    const rowsPerRead = layout.rowBytes <= OPEN_SCAN_ROW_BYTES_MAX ? Math.max(1, Math.floor(OPEN_SCAN_CHUNK_BYTES / layout.rowBytes)) : 0;
    const buf = Buffer.alloc(rowsPerRead === 0 ? s : rowsPerRead * layout.rowBytes);
    let turnedAtMs = performance.now();
    for (let end = layout.rows; end > 0; ) {
      if (performance.now() - turnedAtMs >= OPEN_SCAN_TURN_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        turnedAtMs = performance.now();
      }
      if (rowsPerRead === 0) {
        end--;
        const off = lockCellOffset(layout, end, this.nodeId);
        await this.io.read(buf, off);
        yield { row: end, sector: buf, offsetBytes: off };
        continue;
      }
      const first = Math.max(0, end - rowsPerRead);
      const view = buf.subarray(0, (end - first) * layout.rowBytes);
      await this.io.read(view, lockCellOffset(layout, first, 0));
      for (let i = 0; i < end - first; i++) {
        const a = i * layout.rowBytes + this.nodeId * s;
        yield { row: first + i, sector: view.subarray(a, a + s), offsetBytes: lockCellOffset(layout, first + i, this.nodeId) };
      }
      end = first;
    }
  }

  // -------------------------------------------------------------------------------------------
  // Reading

  /** Every live entry on `resource` in a window read, but ours from memory; excluding `exceptSlot` of ours. */
  private liveOthers(cells: readonly (LockCell | undefined)[], bucket: number, resource: Buffer, exceptSlot: number): { views: LockView[]; fenced: FencedHold[] } {
    const views: LockView[] = [];
    const fenced: FencedHold[] = [];
    const n = this.layout.header.maxNodes;
    for (let r = 0; r < WINDOW_ROWS; r++) {
      const row = bucket + r;
      for (let node = 0; node < n; node++) {
        let entries: readonly (LockEntry | undefined)[] | undefined;
        let isFenced = false;
        if (node === this.nodeId) {
          entries = this.ownLocks.get(row);
        } else {
          const cell = cells[r * n + node];
          if (cell === undefined) continue;
          entries = cell.entries;
          isFenced = this.membership.isFenced(node, cell.generation);
        }
        if (entries === undefined) continue;
        for (let i = 0; i < entries.length; i++) {
          const e = entries[i];
          if (e === undefined || !e.resource.equals(resource)) continue;
          const slot = row * LOCK_ENTRIES_PER_CELL + i;
          if (node === this.nodeId && slot === exceptSlot) continue;
          if (isFenced) {
            if (e.grantedMode !== null) fenced.push({ grantedMode: e.grantedMode as Mode, lvbSeqAtGrant: e.lvbSeqAtGrant });
            continue;
          }
          views.push(toView(e, node, slot));
        }
      }
    }
    return { views, fenced };
  }

  private async readWindow(bucket: number): Promise<(LockCell | undefined)[]> {
    this.stats.scans++;
    return this.lockWindows.read(bucket);
  }

  /**
   * Watches the hints of a lock's window once it meets another node's entry there. Returns true
   * when the watch is new: the caller then reads again, so a release between its last read and
   * the watch is not waited out.
   */
  private watchWindow(lock: Lock): boolean {
    let added = this.waker.watchNode();
    for (let r = 0; r < WINDOW_ROWS; r++) if (this.waker.watchRow(lock.bucket + r)) added = true;
    return added;
  }

  private async readLvb(bucket: number, resource: Buffer, fenced: FencedHold[]): Promise<LvbState> {
    const cells = await this.lvbWindows.read(bucket);
    const recs: LvbEntry[] = [];
    // Most cells of a window are empty (never written): skip them without allocating.
    for (const c of cells) {
      if (c === undefined) continue;
      for (const e of c.entries) if (e !== undefined && e.resource.equals(resource)) recs.push(e);
    }
    return resolveLvb(recs, fenced, this.layout.header.lvbLenBytes);
  }

  /** Everything on the region, for `dlm ls` and tests (no liveness judgement). */
  async snapshot(): Promise<LockspaceSnapshot> {
    return readSnapshot(this.device);
  }

  // -------------------------------------------------------------------------------------------
  // Writing our own cells

  /**
   * Writes the lock's entry (undefined frees it); `wake`: whom the change may let move on (Wake);
   * `change`: what memory takes if the write fails (Change). In its row's turn (lockRowWrites): the
   * cell is built from our memory of the row as the row's previous write left it, and memory takes
   * the new cell once it has landed.
   */
  private writeEntry(lock: Lock, entry: LockEntry | undefined, wake: Wake, change: Change): Promise<void> {
    return this.lockRowWrites.run(lock.row, () => this.writeEntryInTurn(lock, entry, wake, change));
  }

  private async writeEntryInTurn(lock: Lock, entry: LockEntry | undefined, wake: Wake, change: Change): Promise<void> {
    const { row, entry: index } = lock;
    const entries = [...(this.ownLocks.get(row) ?? emptyLockEntries())];
    entries[index] = entry;
    await this.writeRowInTurn(row, entries, change);
    if (wake === 'none') return;
    // Our own waiters (other locks of this process) learn it at once; other processes' through the hints.
    const targets = wake === 'all' ? undefined : wakeTargets(lock.othersAtRead, wake === 'next');
    if (targets !== undefined) {
      if (this.waiting.size > 0 && targets.includes(this.nodeId)) this.waker.poke();
      this.waker.hintNodes(targets);
      return;
    }
    if (wake === 'next') return;
    if (this.waiting.size > 0) this.waker.poke();
    this.waker.hintRow(row, mayHaveWaiters(lock, performance.now()));
  }

  /**
   * Writes our cell of `row` as `entries`, in the row's turn. Memory takes the cell once it has
   * landed; if the write fails it takes what Change says, and the row is unsure until a later write
   * of it lands (unsureRows).
   */
  private async writeRowInTurn(row: number, entries: (LockEntry | undefined)[], change: Change): Promise<void> {
    if (this.closing) throw new DlmError('ECLOSED', `${this.device.name}: lockspace is closing`);
    this.writeSeq++;
    const off = lockCellOffset(this.layout, row, this.nodeId);
    // A buffer is reused only after its write resolved: a device (NBD) may send it later than the call.
    const out = this.cellBufs.pop() ?? Buffer.alloc(this.layout.sectorSizeBytes);
    try {
      await this.write(encodeLockCell({ nodeId: this.nodeId, row, generation: this.generation, seq: this.writeSeq, entries }, this.layout.sectorSizeBytes, out), off);
    } catch (err) {
      // The write may have landed all the same: memory keeps whichever cell grants less (Change).
      // Either way the disk may show what memory no longer has (review 6 H1: a failed release,
      // never retried, held the lock on disk until the node restarted): the row is written again.
      if (change === 'letsGo') this.rememberRow(row, entries);
      this.unsureRows.add(row);
      this.scheduleRowRepair();
      throw err;
    } finally {
      if (this.cellBufs.length < CELL_BUFS_KEPT) this.cellBufs.push(out);
    }
    this.rememberRow(row, entries);
    if (this.unsureRows.delete(row)) this.dropConfirmedReleases(row);
  }

  /**
   * A write of `row` landed after one that failed: the releases of unknown outcome in it are done
   * (memory had let go of them, so the cell that landed does not hold them). Their Locks, lost, are
   * dropped; an unlock() of one afterwards resolves. A down-conversion's Lock keeps its entry
   * (lower mode) and stays listed, lost, until it is unlocked.
   */
  private dropConfirmedReleases(row: number): void {
    for (let i = 0; i < LOCK_ENTRIES_PER_CELL; i++) {
      const lock = this.lockObjs.get(row * LOCK_ENTRIES_PER_CELL + i);
      if (lock !== undefined && lock.releaseUnsure && !lock.busy && this.ownLocks.get(row)?.[i] === undefined) this.forgetReleased(lock);
    }
  }

  /** Rewrites of the unsure rows, after pollMinMs doubling up to pollMaxMs while they keep failing. */
  private scheduleRowRepair(): void {
    if (this.rowRepairTimer !== undefined || this.closing || this.unsureRows.size === 0) return;
    this.rowRepairDelayMs = Math.min(this.pollMaxMs, Math.max(this.pollMinMs, this.rowRepairDelayMs * 2));
    this.rowRepairTimer = setTimeout(() => void this.repairUnsureRows(), this.rowRepairDelayMs);
    // A process that has nothing else to do may exit; its close() writes the rows (close).
    this.rowRepairTimer.unref();
  }

  /** Writes each unsure row again from memory, in its turn (the cell memory holds grants less). */
  private async repairUnsureRows(): Promise<void> {
    this.rowRepairTimer = undefined;
    for (const row of [...this.unsureRows]) {
      if (this.closing) return;
      try {
        await this.lockRowWrites.run(row, () => (this.unsureRows.has(row) ? this.writeRowInTurn(row, [...(this.ownLocks.get(row) ?? emptyLockEntries())], 'letsGo') : Promise.resolve()));
        if (this.waiting.size > 0) this.waker.poke();
        this.waker.hintRow(row, true);
      } catch (err) {
        // A fenced node's cells are not counted by anyone any more: nothing to repair.
        if (this.failAllIfFenced(err)) {
          this.unsureRows.clear();
          return;
        }
        this.log(`rewriting lockspace row ${row} after a failed write: ${(err as Error).message}`);
      }
    }
    if (this.unsureRows.size === 0) this.rowRepairDelayMs = 0;
    // writeRowInTurn's failure scheduled nothing while this repair's timer was still set.
    this.scheduleRowRepair();
  }

  private rememberRow(row: number, entries: (LockEntry | undefined)[]): void {
    if (entries.some((e) => e !== undefined)) this.ownLocks.set(row, entries);
    else this.ownLocks.delete(row);
  }

  private ownEntry(lock: Lock): LockEntry | undefined {
    return this.ownLocks.get(lock.row)?.[lock.entry];
  }

  /** Our value cell of `row`, read from disk the first time (our previous incarnations wrote it). */
  private async ownLvbCell(row: number): Promise<(OwnLvb | undefined)[]> {
    let entries = this.ownLvbs.get(row);
    if (entries !== undefined) return entries;
    const off = lvbCellOffset(this.layout, row, this.nodeId);
    const h = this.layout.header;
    let cell: LvbCell | undefined;
    try {
      cell = await readStable(this.device, Buffer.alloc(this.layout.sectorSizeBytes), off, (b) => decodeLvbCell(b, { nodeId: this.nodeId, row }, h.lvbLenBytes, this.where(off)));
    } catch (err) {
      // Only we write it: a cell torn by our own crash is rewritten from scratch (its values are lost,
      // which can only make a reader see an older value or none: an older value's seq is lower).
      if (!(err instanceof FormatError)) throw err;
      this.log(`rewriting our torn value cell: ${err.message}`);
    }
    entries = cell?.entries.slice() ?? new Array(this.lvbEntriesPerCell).fill(undefined);
    this.ownLvbs.set(row, entries);
    return entries;
  }

  /** Where our value entry for `resource` is or can go: its own entry, a free one, or a superseded one. */
  private async lvbPlace(resource: Buffer): Promise<{ row: number; index: number; existing: boolean }> {
    const bucket = bucketOf(this.layout.header, resource);
    let free: { row: number; index: number } | undefined;
    for (let r = 0; r < WINDOW_ROWS; r++) {
      const entries = await this.ownLvbCell(bucket + r);
      for (let i = 0; i < entries.length; i++) {
        const e = entries[i];
        if (e !== undefined && e.resource.equals(resource)) return { row: bucket + r, index: i, existing: true };
        if (e === undefined && free === undefined) free = { row: bucket + r, index: i };
      }
    }
    return { ...(free ?? (await this.evictableLvb(bucket))), existing: false };
  }

  /**
   * A PW/EX grant reserves the value entry its release will write (in memory: only we write our
   * cells), so a release never finds the overflow rows full; a grant that cannot reserve one is
   * refused with ENOSPC instead.
   */
  private reserveLvb(resource: Buffer): Promise<void> {
    return this.lvbWork.run(LVB_WORK_KEY, () => this.reserveLvbInTurn(resource));
  }

  private async reserveLvbInTurn(resource: Buffer): Promise<void> {
    const place = await this.lvbPlace(resource);
    const entries = await this.ownLvbCell(place.row);
    // The reservation's value is never written into (writeLvb gives a written value its own
    // buffer): every reservation shares one zero value.
    if (!place.existing) entries[place.index] = { resource, valueSeq: null, value: this.zeroValue, invalidSeq: null, reserved: true };
    const e = entries[place.index]!;
    e.holds = (e.holds ?? 0) + 1;
  }

  /** A PW/EX hold ended: the last one on a resource frees its reservation if nothing was written. */
  private unreserveLvb(resource: Buffer): Promise<void> {
    return this.lvbWork.run(LVB_WORK_KEY, () => this.unreserveLvbInTurn(resource));
  }

  private async unreserveLvbInTurn(resource: Buffer): Promise<void> {
    const bucket = bucketOf(this.layout.header, resource);
    for (let r = 0; r < WINDOW_ROWS; r++) {
      const entries = await this.ownLvbCell(bucket + r);
      const i = entries.findIndex((e) => e !== undefined && e.resource.equals(resource));
      if (i < 0) continue;
      const e = entries[i]!;
      e.holds = Math.max(0, (e.holds ?? 0) - 1);
      if (e.holds === 0 && e.reserved === true) entries[i] = undefined;
      return;
    }
  }

  /**
   * Writes our value entry for `resource`, in the value cells' turn (lvbWork): built from memory as
   * the previous value-cell work left it; memory takes the new cell once it has landed. A write
   * that fails may have landed all the same, so the disk holds the old entry or the new one; the
   * one that grants less is neither but their invalidation: memory takes the old value marked
   * invalid as of the new sequence, and the cell's next write carries that (docs/lockspace.md,
   * "Writing one's own cells").
   */
  private writeLvb(resource: Buffer, what: { value?: Buffer; valueSeq?: bigint; invalidSeq?: bigint }): Promise<void> {
    return this.lvbWork.run(LVB_WORK_KEY, () => this.writeLvbInTurn(resource, what));
  }

  private async writeLvbInTurn(resource: Buffer, what: { value?: Buffer; valueSeq?: bigint; invalidSeq?: bigint }): Promise<void> {
    const h = this.layout.header;
    const place = await this.lvbPlace(resource);
    const entries = [...(await this.ownLvbCell(place.row))];
    const old = place.existing ? entries[place.index] : undefined;
    const rec: OwnLvb = old !== undefined ? { resource: old.resource, valueSeq: old.valueSeq, value: old.value, invalidSeq: old.invalidSeq, holds: old.holds } : { resource, valueSeq: null, value: smallZeroed(h.lvbLenBytes), invalidSeq: null };
    if (what.valueSeq !== undefined) {
      rec.valueSeq = what.valueSeq;
      rec.value = smallZeroed(h.lvbLenBytes);
      (what.value ?? Buffer.alloc(0)).copy(rec.value, 0, 0, h.lvbLenBytes);
    }
    if (what.invalidSeq !== undefined) rec.invalidSeq = rec.invalidSeq === null || what.invalidSeq > rec.invalidSeq ? what.invalidSeq : rec.invalidSeq;
    entries[place.index] = rec;
    this.writeSeq++;
    const off = lvbCellOffset(this.layout, place.row, this.nodeId);
    const onDisk = entries.map((e) => (e === undefined || e.reserved === true ? undefined : { resource: e.resource, valueSeq: e.valueSeq, value: e.value, invalidSeq: e.invalidSeq }));
    try {
      await this.write(encodeLvbCell({ nodeId: this.nodeId, row: place.row, generation: this.generation, seq: this.writeSeq, entries: onDisk }, this.layout.sectorSizeBytes, h.lvbLenBytes), off);
    } catch (err) {
      const seq = what.valueSeq ?? what.invalidSeq;
      assert(seq !== undefined, 'a value write writes a value or an invalidation');
      const before = old ?? { resource, valueSeq: null, value: smallZeroed(h.lvbLenBytes), invalidSeq: null };
      entries[place.index] = { resource: before.resource, valueSeq: before.valueSeq, value: before.value, invalidSeq: before.invalidSeq === null || seq > before.invalidSeq ? seq : before.invalidSeq, holds: before.holds };
      this.ownLvbs.set(place.row, entries);
      throw err;
    }
    this.ownLvbs.set(place.row, entries);
  }

  /** An entry of our value cells in the window whose value another node has superseded (newer seq). */
  private async evictableLvb(bucket: number): Promise<{ row: number; index: number }> {
    const n = this.layout.header.maxNodes;
    for (let r = 0; r < WINDOW_ROWS; r++) {
      const row = bucket + r;
      const entries = await this.ownLvbCell(row);
      for (let i = 0; i < entries.length; i++) {
        const mine = entries[i]!;
        if (mine.reserved === true) continue; // a held PW/EX lock's: never evicted
        const mineSeq = [mine.valueSeq ?? 0n, mine.invalidSeq ?? 0n].reduce((a, b) => (a > b ? a : b));
        const cells = await this.lvbWindows.read(bucketOf(this.layout.header, mine.resource));
        for (let c = 0; c < cells.length; c++) {
          if (c % n === this.nodeId) continue;
          if (cells[c]?.entries.some((o) => o !== undefined && o.resource.equals(mine.resource) && o.valueSeq !== null && o.valueSeq > mineSeq)) return { row, index: i };
        }
      }
    }
    throw new DlmError('ENOSPC', `${this.device.name}: node ${this.nodeId}'s value cells of rows ${bucket} and ${bucket + 1} are full and none is superseded (overflow rule: a resource's value lives in its bucket or the next)`, { device: this.device.name });
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
    const bucket = bucketOf(this.layout.header, res);
    const place = this.freeEntry(bucket);
    if (place === undefined) {
      return Promise.reject(new DlmError('ENOSPC', `${this.device.name}: node ${this.nodeId} has no free lock entry for ${resourceLabel(res)} in rows ${bucket} and ${bucket + 1} (overflow rule: ${LOCK_ENTRIES_PER_CELL} entries per cell, a resource in its bucket or the next; ${this.lockObjs.size} locks held)`, { device: this.device.name }));
    }
    const lock = new Lock(this, bucket, place.row, place.index, this.nextLockId++, res);
    lock.bast = opts.bast;
    this.lockObjs.set(lock.slot, lock);
    this.trackBast(lock);
    return this.enqueue('lock', lock, mode, opts).then(
      () => lock,
      (err: unknown) => {
        this.lockObjs.delete(lock.slot);
        this.trackBast(lock);
        throw err;
      },
    );
  }

  /** The overflow rule: our first free entry in row `bucket`, else in row bucket + 1. */
  private freeEntry(bucket: number): { row: number; index: number } | undefined {
    for (let r = 0; r < WINDOW_ROWS; r++) {
      const row = bucket + r;
      const entries = this.ownLocks.get(row);
      for (let i = 0; i < LOCK_ENTRIES_PER_CELL; i++) {
        if (entries?.[i] === undefined && !this.lockObjs.has(row * LOCK_ENTRIES_PER_CELL + i)) return { row, index: i };
      }
    }
    return undefined;
  }

  async convert(lock: Lock, mode: Mode, opts: ConvertOptions): Promise<void> {
    this.checkUsable(lock);
    if (!isMode(mode)) throw new DlmError('EINVAL', `invalid lock mode ${String(mode)}`);
    const from = lock.mode!;
    if (opts.bast !== undefined) {
      lock.bast = opts.bast;
      this.trackBast(lock);
    }
    if (mode === from) return;
    if (isDownConversion(from, mode)) {
      lock.busy = true;
      try {
        await this.releaseLvb(lock, opts, mode);
        const cur = this.ownEntry(lock)!;
        // lvbSeqAtGrant follows our own value writes, so if we die holding PW the invalidation
        // covers exactly the values up to the one we last wrote.
        await this.writeEntry(lock, { ...cur, state: 'granted', grantedMode: mode, requestedMode: null, claim: false, lvbSeqAtGrant: lock.lvbSeq }, 'release', 'letsGo').catch((err: unknown) => {
          lock.mode = mode;
          throw this.releaseUnknown(lock, err);
        });
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
    // Its row was written since (dropConfirmedReleases): the release is done.
    if (lock.releaseUnsure && lock.released) return;
    if (lock.releaseUnsure && !lock.busy && !this.closed && this.lockObjs.get(lock.slot) === lock) return this.retryRelease(lock);
    this.checkUsable(lock);
    lock.busy = true;
    try {
      await this.releaseLvb(lock, opts, null);
      await this.writeEntry(lock, undefined, 'release', 'letsGo').catch((err: unknown) => {
        lock.mode = null;
        throw this.releaseUnknown(lock, err);
      });
    } finally {
      lock.busy = false;
    }
    this.forgetReleased(lock);
  }

  /**
   * A release or down-conversion whose write failed: the write may have landed (an NBD request
   * that timed out after it was sent, EIO after part of a write), so another node may be granted
   * what we let go of. Memory let go already (writeEntry, 'letsGo'); the lock is lost, not held.
   */
  private releaseUnknown(lock: Lock, err: unknown): unknown {
    lock.releaseUnsure = true;
    lock.lost ??= `release outcome unknown: ${(err as Error).message}`;
    return err;
  }

  /** unlock() of a lock whose release's outcome is unknown: writes its row again, without it. */
  private async retryRelease(lock: Lock): Promise<void> {
    lock.busy = true;
    try {
      if (lock.mode !== null && writesLvb(lock.mode)) {
        await this.unreserveLvb(lock.resource);
        lock.mode = null;
      }
      await this.writeEntry(lock, undefined, 'release', 'letsGo');
    } finally {
      lock.busy = false;
    }
    this.forgetReleased(lock);
  }

  private forgetReleased(lock: Lock): void {
    lock.released = true;
    lock.mode = null;
    // Dropped already (dropConfirmedReleases), its slot may be another lock's by now.
    if (this.lockObjs.get(lock.slot) === lock) this.lockObjs.delete(lock.slot);
    this.trackBast(lock);
  }

  private checkUsable(lock: Lock): void {
    if (lock.lost !== undefined) throw new DlmError('EFENCED', `lock on ${lock.name} was lost: ${lock.lost}`);
    if (lock.released || this.lockObjs.get(lock.slot) !== lock) throw new DlmError('EINVAL', `lock on ${lock.name} is not held`);
    if (lock.busy) throw new DlmError('EINVAL', `lock on ${lock.name} has an operation in progress`);
  }

  /** Writes (or invalidates) the value block before a PW/EX holder lets go of its mode. */
  private async releaseLvb(lock: Lock, opts: ReleaseOptions, newMode: Mode | null): Promise<void> {
    if (lock.mode === null || !writesLvb(lock.mode)) return;
    try {
      await this.writeOrInvalidateLvb(lock, opts);
    } finally {
      if (newMode === null || !writesLvb(newMode)) await this.unreserveLvb(lock.resource);
    }
  }

  private async writeOrInvalidateLvb(lock: Lock, opts: ReleaseOptions): Promise<void> {
    // After a value write of unknown outcome, a release without a value invalidates: the disk may
    // still hold the older value as valid (writeLvb).
    if (opts.invalidateLvb || (opts.lvb === undefined && lock.lvbUnsure)) {
      lock.lvbSeq++;
      lock.lvbUnsure = true;
      await this.writeLvb(lock.resource, { invalidSeq: lock.lvbSeq });
      lock.lvbUnsure = false;
      lock.lvbValid = false;
    } else if (opts.lvb !== undefined) {
      lock.lvbSeq++;
      lock.lvbUnsure = true;
      await this.writeLvb(lock.resource, { value: opts.lvb, valueSeq: lock.lvbSeq });
      lock.lvbUnsure = false;
      lock.lvb = smallZeroed(this.layout.header.lvbLenBytes);
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
        spins: false,
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

  /** Granted locks that want blocking notifications (the pump then keeps polling their windows). */
  private bastLocks(): Lock[] {
    const out: Lock[] = [];
    for (const l of this.bastWanted) if (l.mode !== null && !l.busy && l.lost === undefined) out.push(l);
    return out;
  }

  private wantsBasts(): boolean {
    for (const l of this.bastWanted) if (l.mode !== null && !l.busy && l.lost === undefined) return true;
    return false;
  }

  /** Keeps `bastWanted` (the locks with a bast callback) in step with a lock's callback and life. */
  private trackBast(lock: Lock): void {
    if (lock.bast !== undefined && !lock.released && this.lockObjs.get(lock.slot) === lock) this.bastWanted.add(lock);
    else this.bastWanted.delete(lock);
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
   * The one loop that moves every waiting request on: one read of each waiting request's window
   * per pass. It re-reads at once after any write of ours; otherwise it sleeps with exponential
   * backoff up to pollMaxMs, woken early by a hint on a watched row, a membership event or a new
   * request.
   */
  private async pump(): Promise<void> {
    let sleepMs = this.pollMinMs;
    /** End of the current spin (SPIN_MS after the last pass that saw a change); undefined: none started. */
    let spinUntilMs: number | undefined;
    /** When the event loop last turned during this pump (SPIN_TURN_MS). */
    let turnedAtMs = performance.now();
    while (!this.closed && (this.waiting.size > 0 || this.wantsBasts())) {
      const byBucket = new Map<number, Waiting[]>();
      for (const w of this.waiting) {
        const list = byBucket.get(w.lock.bucket);
        if (list === undefined) byBucket.set(w.lock.bucket, [w]);
        else list.push(w);
      }
      const reparsedBefore = this.stats.sectorsReparsed;
      // Any hint that arrives from here on is covered by the reads below or wakes the next wait.
      this.waker.clearPending();
      let wrote = false;
      const read = new Map<number, (LockCell | undefined)[]>();
      for (const [bucket, batch] of byBucket) {
        let cells: (LockCell | undefined)[];
        try {
          cells = await this.readWindow(bucket);
        } catch (err) {
          if (this.failAllIfFenced(err)) return;
          // A sector that stays corrupt: nobody can decide on it. Keep waiting (bounded by each
          // request's timeout), and say why.
          this.log(`lockspace window ${bucket} read failed, retrying: ${(err as Error).message}`);
          for (const w of batch) if (this.isDue(w)) await this.withdraw(w, this.dueError(w, (err as Error).message));
          continue;
        }
        read.set(bucket, cells);
        for (const w of batch) {
          if (!this.waiting.has(w)) continue;
          try {
            if (await this.advance(w, cells)) wrote = true;
          } catch (err) {
            if (this.failAllIfFenced(err)) return;
            if (this.closing) {
              this.waiting.delete(w);
              w.reject(err as Error);
              continue;
            }
            // The request fails, not taken; its entry goes (the failed write may have landed).
            try {
              await this.withdraw(w, err as Error, true);
              wrote = true;
            } catch (withdrawErr) {
              if (this.failAllIfFenced(withdrawErr)) return;
              this.log(`withdrawing the failed request on ${w.lock.name}: ${(withdrawErr as Error).message}`);
            }
          }
        }
      }
      try {
        await this.notifyBlocking(read);
      } catch (err) {
        if (this.failAllIfFenced(err)) return;
        this.log(`blocking-notice read failed: ${(err as Error).message}`);
      }
      if (wrote) {
        sleepMs = this.pollMinMs;
        spinUntilMs = undefined;
        continue;
      }
      const nearHead = this.nearHeadWaiting();
      // A change on the window restarts the spin of a request near the head (the queue is moving
      // and it is next) and its poll backoff. A request further back keeps backing off whatever
      // changes: on a busy resource the window changes at every hand-off, and 6 such waiters of
      // an 8-process queue re-reading every pollMinMs took more CPU than the hand-offs themselves
      // (5 sleeps and 13 window reads per acquisition). The grant before it wakes it ('next').
      if (nearHead && this.stats.sectorsReparsed !== reparsedBefore) {
        sleepMs = this.pollMinMs;
        spinUntilMs = undefined;
      }
      const now = performance.now();
      if (nearHead) {
        // Spin only while the CPUs have room for it (cpu-room.ts): asked once per quiet period.
        if (spinUntilMs === undefined) {
          const room = this.nearHeadOfPair() || cpuToSpare();
          if (!room) this.stats.spinsDeclined++;
          spinUntilMs = room ? now + SPIN_MS : now;
        }
        if (now < spinUntilMs) {
          this.stats.spins++;
          if (now - turnedAtMs >= SPIN_TURN_MS) {
            await new Promise<void>((resolve) => setImmediate(resolve));
            turnedAtMs = performance.now();
          }
          continue;
        }
      }
      // Requests further back in their queues wait for the grant before theirs to wake them
      // ('next'); while hints addressed to this node arrive, they poll only at the bound. (Backing
      // off from pollMinMs after each of their own writes was 4 wasted sleeps and reads per
      // acquisition in an 8-process queue.) Where none arrive (the grants are made on another
      // machine, over nbd://; no hint directory) they back off as before.
      let untilMs = !nearHead && this.waker.hintsArriving && !this.wantsBasts() ? this.pollMaxMs : sleepMs;
      for (const w of this.waiting) untilMs = Math.min(untilMs, Math.max(0, w.deadlineMs - now));
      this.stats.waits++;
      await this.waker.wait(untilMs);
      turnedAtMs = performance.now();
      sleepMs = Math.min(this.pollMaxMs, sleepMs * 2);
    }
  }

  /**
   * Whether one of our waiting requests is at the head of its queue (it holds its CLAIM and waits
   * only for held modes to go) or right behind the head (SPIN_QUEUE_AHEAD_MAX): the requests that
   * spin (SPIN_MS). Requests further back sleep, so waiters beyond the CPUs do not take the CPU
   * from the holder they wait for.
   */
  private nearHeadWaiting(): boolean {
    for (const w of this.waiting) if (w.phase === 'check' && (w.spins || this.ownEntry(w.lock)?.claim === true)) return true;
    return false;
  }

  /**
   * Whether a spinning request's window held no more than one other entry at its last read (two
   * processes taking turns): it spins whatever the CPUs do. Its holder's last read often saw
   * nobody, and such a release sends no hint (mayHaveWaiters): declining the spin would cost a
   * pollMinMs sleep per hand-off (measured: 2-process hand-offs halved at load 8-10).
   */
  private nearHeadOfPair(): boolean {
    for (const w of this.waiting) if (w.phase === 'check' && (w.spins || this.ownEntry(w.lock)?.claim === true) && (w.lock.othersAtRead?.length ?? 2) <= 1) return true;
    return false;
  }

  /** Takes one step for a waiting request on a fresh read of its window; returns true if it wrote. */
  private async advance(w: Waiting, cells: readonly (LockCell | undefined)[]): Promise<boolean> {
    const { lock } = w;
    const { views: others, fenced } = this.liveOthers(cells, lock.bucket, lock.resource, lock.slot);
    noteRead(lock, others);
    const newlyWatched = others.length > 0 && this.watchWindow(lock);
    if (w.phase === 'doorway') {
      // Bakery doorway: our queue position is one past every ticket on the resource. We also set
      // CLAIM at once when the rule would let us claim on this read (saves a round trip).
      const ticket = nextTicket(others);
      const cur = this.ownEntry(lock);
      const rec: LockEntry = {
        state: w.kind === 'lock' ? 'waiting' : 'converting',
        grantedMode: w.kind === 'lock' ? null : lock.mode,
        requestedMode: w.mode,
        claim: false,
        lockId: lock.lockId,
        ticket,
        lvbSeqAtGrant: w.kind === 'lock' ? 0n : cur!.lvbSeqAtGrant,
        pid: process.pid,
        resource: lock.resource,
      };
      const d = decide(toView(rec, this.nodeId, lock.slot), others, { arriving: true });
      // NOQUEUE writes nothing unless it could be granted on this read: the rule lets the head of a
      // queue claim while held modes still block it, and a claim on disk is a blocking notice to
      // the holders — one that let go for it (an LV activation, src/volume/locked-lv.ts) would
      // hand the lock to a request that was meant to fail at once.
      if (w.noqueue && (d.action !== 'claim' || decide(toView({ ...rec, claim: true }, this.nodeId, lock.slot), others).action !== 'grant')) {
        return this.withdraw(w, new DlmError('EAGAIN', `lock ${modeName(w.mode)} on ${lock.name} would block (NOQUEUE)`));
      }
      rec.claim = d.action === 'claim';
      await this.writeEntry(lock, rec, 'none', 'takes');
      w.phase = 'check';
      w.trace?.('queued');
      return true;
    }
    const me = this.ownEntry(lock)!;
    const d = decide(toView(me, this.nodeId, lock.slot), others);
    switch (d.action) {
      case 'grant': {
        // Invariant (issue 14 item 6): a grant never coexists with an incompatible claimed mode.
        for (const o of others) {
          assert(o.grantedMode === null || compatible(w.mode, o.grantedMode), `grant of ${modeName(w.mode)} on ${lock.name} beside node ${o.nodeId}'s granted ${modeName(o.grantedMode!)}`);
          assert(!o.claim || o.requestedMode === null || compatible(w.mode, o.requestedMode), `grant of ${modeName(w.mode)} on ${lock.name} beside node ${o.nodeId}'s claim of ${modeName(o.requestedMode!)}`);
        }
        const reserves = writesLvb(w.mode) && !(lock.mode !== null && writesLvb(lock.mode));
        if (reserves) {
          try {
            await this.reserveLvb(lock.resource);
          } catch (err) {
            if (err instanceof DlmError && err.code === 'ENOSPC') return this.withdraw(w, err);
            throw err;
          }
        }
        let lvb: LvbState;
        try {
          lvb = await this.readLvb(lock.bucket, lock.resource, fenced);
          w.trace?.('granting');
          await this.writeEntry(lock, { ...me, state: 'granted', grantedMode: w.mode, requestedMode: null, claim: false, lvbSeqAtGrant: lvb.currentSeq }, 'next', 'takes');
        } catch (err) {
          // Not granted: the reservation goes with it (else its value entry is never freed).
          if (reserves) await this.unreserveLvb(lock.resource);
          throw err;
        }
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
        await this.writeEntry(lock, { ...me, claim: true }, 'none', 'takes');
        return true;
      case 'deadlock': {
        await this.writeEntry(lock, { ...me, state: 'granted', requestedMode: null, claim: false }, 'all', 'letsGo');
        this.waiting.delete(w);
        const other = d.with;
        w.reject(new DlmError('EDEADLK', `conversion of ${lock.name} to ${modeName(w.mode)} cancelled: conversion deadlock with node ${other.nodeId}'s conversion ${modeName(other.grantedMode!)}->${modeName(other.requestedMode!)}`));
        return true;
      }
      case 'wait': {
        if (w.noqueue) return this.withdraw(w, new DlmError('EAGAIN', `lock ${modeName(w.mode)} on ${lock.name} would block (NOQUEUE)`));
        w.spins = spinsWhileWaiting(toView(me, this.nodeId, lock.slot), others);
        let wrote = false;
        if (d.dropClaim) {
          await this.writeEntry(lock, { ...me, claim: false }, 'all', 'letsGo');
          wrote = true;
        }
        if (this.isDue(w)) return this.withdraw(w, this.dueError(w));
        return wrote || newlyWatched;
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
    const cells = this.lockWindows.peek(w.lock.bucket);
    if (cells === undefined) return '';
    const { views } = this.liveOthers(cells, w.lock.bucket, w.lock.resource, w.lock.slot);
    const held = views.filter((v) => v.grantedMode !== null).map((v) => `node ${v.nodeId} holds ${modeName(v.grantedMode!)}${v.state === 'converting' ? `->${modeName(v.requestedMode!)}` : ''}`);
    const queued = views.filter((v) => v.state === 'waiting').length;
    return [...held, queued ? `${queued} queued` : ''].filter(Boolean).join(', ');
  }

  /**
   * Withdraws a request: a new one frees its entry, a conversion returns to its granted mode.
   * `rewrite`: after a write of unknown outcome, the row is written even when memory shows nothing
   * to withdraw (a doorway, claim or grant that failed may have landed: writeEntry, 'takes').
   */
  private async withdraw(w: Waiting, err: Error, rewrite = false): Promise<boolean> {
    this.waiting.delete(w);
    try {
      const cur = this.ownEntry(w.lock);
      if (w.kind === 'lock') {
        if (cur !== undefined || rewrite) await this.writeEntry(w.lock, undefined, 'all', 'letsGo');
      } else if (cur !== undefined && cur.state === 'converting') {
        await this.writeEntry(w.lock, { ...cur, state: 'granted', requestedMode: null, claim: false }, 'all', 'letsGo');
      } else if (cur !== undefined && rewrite) {
        await this.writeEntry(w.lock, cur, 'all', 'letsGo');
      }
    } finally {
      w.reject(err);
    }
    return true;
  }

  /**
   * Blocking notices for granted locks with a bast callback. Bounded: at most
   * BAST_WINDOWS_PER_PASS_MAX windows are read per pass (round robin over the locks), beside the
   * windows this pass read anyway.
   */
  private async notifyBlocking(read: Map<number, (LockCell | undefined)[]>): Promise<void> {
    const locks = this.bastLocks();
    if (locks.length === 0) return;
    let extraReads = 0;
    for (let k = 0; k < locks.length; k++) {
      const lock = locks[(this.bastCursor + k) % locks.length]!;
      let cells = read.get(lock.bucket);
      if (cells === undefined) {
        if (extraReads >= BAST_WINDOWS_PER_PASS_MAX) continue;
        extraReads++;
        cells = await this.readWindow(lock.bucket);
        read.set(lock.bucket, cells);
      }
      const me = this.ownEntry(lock);
      if (me === undefined || lock.bast === undefined || lock.mode === null) continue;
      const { views } = this.liveOthers(cells, lock.bucket, lock.resource, lock.slot);
      noteRead(lock, views);
      for (const o of views) {
        // Invariant, checked from what other nodes wrote: our granted mode and their claims agree.
        assert(o.grantedMode === null || compatible(lock.mode, o.grantedMode), `node ${this.nodeId} holds ${modeName(lock.mode)} on ${lock.name} while node ${o.nodeId} holds ${modeName(o.grantedMode!)}`);
      }
      const m = blockedMode(toView(me, this.nodeId, lock.slot), views);
      if (m !== null && m !== lock.lastBast) {
        lock.lastBast = m;
        const cb = lock.bast;
        queueMicrotask(() => cb(m));
      }
    }
    this.bastCursor = (this.bastCursor + BAST_WINDOWS_PER_PASS_MAX) % Math.max(1, locks.length);
  }

  /** A write refused by the fence gate: this node is fenced; every request and lock is lost. */
  private failAllIfFenced(err: unknown): boolean {
    if (!(err instanceof SanboxError) || err.code !== 'EFENCED') return false;
    const why = `node ${this.nodeId} was fenced: ${err.message}`;
    for (const w of this.waiting) w.reject(new DlmError('EFENCED', why));
    this.waiting.clear();
    for (const l of this.lockObjs.values()) l.lost = why;
    return true;
  }

  /**
   * Who else holds `resource` (granted, any mode) as one read of its window shows it; fenced
   * incarnations are left out. For messages naming the holders (a --nowait conflict, a lock-out).
   */
  async holders(resource: string | Buffer): Promise<{ nodeId: number; mode: Mode }[]> {
    const res = toResource(resource);
    const bucket = bucketOf(this.layout.header, res);
    const { views } = this.liveOthers(await this.readWindow(bucket), bucket, res, -1);
    return views.filter((v) => v.nodeId !== this.nodeId && v.grantedMode !== null).map((v) => ({ nodeId: v.nodeId, mode: v.grantedMode! }));
  }

  /** Locks this node holds or requests (for status displays). */
  heldLocks(): Lock[] {
    return [...this.lockObjs.values()];
  }

  /** Number of early wakeups (hints, membership events, requests) so far. */
  get wakeups(): number {
    return this.waker.wakeups;
  }

  /** Number of per-resource hints this node sent. */
  get hintsSent(): number {
    return this.waker.hintsSent;
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
    // Writes of our cells already issued land first (and are in ownLocks then); later ones are refused.
    // Value-cell work queued before (a release's value write) runs before the lock cells are cleared.
    this.closing = true;
    clearTimeout(this.rowRepairTimer);
    await Promise.all([this.lockRowWrites.idle(), this.lvbWork.idle()]);
    try {
      // Best effort, one write per row: the rows with an entry, and those whose last write failed
      // (the disk may still show a lock memory let go of).
      for (const row of new Set([...this.ownLocks.keys(), ...this.unsureRows])) {
        this.writeSeq++;
        try {
          await this.write(encodeLockCell({ nodeId: this.nodeId, row, generation: this.generation, seq: this.writeSeq, entries: emptyLockEntries() }, this.layout.sectorSizeBytes), lockCellOffset(this.layout, row, this.nodeId));
        } catch (err) {
          this.log(`releasing locks of row ${row} on close failed: ${(err as Error).message}`);
          continue;
        }
        this.ownLocks.delete(row);
        this.unsureRows.delete(row);
        this.waker.hintRow(row, true);
      }
    } finally {
      for (const l of this.lockObjs.values()) l.lost = 'lockspace closed';
      this.closed = true;
      this.waker.stopWatching();
      this.waker.poke();
      this.unsubscribe();
    }
  }
}

/** No other entry seen: one shared empty view, so a held uncontended lock keeps no array of its own. */
const NO_OTHERS: readonly LockView[] = Object.freeze([]);

function noteRead(lock: Lock, others: readonly LockView[]): void {
  lock.readAtMs = performance.now();
  lock.othersAtRead = others.length === 0 ? NO_OTHERS : others;
}

/**
 * Whom a write of ours wakes:
 * - 'none': nobody (a doorway or a claim only holds others back);
 * - 'next': the queue's head as of our last read, if it had one (a grant: the next request may
 *   claim while we hold, and then takes the lock on the read that first shows our release);
 * - 'release': the same when our last read can tell who is next (wakeTargets), else everyone
 *   waiting on the row (a release, a down-conversion);
 * - 'all': everyone waiting on the row (a dropped claim, a cancelled conversion, a withdrawn
 *   request: rare, and the queue they change may be anything).
 */
type Wake = 'none' | 'next' | 'release' | 'all';

/**
 * What memory takes when a write of our lock cell fails. The write may have landed all the same
 * (an NBD request that timed out after it was sent, EIO after part of a write), so the disk holds
 * the old cell or the new one, and the row's next write, built from memory, must not grant more
 * than either (review 5 finding H2: a release that landed, re-asserted by the next write of its
 * row after another node was granted the lock): memory keeps the one that grants less.
 * - 'takes': the change takes something (a doorway, a claim, a grant): memory keeps the old entry,
 *   and the request is not taken;
 * - 'letsGo': the change lets go of something (a release, a down-conversion, a cancelled
 *   conversion, a dropped claim, a withdrawn request): memory takes the new entry all the same.
 */
type Change = 'takes' | 'letsGo';

/**
 * The nodes to wake after we let go of (or were granted) a lock, from `others`, our last read of
 * its resource: the head of the queue, and the requests right behind it as long as each is
 * compatible with all before it (they may all be granted together: a run of PR requests). Every
 * request that arrives later queues behind them and is woken in turn by the grant before it
 * ('next'). Undefined when the view cannot tell who is next: nothing read yet, nothing queued
 * (someone may have arrived since), or — for a release (`grantIsOurs` false) — another holder,
 * which may have asked for a conversion since, and a conversion goes ahead of every waiting
 * request. A wrong guess costs latency (the waiter's poll bound), never safety: every decision is
 * taken on a read of the disk.
 */
function wakeTargets(others: readonly LockView[] | null, grantIsOurs: boolean): number[] | undefined {
  if (others === null) return undefined;
  const queued: LockView[] = [];
  for (const o of others) {
    if (o.state !== 'granted') queued.push(o);
    else if (!grantIsOurs) return undefined;
  }
  if (queued.length === 0) return undefined;
  queued.sort((a, b) => (precedes(a, b) ? -1 : 1));
  const nodes = [queued[0]!.nodeId];
  for (let k = 1; k < queued.length; k++) {
    const want = queued[k]!.requestedMode;
    if (want === null || !queued.slice(0, k).every((q) => q.requestedMode !== null && compatible(want, q.requestedMode))) break;
    if (!nodes.includes(queued[k]!.nodeId)) nodes.push(queued[k]!.nodeId);
  }
  return nodes;
}

/**
 * Whether a write of `lock` that may unblock others needs to send the hint (wakeup.ts). Not when
 * the lock's last read of its window, less than SPIN_MS ago, saw no other entry on the resource:
 * a request that arrived since began its doorway after that read, and it spins for SPIN_MS after
 * its doorway write (it is at the head or right behind it: nothing else was queued), so it is
 * still reading the disk when this write lands. That saves the hint's syscall on every
 * uncontended release. If it lost its CPU meanwhile and missed the write, its first sleep is
 * pollMinMs (a quiet pass after a write of its own). Correctness never depends on it.
 */
function mayHaveWaiters(lock: Lock, nowMs: number): boolean {
  return lock.othersAtRead === null || lock.othersAtRead.length > 0 || nowMs - lock.readAtMs >= SPIN_MS;
}

/**
 * Whether a waiting request without CLAIM spins (SPIN_QUEUE_AHEAD_MAX): it is second in its
 * queue and last (nobody queued behind it: the pair of processes taking turns). A longer queue's
 * second request sleeps: its spin would take a CPU from the holder for as long as the queue moves.
 */
function spinsWhileWaiting(me: LockView, others: readonly LockView[]): boolean {
  let ahead = 0;
  for (const o of others) {
    if (o.state === 'granted' || sameLock(o, me)) continue;
    if (!precedes(o, me)) return false;
    ahead++;
  }
  return ahead <= SPIN_QUEUE_AHEAD_MAX;
}

function toView(e: LockEntry, nodeId: number, slot: number): LockView {
  return {
    nodeId,
    slot,
    state: e.state,
    grantedMode: e.grantedMode as Mode | null,
    requestedMode: e.requestedMode as Mode | null,
    claim: e.claim,
    ticket: e.ticket,
  };
}

// ---------------------------------------------------------------------------------------------
// Format and raw reads (no membership needed: `dlm ls` uses these)

/** The header a blank region gets: a pure function of its size, sector size and node count, so
 * nodes that find the region blank at the same moment write identical bytes. */
export function defaultHeader(regionBytes: number, sectorSizeBytes: number, maxNodes: number, over: LockspaceOptions['format'] = {}): LockspaceHeader {
  const nodes = over.maxNodes ?? maxNodes;
  // The whole region: `cluster init` sized it for the capacity it was asked for.
  return headerForCapacity(sectorSizeBytes, nodes, over.locksPerNode ?? capacityForRegion(regionBytes, sectorSizeBytes, nodes), over);
}

export async function formatLockspace(device: BlockDevice, header: LockspaceHeader): Promise<LockspaceLayout> {
  const layout = lockspaceLayout(header);
  if (header.sectorSizeBytes !== device.sectorSizeBytes) throw new DlmError('EINVAL', `${device.name}: lockspace sector size ${header.sectorSizeBytes} differs from the device's ${device.sectorSizeBytes}`, { device: device.name });
  if (header.locksPerNode < 1 || layout.totalBytes > device.sizeBytes) {
    throw new DlmError('ENOSPC', `${device.name}: a lockspace of ${header.maxNodes} nodes x ${header.locksPerNode} locks and value blocks needs ${layout.totalBytes} bytes; the region has ${device.sizeBytes}`, { device: device.name });
  }
  await device.write(encodeLockspaceHeader(header), 0);
  await device.flush();
  return layout;
}

async function readHeader(device: BlockDevice): Promise<LockspaceHeader | undefined> {
  const s = device.sectorSizeBytes;
  if (device.sizeBytes < s) throw new FormatError(`${device.name}: region too small for a lockspace (${device.sizeBytes} bytes)`, { device: device.name, offsetBytes: 0 });
  const where = { device: device.name, offsetBytes: 0 };
  // The header may be being written by a node formatting the region right now: readStable retries.
  const h = await readStable(device, Buffer.alloc(s), 0, (b) => (isBlankRecord(b) ? undefined : decodeLockspaceHeader(b, where)));
  if (h === undefined) return undefined;
  if (h.sectorSizeBytes !== s) throw new FormatError(`${device.name}: lockspace was made for ${h.sectorSizeBytes}-byte sectors; the device has ${s}`, where);
  const l = lockspaceLayout(h);
  if (l.totalBytes > device.sizeBytes) throw new FormatError(`${device.name}: lockspace needs ${l.totalBytes} bytes; the region has ${device.sizeBytes}`, where);
  return h;
}

async function readOrFormat(device: BlockDevice, opts: LockspaceOptions): Promise<LockspaceLayout> {
  const h = await readHeader(device);
  if (h !== undefined) return lockspaceLayout(h);
  const maxNodes = opts.format?.maxNodes ?? opts.membership.members().length;
  const header = defaultHeader(device.sizeBytes, device.sectorSizeBytes, Math.max(1, maxNodes), opts.format);
  opts.log?.(`formatting blank lockspace on ${device.name}: ${header.maxNodes} nodes, ${header.locksPerNode} locks and value blocks each (${header.bucketCount} buckets)`);
  return formatLockspace(device, header);
}

/** False while no node has opened (and so formatted) the lockspace region. */
export async function lockspaceFormatted(device: BlockDevice): Promise<boolean> {
  return (await readHeader(device)) !== undefined;
}

/** Reads every cell of a lockspace (torn sectors are retried, then reported). */
export async function readSnapshot(device: BlockDevice): Promise<LockspaceSnapshot> {
  const header = await readHeader(device);
  if (header === undefined) throw new FormatError(`${device.name}: lockspace is not formatted yet (no node has opened it)`, { device: device.name, offsetBytes: 0 });
  const layout = lockspaceLayout(header);
  const s = layout.sectorSizeBytes;
  const snap: LockspaceSnapshot = { header, locks: [], lvbs: [], nodes: [] };
  for (let n = 0; n < header.maxNodes; n++) {
    const off = nodeHeaderOffset(layout, n);
    const nh = await readStable(device, Buffer.alloc(s), off, (b) => decodeNodeHeader(b, n, { device: device.name, offsetBytes: off }));
    if (nh !== undefined) snap.nodes.push(nh);
  }
  const rowsPerRead = Math.max(1, Math.floor(SNAPSHOT_CHUNK_BYTES / layout.rowBytes));
  const chunk = Buffer.alloc(rowsPerRead * layout.rowBytes);
  for (const area of ['lock', 'lvb'] as const) {
    const base = area === 'lock' ? layout.lockAreaOffsetBytes : layout.lvbAreaOffsetBytes;
    for (let first = 0; first < layout.rows; first += rowsPerRead) {
      const rows = Math.min(rowsPerRead, layout.rows - first);
      await device.read(chunk.subarray(0, rows * layout.rowBytes), base + first * layout.rowBytes);
      for (let i = 0; i < rows * header.maxNodes; i++) {
        const sector = chunk.subarray(i * s, (i + 1) * s);
        if (isBlankRecord(sector)) continue;
        const row = first + Math.floor(i / header.maxNodes);
        const nodeId = i % header.maxNodes;
        const offsetBytes = base + first * layout.rowBytes + i * s;
        const where = { device: device.name, offsetBytes };
        const expect = { nodeId, row };
        const place = (entry: number) => ({ row, entry, slot: row * LOCK_ENTRIES_PER_CELL + entry, offsetBytes });
        if (area === 'lock') {
          const cell = await readStable(device, Buffer.from(sector), offsetBytes, (b) => decodeLockCell(b, expect, where), { preRead: true });
          cell?.entries.forEach((e, k) => {
            if (e !== undefined) snap.locks.push({ ...e, nodeId, generation: cell.generation, seq: cell.seq, ...place(k) });
          });
        } else {
          const cell = await readStable(device, Buffer.from(sector), offsetBytes, (b) => decodeLvbCell(b, expect, header.lvbLenBytes, where), { preRead: true });
          cell?.entries.forEach((e, k) => {
            if (e !== undefined) snap.lvbs.push({ ...e, nodeId, generation: cell.generation, seq: cell.seq, ...place(k) });
          });
        }
      }
    }
  }
  return snap;
}
