// Cached reads of one resource's window (rows h and h+1 of an area: 2 x maxNodes cells,
// contiguous, one I/O). Only sectors whose bytes changed since the last read of the same window
// are decoded; a torn or corrupt sector is re-read (src/disk/stable-read.ts) and never trusted.
// The cache is bounded in bytes, so a node touching many resources keeps a bounded footprint.

import type { InCallIo } from './in-call-io.js';
import { readStable } from '../disk/stable-read.js';
import { RECORD_BYTES, WINDOW_ROWS, type LockspaceLayout } from '../format/lockspace.js';
import type { Where } from '../format/where.js';

/**
 * Bytes of window reads kept for change detection: 4 MiB holds 256 windows of an 8-node
 * lockspace or 8 of a 255-node one; a window not cached is simply decoded in full.
 */
export const WINDOW_CACHE_BYTES_MAX = 4 * 1024 * 1024;
/** Always keep at least this many windows (the hand-off and bast paths re-read the same few). */
const WINDOW_CACHE_MIN = 4;

interface Cached<C> {
  raw: Buffer;
  cells: (C | undefined)[];
}

export type CellDecoder<C> = (sector: Buffer, expect: { nodeId: number; row: number }, where: Where) => C | undefined;

export class CellWindows<C> {
  private readonly cache = new Map<number, Cached<C>>();
  private spare: Buffer;
  /** Raw buffers of evicted windows, reused as spares: reading many windows allocates nothing. */
  private readonly free: Buffer[] = [];
  private readonly windowBytes: number;
  private readonly maxWindows: number;

  constructor(
    private readonly io: InCallIo,
    private readonly layout: LockspaceLayout,
    private readonly areaOffsetBytes: number,
    private readonly decode: CellDecoder<C>,
    private readonly stats: { tornRetries: number; sectorsReparsed: number; windowReads: number },
    /** The reader's own column: it knows its cells from memory, so they are never decoded. */
    private readonly skipNode: number,
  ) {
    this.windowBytes = WINDOW_ROWS * layout.rowBytes;
    this.spare = Buffer.alloc(this.windowBytes);
    this.maxWindows = Math.max(WINDOW_CACHE_MIN, Math.floor(WINDOW_CACHE_BYTES_MAX / this.windowBytes));
  }

  /** Whole-window comparison that ignores the skipped column (ours: it changes with every write of ours). */
  private sameExceptSkipped(a: Buffer, b: Buffer): boolean {
    const { layout } = this;
    if (this.skipNode < 0) return a.equals(b);
    const s = layout.sectorSizeBytes;
    const ownStart = this.skipNode * s;
    for (let r = 0; r < WINDOW_ROWS; r++) {
      const base = r * layout.rowBytes;
      if (a.compare(b, base, base + ownStart, base, base + ownStart) !== 0) return false;
      const after = base + ownStart + s;
      const end = base + layout.rowBytes;
      if (a.compare(b, after, end, after, end) !== 0) return false;
    }
    return true;
  }

  /** The cells of the last read of this window, if still cached (for error messages). */
  peek(bucket: number): (C | undefined)[] | undefined {
    return this.cache.get(bucket)?.cells;
  }

  /** Cells of rows h..h+1, index (row - h) * maxNodes + node; undefined = never written (or ours). */
  async read(bucket: number): Promise<(C | undefined)[]> {
    const { layout } = this;
    const s = layout.sectorSizeBytes;
    const n = layout.header.maxNodes;
    const offsetBytes = this.areaOffsetBytes + bucket * layout.rowBytes;
    const buf = this.spare;
    await this.io.read(buf, offsetBytes);
    this.stats.windowReads++;
    // Eviction is first-in first-out: refreshing a hit (delete + set) would make V8's Map rehash
    // under churn, at a cost that grows with the cache's size.
    const entry = this.cache.get(bucket);
    if (entry !== undefined && this.sameExceptSkipped(buf, entry.raw)) return entry.cells;
    const cells: (C | undefined)[] = entry?.cells ?? new Array(WINDOW_ROWS * n).fill(undefined);
    const old = entry?.raw;
    try {
      for (let i = 0; i < WINDOW_ROWS * n; i++) {
        const a = i * s;
        if (i % n === this.skipNode) continue;
        if (old !== undefined && buf.compare(old, a, a + RECORD_BYTES, a, a + RECORD_BYTES) === 0) continue;
        const expect = { nodeId: i % n, row: bucket + Math.floor(i / n) };
        const where = { device: this.io.device.name, offsetBytes: offsetBytes + a };
        cells[i] = await readStable(this.io.device, buf.subarray(a, a + s), offsetBytes + a, (b) => this.decode(b, expect, where), {
          preRead: true,
          onRetry: () => this.stats.tornRetries++,
        });
        this.stats.sectorsReparsed++;
      }
    } catch (err) {
      // `cells` is partly from this read: forget the window, decode it in full next time.
      this.cache.delete(bucket);
      throw err;
    }
    if (entry !== undefined) entry.raw = buf;
    else this.cache.set(bucket, { raw: buf, cells });
    while (this.cache.size > this.maxWindows) {
      const oldest = this.cache.keys().next().value as number;
      this.free.push(this.cache.get(oldest)!.raw);
      this.cache.delete(oldest);
    }
    this.spare = old ?? this.free.pop() ?? Buffer.alloc(this.windowBytes);
    return cells;
  }
}
