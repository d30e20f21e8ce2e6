// One torn-read retry for coordination sectors (heartbeat slots, node records, reservations,
// lockspace records). Those sectors are rewritten by other processes while we read them: a read
// that overlaps a write can return half old and half new bytes (buffered file I/O does not make
// a read atomic against a pwrite, and an NBD server need not either), and a fault rule can tear a
// write. A torn record fails its checksum, so the decoder throws FormatError; reading the sector
// again a moment later sees the write finished. Only a record that stays bad for the whole bound
// is reported: then the damage is on disk (a writer that crashed mid-write, or corruption).

import { assert, FormatError } from '../errors.js';
import type { BlockDevice } from './device.js';
import { sleepMs, sleepSyncMs } from './sleep.js';

/**
 * Re-reads of one record before its FormatError is reported. One sector write lasts microseconds
 * on a file and one round trip over NBD; the pauses before the re-reads grow 1, 2, … 8 ms
 * (TORN_READ_PAUSE_MS_TOTAL = 36 ms in all), which outlasts any write in flight by orders of
 * magnitude while staying well below the shortest heartbeat interval (src/heartbeat/timing.ts).
 */
export const TORN_READ_RETRIES_MAX = 8;

/** Pause before re-read number `attempt` (1-based): `attempt` ms. */
export function tornReadPauseMs(attempt: number): number {
  assert(Number.isInteger(attempt) && attempt >= 1 && attempt <= TORN_READ_RETRIES_MAX, `torn-read attempt ${attempt} outside 1..${TORN_READ_RETRIES_MAX}`);
  return attempt;
}

/** The longest time readStable spends pausing: the sum of every pause. */
export const TORN_READ_PAUSE_MS_TOTAL = (TORN_READ_RETRIES_MAX * (TORN_READ_RETRIES_MAX + 1)) / 2;

export interface StableReadOptions {
  /** `buf` already holds a read of this range (part of a bulk read): decode it before reading again. */
  preRead?: boolean;
  /** Called before each re-read, e.g. to count torn reads in a component's stats. */
  onRetry?(err: FormatError, attempt: number): void;
}

/**
 * Reads `buf.length` bytes at `offsetBytes` and decodes them. A FormatError from `decode` (a torn
 * or corrupt record) makes it pause and read again, at most TORN_READ_RETRIES_MAX times; then the
 * last FormatError is thrown. Any other error (an I/O error, a bug) is thrown at once.
 */
export async function readStable<T>(device: BlockDevice, buf: Buffer, offsetBytes: number, decode: (record: Buffer) => T, opts: StableReadOptions = {}): Promise<T> {
  if (opts.preRead !== true) await device.read(buf, offsetBytes);
  for (let attempt = 1; ; attempt++) {
    const r = decodeOrPause(buf, decode, attempt, opts);
    if ('value' in r) return r.value;
    await sleepMs(r.pauseMs);
    await device.read(buf, offsetBytes);
  }
}

/** One decode of the retry loop: the record, or how long to pause before reading it again (throws past the bound). */
function decodeOrPause<T>(buf: Buffer, decode: (record: Buffer) => T, attempt: number, opts: StableReadOptions): { value: T } | { pauseMs: number } {
  try {
    return { value: decode(buf) };
  } catch (err) {
    if (!(err instanceof FormatError) || attempt > TORN_READ_RETRIES_MAX) throw err;
    opts.onRetry?.(err, attempt);
    return { pauseMs: tornReadPauseMs(attempt) };
  }
}

/**
 * readStable for synchronous readers (the fence gate checks the reservations inside a synchronous
 * write): `readSync` fills `buf` from the record's place. Same bound; the pauses block the thread,
 * which is what that path already does while it waits for its lock files.
 */
export function readStableSync<T>(readSync: (buf: Buffer) => void, buf: Buffer, decode: (record: Buffer) => T, opts: StableReadOptions = {}): T {
  if (opts.preRead !== true) readSync(buf);
  for (let attempt = 1; ; attempt++) {
    const r = decodeOrPause(buf, decode, attempt, opts);
    if ('value' in r) return r.value;
    sleepSyncMs(r.pauseMs);
    readSync(buf);
  }
}
