// The heartbeat loop of one node on one region (reference/ocfs2.md §4.4, adapted): every interval
// read all configured slots, check our own slot still holds what we wrote, feed the membership,
// and write our block (seq increases, generation fixed for this join, dead_ms = our dead time).
// A watchdog, independent of the loop, fences this node (stops all its I/O through its gate) when
// no heartbeat write has succeeded for selfFenceMs — before peers can declare it dead
// (src/timing.ts, docs/heartbeat.md).

import crypto from 'node:crypto';
import type { BlockDevice } from '../disk/device.js';
import type { SelfFencingGate } from '../disk/fence-gate.js';
import { msToMonoNs, MONO_NS_NEVER, type WriteLease } from '../disk/write-lease.js';
import { assert, FormatError, SanboxError, isSanboxError } from '../errors.js';
import { readStable } from '../disk/stable-read.js';
import type { SlotTable } from '../disk/own-slots.js';
import { decodeO2hbBlock, encodeO2hbBlock, hex64, O2NM_MAX_NODES, parseO2hbBlock, type DecodedO2hbBlock } from '../format/o2hb-block.js';
import type { MembershipService } from './membership.js';
import type { Timing } from '../timing.js';
import { JOIN_PROBE_MS_MAX, JOIN_PROBE_POLL_MS_MIN } from '../timing.js';

export interface HeartbeatRegion {
  /** For messages and as the membership's region key, e.g. `cluster.img:heartbeat`. */
  name: string;
  /** The device whose writes pass this node's fence gate. */
  device: BlockDevice;
  /** Byte offset of slot 0 on `device`. */
  offsetBytes: number;
  /** Slot size: the device's logical sector size (reference/ocfs2.md §4.1). */
  blockBytes: number;
  /** Slots read each round: node numbers 0..slotCount-1. */
  slotCount: number;
}


export interface HeartbeatStats {
  rounds: number;
  writesOk: number;
  writesFailed: number;
  bytesRead: number;
  bytesWritten: number;
}

/** A fresh random non-zero 64-bit generation per join (0 means "left cleanly"). */
export function newGeneration(): bigint {
  for (;;) {
    const g = crypto.randomBytes(8).readBigUInt64LE(0);
    if (g !== 0n) return g;
  }
}

/**
 * Reads every slot in one read. With `stable`, a slot with a bad checksum is read again on its own
 * (readSlotStable): for one-shot readers such as `cluster status`, which would otherwise show a
 * torn read as a bad block. The heartbeat loop does not: there a bad checksum is a missed sample.
 */
export async function readSlots(region: HeartbeatRegion, buf?: Buffer, opts: { stable?: boolean } = {}): Promise<DecodedO2hbBlock[]> {
  const b = buf ?? Buffer.alloc(region.slotCount * region.blockBytes);
  await region.device.read(b, region.offsetBytes);
  const out: DecodedO2hbBlock[] = [];
  for (let n = 0; n < region.slotCount; n++) {
    const sector = b.subarray(n * region.blockBytes, (n + 1) * region.blockBytes);
    const block = decodeO2hbBlock(sector, { device: region.device.name, offsetBytes: slotOffsetBytes(region, n) });
    out.push(opts.stable === true && !block.cksumValid ? await readSlotStable(region, n, sector) : block);
  }
  return out;
}

/**
 * The region as a table of per-node slots, for the own-slot guard (src/disk/own-slots.ts): all
 * O2NM_MAX_NODES slots an o2hb region has (the cluster image's and an ocfs2 heartbeat file's are
 * sized so), not just the ones this cluster reads.
 */
export function slotTableOf(region: HeartbeatRegion): SlotTable {
  return { what: region.name, offsetBytes: region.offsetBytes, slotBytes: region.blockBytes, slotCount: O2NM_MAX_NODES };
}

/** Byte offset of node `nodeId`'s slot on the region's device. */
export function slotOffsetBytes(region: HeartbeatRegion, nodeId: number): number {
  assert(Number.isInteger(nodeId) && nodeId >= 0 && nodeId < region.slotCount, `${region.name}: slot ${nodeId} outside 0..${region.slotCount - 1}`);
  return region.offsetBytes + nodeId * region.blockBytes;
}

/**
 * Reads one slot where a torn read would lead to a wrong decision (the join probe, our own-slot
 * check): a block with a bad checksum is read again (readStable's bound); one that stays bad is
 * returned as it is, and the caller judges it. Peers' slots in a round are not retried: there a
 * bad checksum is only a missed sample (the kernel's rule, reference/ocfs2.md §4.5), and a slot
 * left torn by a crash must not delay our own write every round.
 */
export async function readSlotStable(region: HeartbeatRegion, nodeId: number, buf?: Buffer): Promise<DecodedO2hbBlock> {
  const b = buf ?? Buffer.alloc(region.blockBytes);
  const where = { device: region.device.name, offsetBytes: slotOffsetBytes(region, nodeId) };
  try {
    return await readStable(region.device, b, where.offsetBytes, (sector) => parseO2hbBlock(sector, where), { preRead: buf !== undefined });
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
    return decodeO2hbBlock(b, where);
  }
}

/**
 * Refuses to join a slot another live node is writing: watches the slot for
 * max(joinProbeMs, a tenth of the writer's dead time, capped at 3 s — long enough to see a
 * kernel node's 2 s seq step) and throws EBUSY if its seq moves with a non-zero generation.
 */
export async function probeSlot(region: HeartbeatRegion, nodeId: number, timing: Timing): Promise<void> {
  const first = await readSlotStable(region, nodeId);
  if (!first.cksumValid || first.seq === 0n || first.generation === 0n) return;
  const probeMs = Math.max(timing.joinProbeMs, Math.min(first.deadMs / 10, JOIN_PROBE_MS_MAX));
  const t0 = performance.now();
  while (performance.now() - t0 < probeMs) {
    await new Promise((r) => setTimeout(r, Math.max(JOIN_PROBE_POLL_MS_MIN, timing.intervalMs / 2)));
    const b = await readSlotStable(region, nodeId);
    if (b.cksumValid && b.generation !== 0n && (b.seq !== first.seq || b.generation !== first.generation)) {
      throw new SanboxError(
        'EBUSY',
        `${region.name}: node ${nodeId} is already heartbeating in its slot (generation ${hex64(b.generation)}, seq moving): refusing to join as node ${nodeId}`,
        { device: region.device.name, offsetBytes: slotOffsetBytes(region, nodeId) },
      );
    }
  }
}

export interface HeartbeatOptions {
  region: HeartbeatRegion;
  nodeId: number;
  generation: bigint;
  timing: Timing;
  membership: MembershipService;
  gate: SelfFencingGate | null;
  log(msg: string): void;
  onSelfFence?(reason: string): void;
}

export class Heartbeat implements WriteLease {
  readonly stats: HeartbeatStats = { rounds: 0, writesOk: 0, writesFailed: 0, bytesRead: 0, bytesWritten: 0 };
  private tickTimer: NodeJS.Timeout | undefined;
  private watchdogTimer: NodeJS.Timeout | undefined;
  private running = false;
  private inflight: Promise<void> | undefined;
  private lastSeq = 0n;
  /** What we last wrote and saw complete; the own-slot check compares the disk against it. */
  private lastWritten: { seq: bigint; generation: bigint } | undefined;
  /** Monotonic start time of the last successful write (or of the join, before the first). */
  private lastOkWriteStartMs = 0;
  /** leaseValidUntilMs on the writes' clock (write-lease.ts), set by leaseChanged at each change of what it derives from. */
  private validUntilNs = MONO_NS_NEVER;
  private readonly readBuf: Buffer;
  fencedReason: string | undefined;

  constructor(private readonly o: HeartbeatOptions) {
    if (o.nodeId < 0 || o.nodeId >= Math.min(o.region.slotCount, O2NM_MAX_NODES)) {
      throw new SanboxError('EINVAL', `${o.region.name}: node ${o.nodeId} has no slot (region has ${o.region.slotCount})`);
    }
    this.readBuf = Buffer.alloc(o.region.slotCount * o.region.blockBytes);
    o.membership.addRegion(o.region.name);
  }

  /** Starts the loop; the first round runs now. Resolves after the first write succeeded. */
  async start(): Promise<void> {
    this.running = true;
    this.lastOkWriteStartMs = performance.now();
    this.leaseChanged();
    this.watchdogTimer = setInterval(() => this.checkSelfFence(), this.o.timing.watchdogMs);
    await this.round();
    if (this.fencedReason !== undefined) throw new SanboxError('EFENCED', `${this.o.region.name}: node ${this.o.nodeId} fenced itself at start: ${this.fencedReason}`);
    if (this.stats.writesOk === 0) {
      this.stop(false);
      throw new SanboxError('EIO', `${this.o.region.name}: node ${this.o.nodeId}: the first heartbeat write failed`);
    }
    this.schedule(performance.now());
  }

  private schedule(roundStartMs: number): void {
    if (!this.running) return;
    // Sleep the interval minus the time the round took, as o2hb does.
    const delay = Math.max(0, this.o.timing.intervalMs - (performance.now() - roundStartMs));
    this.tickTimer = setTimeout(() => {
      const t0 = performance.now();
      void this.round().finally(() => this.schedule(t0));
    }, delay);
  }

  /**
   * Whether this node is past its self-fence deadline (no heartbeat write succeeded for
   * selfFenceMs); past it, the node fences itself here. The provider asks this before every write
   * (DeviceProvider.addLease), so a resumed process writes nothing before noticing it is too late.
   */
  leaseExpired(nowMs: number = performance.now()): boolean {
    return this.checkSelfFence(nowMs);
  }

  /**
   * Up to when leaseExpired answers false (performance.now() ms): the self-fence deadline while
   * running; never after a clean stop; already past once fenced.
   */
  get leaseValidUntilMs(): number {
    if (!this.running) return this.fencedReason !== undefined ? -Infinity : Infinity;
    return this.lastOkWriteStartMs + this.o.timing.selfFenceMs;
  }

  /**
   * leaseValidUntilMs on the clock every write of the node reads (src/disk/write-lease.ts: never
   * later than it). The provider compares its one clock read per write with this field and asks
   * leaseExpired only past it: the same answer, without a call chain or a conversion per write
   * (issue 18, docs/containers.md "where the time goes").
   */
  get leaseValidUntilNs(): bigint {
    return this.validUntilNs;
  }

  /** Called after every change of running, fencedReason or lastOkWriteStartMs (start, a write's success, halt). */
  private leaseChanged(): void {
    this.validUntilNs = msToMonoNs(this.leaseValidUntilMs);
  }

  /** `nowMs`: the clock read for this check (the provider reads it once for all of a node's heartbeats). */
  private checkSelfFence(nowMs: number = performance.now()): boolean {
    if (!this.running) return this.fencedReason !== undefined;
    // The same comparison as leaseValidUntilMs's, so the two never disagree.
    if (nowMs > this.lastOkWriteStartMs + this.o.timing.selfFenceMs) {
      this.selfFence(`no heartbeat write has succeeded for ${Math.round(nowMs - this.lastOkWriteStartMs)} ms (limit ${this.o.timing.selfFenceMs} ms)`);
      return true;
    }
    return false;
  }

  private async round(): Promise<void> {
    if (!this.running) return;
    // A process resumed after a stop must not write before noticing that it is too late.
    if (this.checkSelfFence()) return;
    this.stats.rounds++;
    const r = this.o.region;
    let blocks: DecodedO2hbBlock[] | undefined;
    try {
      blocks = await readSlots(r, this.readBuf);
      this.stats.bytesRead += this.readBuf.length;
    } catch (err) {
      this.o.log(`${r.name}: heartbeat read failed: ${(err as Error).message}`);
    }
    // Again after the read: a process stopped while its read was in flight gets the completion
    // before its watchdog runs, and must not judge its peers dead on a view it is too late to act on.
    if (!this.running || this.checkSelfFence()) return;
    if (blocks !== undefined) {
      if (this.inflight === undefined && this.lastWritten !== undefined) {
        let own = blocks[this.o.nodeId]!;
        if (!own.cksumValid) {
          // Nobody else writes our slot, so a bad checksum is a torn read or an intruder: read again.
          const off = this.o.nodeId * r.blockBytes;
          own = await readSlotStable(r, this.o.nodeId, this.readBuf.subarray(off, off + r.blockBytes));
          blocks[this.o.nodeId] = own;
          if (!this.running) return;
        }
        const exp = this.lastWritten;
        let mismatch: string | undefined;
        if (own.nodeId !== this.o.nodeId && own.seq !== 0n) mismatch = 'Another node is heartbeating in our slot';
        else if (own.generation !== exp.generation) mismatch = 'Heartbeat generation mismatch';
        else if (own.seq !== exp.seq) mismatch = 'Heartbeat sequence mismatch';
        if (mismatch !== undefined) {
          this.selfFence(
            `${mismatch} on ${r.name}: expected (${this.o.nodeId}:${hex64(exp.generation)}, ${exp.seq}), ondisk (${own.nodeId}:${hex64(own.generation)}, ${own.seq})`,
          );
          return;
        }
      }
      this.o.membership.observe(r.name, blocks);
    }
    if (this.inflight === undefined) await this.writeOwn(this.o.generation);
  }

  private async writeOwn(generation: bigint): Promise<void> {
    const r = this.o.region;
    // seq: wall-clock milliseconds, kept strictly increasing; peers only look for a change, and
    // `cluster status` can show the age of a block from a single read.
    const seq = BigInt(Date.now()) > this.lastSeq ? BigInt(Date.now()) : this.lastSeq + 1n;
    this.lastSeq = seq;
    const block = encodeO2hbBlock({ seq, nodeId: this.o.nodeId, generation, deadMs: this.o.timing.deadMs }, r.blockBytes);
    const startMs = performance.now();
    // A node writes only its own slot (o2hb's rule; the own-slot check above depends on it).
    const offsetBytes = slotOffsetBytes(r, this.o.nodeId);
    // Pair assertion: the sector about to be written decodes back to what we meant (a readback
    // check before the write, cheap at one sector per interval).
    const check = decodeO2hbBlock(block, { device: r.device.name, offsetBytes });
    assert(
      check.cksumValid && check.nodeId === this.o.nodeId && check.seq === seq && check.generation === generation,
      `${r.name}: node ${this.o.nodeId} about to write a block that is not its own (node ${check.nodeId}, seq ${check.seq})`,
    );
    const write = r.device.write(block, offsetBytes);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.o.timing.ioTimeoutMs)));
    // Whenever the write lands, even after its timeout, the disk holds this block: the own-slot
    // check must expect it (writes are never overlapped, so completions come in order).
    this.inflight = write.then(
      () => {
        this.lastWritten = { seq, generation };
      },
      () => undefined,
    );
    const inflight = this.inflight;
    void inflight.then(() => {
      if (this.inflight === inflight) this.inflight = undefined;
    });
    try {
      const res = await Promise.race([write.then(() => 'ok' as const), timeout]);
      if (res === 'timeout') {
        this.stats.writesFailed++;
        this.o.log(`${r.name}: heartbeat write did not finish within ${this.o.timing.ioTimeoutMs} ms`);
        return;
      }
      this.stats.writesOk++;
      this.stats.bytesWritten += block.length;
      this.lastWritten = { seq, generation };
      this.lastOkWriteStartMs = startMs;
      this.leaseChanged();
    } catch (err) {
      this.stats.writesFailed++;
      if (isSanboxError(err) && err.code === 'EFENCED') {
        this.selfFence(`our heartbeat write was refused: ${err.message}`);
        return;
      }
      this.o.log(`${r.name}: heartbeat write failed: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Stops all I/O of this node for good: the gate refuses every later write. */
  selfFence(reason: string): void {
    if (this.fencedReason !== undefined) return;
    this.fencedReason = reason;
    this.o.gate?.selfFence(reason);
    this.halt();
    this.o.membership.selfFenced(reason);
    this.o.onSelfFence?.(reason);
  }

  private halt(): void {
    this.running = false;
    this.leaseChanged();
    clearTimeout(this.tickTimer);
    clearInterval(this.watchdogTimer);
  }

  /** Stops the loop. With `clean`, writes a last block with generation 0 so peers see us leave at once. */
  async stop(clean: boolean): Promise<void> {
    const wasRunning = this.running;
    this.halt();
    if (!clean || !wasRunning || this.fencedReason !== undefined) return;
    if (this.inflight !== undefined) await Promise.race([this.inflight, new Promise((r) => setTimeout(r, this.o.timing.ioTimeoutMs))]);
    try {
      await this.writeOwn(0n);
    } catch {
      // Best effort: peers will see us dead by timeout instead.
    }
  }

  get regionName(): string {
    return this.o.region.name;
  }

  get isRunning(): boolean {
    return this.running;
  }
}
