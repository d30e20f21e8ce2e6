// The liveness decision for one slot, o2hb-style (reference/ocfs2.md §4.5) but judged on the
// observer's monotonic clock: a slot is up once its seq moves, and dead once its seq has not moved
// for max(our dead time, the writer's hb_dead_ms) (ARCHITECTURE.md, "One membership per node").
// So a sanbox node writing every 100 ms and a kernel node writing wall-clock seconds every 2 s
// (dead_ms 62000) share a region without false deaths. Pure: time is passed in.

import type { DecodedO2hbBlock } from '../format/o2hb-block.js';

export type DownReason = 'timeout' | 'left' | 'generation' | 'cleared' | 'stale';

export type SlotEvent =
  | { kind: 'up'; nodeId: number; generation: bigint; deadMs: number }
  | { kind: 'down'; nodeId: number; generation: bigint; reason: DownReason }
  /** A slot holding an incarnation we never saw alive, unchanged for the dead time since we
   * started watching it (sanlock treats such a host as dead the same way): it must be fenced
   * before anything it held is taken. */
  | { kind: 'stale'; nodeId: number; generation: bigint };

export class SlotTracker {
  private seen = false;
  private seq = 0n;
  private generation = 0n;
  private lastChangeMs = 0;
  private changes = 0;
  private writerDeadMs = 0;
  live = false;
  /** Bad checksums read while live (the kernel logs "has written a bad crc"). */
  badCrcCount = 0;
  /** Longest observed gap between seq changes while live: how close this peer came to "dead". */
  maxGapMs = 0;
  /** The generation last reported stale (reported once per incarnation). */
  private staleReported: bigint | undefined;

  constructor(
    readonly nodeId: number,
    private readonly ourDeadMs: number,
    private readonly liveChanges: number,
  ) {}

  get currentGeneration(): bigint {
    return this.generation;
  }
  get currentSeq(): bigint {
    return this.seq;
  }
  /** Observer-clock ms since the seq last moved (0 before the first read). */
  sinceChangeMs(nowMs: number): number {
    return this.seen ? nowMs - this.lastChangeMs : 0;
  }
  get deadAfterMs(): number {
    return Math.max(this.ourDeadMs, this.writerDeadMs);
  }

  observe(b: DecodedO2hbBlock, nowMs: number): SlotEvent[] {
    const events: SlotEvent[] = [];
    if (!b.cksumValid) {
      // Not live: ignore silently. Live: a missed sample; the dead timer keeps running.
      if (this.live) {
        this.badCrcCount++;
        this.checkDead(nowMs, events);
      }
      return events;
    }
    if (!this.seen) {
      // Baseline: a block we have not seen change proves nothing about a live writer.
      this.seen = true;
      this.seq = b.seq;
      this.generation = b.generation;
      this.lastChangeMs = nowMs;
      this.writerDeadMs = b.deadMs;
      return events;
    }
    if (b.seq === 0n || b.generation === 0n) {
      // Slot cleared, or the writer left cleanly (generation 0 on its last write, §4.4).
      if (this.live) events.push({ kind: 'down', nodeId: this.nodeId, generation: this.generation, reason: b.seq === 0n ? 'cleared' : 'left' });
      this.live = false;
      this.changes = 0;
      this.seq = b.seq;
      this.generation = b.generation;
      this.lastChangeMs = nowMs;
      return events;
    }
    if (b.generation !== this.generation) {
      // A new incarnation: the old one is gone (it could only be replaced after being dead or
      // leaving). Its first change after this one brings the new generation up.
      if (this.live) events.push({ kind: 'down', nodeId: this.nodeId, generation: this.generation, reason: 'generation' });
      this.live = false;
      this.changes = 0;
      this.generation = b.generation;
      this.seq = b.seq;
      this.lastChangeMs = nowMs;
      this.writerDeadMs = b.deadMs;
      return events;
    }
    if (b.seq !== this.seq) {
      if (this.live) this.maxGapMs = Math.max(this.maxGapMs, nowMs - this.lastChangeMs);
      this.seq = b.seq;
      this.lastChangeMs = nowMs;
      this.writerDeadMs = b.deadMs;
      this.changes++;
      if (!this.live && this.changes >= this.liveChanges) {
        this.live = true;
        events.push({ kind: 'up', nodeId: this.nodeId, generation: this.generation, deadMs: b.deadMs });
      }
      return events;
    }
    this.checkDead(nowMs, events);
    if (
      !this.live &&
      this.changes === 0 &&
      this.seq !== 0n &&
      this.generation !== 0n &&
      this.staleReported !== this.generation &&
      nowMs - this.lastChangeMs > this.deadAfterMs
    ) {
      this.staleReported = this.generation;
      events.push({ kind: 'stale', nodeId: this.nodeId, generation: this.generation });
    }
    return events;
  }

  private checkDead(nowMs: number, events: SlotEvent[]): void {
    if (this.live && nowMs - this.lastChangeMs > this.deadAfterMs) {
      this.live = false;
      this.changes = 0;
      events.push({ kind: 'down', nodeId: this.nodeId, generation: this.generation, reason: 'timeout' });
    }
  }
}
