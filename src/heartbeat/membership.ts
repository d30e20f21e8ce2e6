// The one membership service of a node (ARCHITECTURE.md, "One membership per node"): every
// heartbeat region the node writes feeds it, and every layer above (lock manager, filesystem,
// volume manager) takes "node N died" and "node N is fenced" from it. It turns slot events into
// node events, keeps the quorum base, and fences dead nodes (with quorum) before reporting them
// fenced — only then may their locks or journals be taken.

import { hex64 } from '../format/where.js';
import type { Membership, MembershipEvent, MemberView } from './membership-api.js';
import type { Fencer } from './fencer.js';
import { SlotTracker, type DownReason } from './liveness.js';
import { hasQuorum } from './quorum.js';
import type { Timing } from '../timing.js';
import type { DecodedO2hbBlock } from '../format/o2hb-block.js';


interface DeadEntry {
  generation: bigint;
  reason: DownReason;
  atMs: number;
  fenced: boolean;
  fencing: boolean;
  nextTryMs: number;
  failures: number;
  lastError: string | undefined;
}

export interface MembershipOptions {
  localNodeId: number;
  localGeneration: bigint;
  nodeCount: number;
  timing: Timing;
  fencer: Fencer | null;
  log(msg: string): void;
  now?: () => number;
}

export class MembershipService implements Membership {
  readonly localNodeId: number;
  readonly localGeneration: bigint;
  private readonly trackers = new Map<string, SlotTracker[]>();
  private readonly up = new Map<number, bigint>();
  private readonly dead = new Map<number, DeadEntry>();
  private readonly fencedKeys = new Set<string>();
  private readonly base = new Set<number>();
  private readonly listeners = new Set<(ev: MembershipEvent) => void>();
  private readonly now: () => number;
  /** Set once this node has fenced itself; it then writes nothing more. */
  selfFencedReason: string | undefined;
  private stopped = false;

  constructor(private readonly o: MembershipOptions) {
    this.localNodeId = o.localNodeId;
    this.localGeneration = o.localGeneration;
    this.now = o.now ?? (() => performance.now());
    this.base.add(o.localNodeId);
  }

  /** Registers a heartbeat region this node reads; returns its per-slot trackers. */
  addRegion(name: string): void {
    const t: SlotTracker[] = [];
    for (let n = 0; n < this.o.nodeCount; n++) t.push(new SlotTracker(n, this.o.timing.deadMs, this.o.timing.liveChanges));
    this.trackers.set(name, t);
  }

  /**
   * Forgets a region this node stopped reading (it left the region): its trackers would otherwise
   * keep their last view, and a peer last seen live there would never be declared down.
   */
  removeRegion(name: string): void {
    this.trackers.delete(name);
  }

  tracker(region: string, nodeId: number): SlotTracker | undefined {
    return this.trackers.get(region)?.[nodeId];
  }

  /** Feeds one round of slot reads from one region (our own slot is skipped). */
  observe(region: string, blocks: DecodedO2hbBlock[]): void {
    const trackers = this.trackers.get(region);
    if (trackers === undefined || this.stopped) return;
    const nowMs = this.now();
    for (let n = 0; n < Math.min(blocks.length, trackers.length); n++) {
      if (n === this.localNodeId) continue;
      for (const ev of trackers[n]!.observe(blocks[n]!, nowMs)) {
        if (ev.kind === 'up') this.nodeUp(n, ev.generation, nowMs);
        else if (ev.kind === 'down') this.nodeDown(n, ev.generation, ev.reason, nowMs);
        else this.nodeStale(n, ev.generation, nowMs);
      }
    }
    void this.processDeaths();
  }

  private liveInAnyRegion(nodeId: number): boolean {
    for (const t of this.trackers.values()) if (t[nodeId]?.live) return true;
    return false;
  }

  private nodeUp(nodeId: number, generation: bigint, atMs: number): void {
    if (this.up.get(nodeId) === generation) return;
    const d = this.dead.get(nodeId);
    if (d !== undefined && d.generation === generation) {
      // A fenced incarnation cannot come back; one being fenced will find its writes refused.
      if (d.fenced || d.fencing) return;
      // Declared dead but not fenced (no quorum, or the fence kept failing): nothing of it was
      // recovered, so it may simply be alive again (a stopped process that resumed).
      this.o.log(`node ${nodeId} (generation ${hex64(generation)}) moves again before it was fenced`);
      this.dead.delete(nodeId);
    } else if (d !== undefined && d.fenced) {
      this.dead.delete(nodeId);
    }
    this.up.set(nodeId, generation);
    this.base.add(nodeId);
    this.o.log(`node ${nodeId} up (generation ${hex64(generation)})`);
    this.emit({ kind: 'up', nodeId, generation, atMs });
  }

  private nodeDown(nodeId: number, generation: bigint, reason: DownReason, atMs: number): void {
    if (this.up.get(nodeId) !== generation || this.liveInAnyRegion(nodeId)) return;
    this.up.delete(nodeId);
    this.dead.set(nodeId, { generation, reason, atMs, fenced: false, fencing: false, nextTryMs: 0, failures: 0, lastError: undefined });
    this.o.log(`node ${nodeId} down (generation ${hex64(generation)}, ${reason})`);
    this.emit({ kind: 'down', nodeId, generation, atMs });
  }

  /**
   * An incarnation we never saw alive whose block has not moved for the dead time: dead, and to be
   * fenced like any other death (it may have crashed holding locks before we started). It joins
   * the quorum base like any node we know of (docs/heartbeat.md, "One rule"): a node alone does
   * not get to fence a stale peer that a node with a larger view could not fence either.
   */
  private nodeStale(nodeId: number, generation: bigint, atMs: number): void {
    if (this.up.has(nodeId) || this.liveInAnyRegion(nodeId)) return;
    const d = this.dead.get(nodeId);
    if (d !== undefined && d.generation === generation) return;
    this.dead.set(nodeId, { generation, reason: 'stale', atMs, fenced: false, fencing: false, nextTryMs: 0, failures: 0, lastError: undefined });
    this.base.add(nodeId);
    this.o.log(`node ${nodeId} down (generation ${hex64(generation)}, stale: its block has not changed since we started watching)`);
    this.emit({ kind: 'down', nodeId, generation, atMs });
  }

  /** Fences every dead, unfenced node, if we have quorum. Safe to call often. */
  async processDeaths(): Promise<void> {
    if (this.stopped || this.selfFencedReason !== undefined) return;
    for (const [nodeId, d] of this.dead) {
      if (d.fenced || d.fencing || this.now() < d.nextTryMs) continue;
      // A clean leave is no death to act on: the node stopped writing by itself (generation 0), so
      // recording its key and dropping it from the quorum base needs no quorum (as o2quo drops a
      // node that unmounted cleanly). Every other death waits for quorum.
      if (d.reason !== 'left' && !this.hasQuorum()) {
        if (d.nextTryMs === 0) this.o.log(`node ${nodeId} is dead but this node has no quorum: not fencing or recovering it`);
        d.nextTryMs = this.now() + this.o.timing.intervalMs;
        continue;
      }
      d.fencing = true;
      try {
        let steps: string[] = [];
        let durationMs = 0;
        if (this.o.fencer !== null) ({ steps, durationMs } = await this.o.fencer.fence(nodeId, d.generation, { leftCleanly: d.reason === 'left' }));
        if (this.stopped) return;
        d.fenced = true;
        this.fencedKeys.add(`${nodeId}:${d.generation}`);
        if (this.up.get(nodeId) === d.generation) this.up.delete(nodeId);
        // A new incarnation seen up before its old one was fenced stays in the base: it counts
        // for quorum like any live member.
        if (!this.up.has(nodeId)) this.base.delete(nodeId);
        // A clean leave is "left" everywhere (logs, events, status), never "fenced": its key is
        // recorded as fenced only so that no late write of it can land.
        if (d.reason === 'left') {
          this.o.log(`node ${nodeId} left (generation ${hex64(d.generation)}): ${steps.join(', ') || 'nothing to record'}`);
          this.emit({ kind: 'left', nodeId, generation: d.generation, atMs: this.now() });
        } else {
          this.o.log(`node ${nodeId} fenced (generation ${hex64(d.generation)}) in ${durationMs.toFixed(1)} ms: ${steps.join(', ') || 'no fence agent'}`);
          this.emit({ kind: 'fenced', nodeId, generation: d.generation, atMs: this.now() });
        }
      } catch (err) {
        // Retry with a bounded backoff (one interval, doubling, at most timing.fenceRetryMsMax); log a
        // failure when it first happens or changes, not on every retry.
        d.failures++;
        d.nextTryMs = this.now() + Math.min(this.o.timing.intervalMs * 2 ** Math.min(d.failures - 1, 16), this.o.timing.fenceRetryMsMax);
        const msg = (err as Error).message;
        if (msg !== d.lastError) this.o.log(`fencing node ${nodeId} failed, will retry: ${msg}`);
        d.lastError = msg;
      } finally {
        d.fencing = false;
      }
    }
  }

  /** Called by the heartbeat writer when this node stops all its I/O. */
  selfFenced(reason: string): void {
    if (this.selfFencedReason !== undefined) return;
    this.selfFencedReason = reason;
    this.o.log(`SELF-FENCED: ${reason}`);
    this.emit({ kind: 'fenced', nodeId: this.localNodeId, generation: this.localGeneration, atMs: this.now() });
  }

  members(): MemberView[] {
    const out: MemberView[] = [];
    for (let n = 0; n < this.o.nodeCount; n++) {
      if (n === this.localNodeId) {
        out.push({ nodeId: n, generation: this.localGeneration, state: this.selfFencedReason === undefined ? 'up' : 'fenced' });
        continue;
      }
      const g = this.up.get(n);
      if (g !== undefined) {
        out.push({ nodeId: n, generation: g, state: 'up' });
        continue;
      }
      const d = this.dead.get(n);
      if (d !== undefined) out.push({ nodeId: n, generation: d.generation, state: d.reason === 'left' ? 'left' : d.fenced ? 'fenced' : 'dead' });
      else out.push({ nodeId: n, generation: 0n, state: 'free' });
    }
    return out;
  }

  /** Per peer and region: the longest gap between seq changes seen while it was live. */
  maxGaps(): { region: string; nodeId: number; maxGapMs: number }[] {
    const out: { region: string; nodeId: number; maxGapMs: number }[] = [];
    for (const [region, ts] of this.trackers) for (const tr of ts) if (tr.maxGapMs > 0) out.push({ region, nodeId: tr.nodeId, maxGapMs: Math.round(tr.maxGapMs) });
    return out;
  }

  hasQuorum(): boolean {
    if (this.selfFencedReason !== undefined) return false;
    const alive = new Set<number>(this.up.keys());
    alive.add(this.localNodeId);
    return hasQuorum(this.base, alive);
  }

  isFenced(nodeId: number, generation: bigint): boolean {
    return this.fencedKeys.has(`${nodeId}:${generation}`);
  }

  subscribe(listener: (ev: MembershipEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private emit(ev: MembershipEvent): void {
    for (const l of [...this.listeners]) {
      try {
        l(ev);
      } catch (err) {
        this.o.log(`membership listener failed: ${(err as Error).message}`);
      }
    }
  }

  stop(): void {
    this.stopped = true;
  }
}
