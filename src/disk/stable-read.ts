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
 * magnitude while staying well below the local preset's 100 ms heartbeat interval (src/timing.ts).
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
  /**
   * The same FormatError message twice in a row means the damage is on disk: report it at once
   * instead of using the whole bound. For multi-sector structures read in one go (a PV's label,
   * mda headers and text), whose torn reads differ from read to read. Not for single records: a
   * slow writer can leave the same torn bytes visible for two reads.
   */
  sameErrorIsDamage?: boolean;
  /** Called before each re-read, e.g. to count torn reads in a component's stats. */
  onRetry?(err: FormatError, attempt: number): void;
}

/** The pause before the next attempt after `err`, or `err` thrown when it is not worth retrying. */
function pauseBeforeRetry(err: unknown, attempt: number, previous: string | undefined, opts: StableReadOptions): number {
  if (!(err instanceof FormatError) || attempt > TORN_READ_RETRIES_MAX || (opts.sameErrorIsDamage === true && err.message === previous)) throw err;
  opts.onRetry?.(err, attempt);
  return tornReadPauseMs(attempt);
}

/**
 * Runs `once` (a read and decode) until it returns. A FormatError (a torn or corrupt record) makes
 * it pause and run again, at most TORN_READ_RETRIES_MAX times; then the last FormatError is
 * thrown. Any other error (an I/O error, a bug) is thrown at once.
 */
export async function retryTorn<T>(once: () => Promise<T>, opts: StableReadOptions = {}): Promise<T> {
  let previous: string | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return await once();
    } catch (err) {
      await sleepMs(pauseBeforeRetry(err, attempt, previous, opts));
      previous = (err as Error).message;
    }
  }
}

/** Reads `buf.length` bytes at `offsetBytes` and decodes them, under retryTorn's bound. */
export async function readStable<T>(device: BlockDevice, buf: Buffer, offsetBytes: number, decode: (record: Buffer) => T, opts: StableReadOptions = {}): Promise<T> {
  let read = opts.preRead !== true;
  return retryTorn(async () => {
    if (read) await device.read(buf, offsetBytes);
    read = true;
    return decode(buf);
  }, opts);
}

/**
 * readStable for synchronous readers (the fence gate checks the reservations inside a synchronous
 * write): `readSync` fills `buf` from the record's place. Same bound; the pauses block the thread,
 * which is what that path already does while it waits for its lock files.
 */
export function readStableSync<T>(readSync: (buf: Buffer) => void, buf: Buffer, decode: (record: Buffer) => T, opts: StableReadOptions = {}): T {
  if (opts.preRead !== true) readSync(buf);
  let previous: string | undefined;
  for (let attempt = 1; ; attempt++) {
    try {
      return decode(buf);
    } catch (err) {
      sleepSyncMs(pauseBeforeRetry(err, attempt, previous, opts));
      previous = (err as Error).message;
      readSync(buf);
    }
  }
}
