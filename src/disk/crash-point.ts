// Crash points for the crash tests (issue 17 item 6): a process started with
// SANBOX_CRASH_AT=SIDE-OP:K[@DEVICE] sends itself SIGKILL right before or right after the K-th
// write or flush it issues on a device whose name contains DEVICE (any device without it). That is
// a real kill -9 of a separate OS process at an exact I/O, so a driver can enumerate every point of
// an operation and check what recovery makes of each (test/journal-crash.test.ts,
// test/soak-journal.ts, docs/journal.md "Crash tests").
//
//   SIDE   before | after      the I/O is not issued at all | it returned (the bytes are in the
//                              kernel's page cache, which a killed process cannot lose)
//   OP     write | flush | io  which I/Os are counted (io: writes and flushes together)
//   K      1, 2, …             the K-th counted I/O of this process (one counter for all devices)
//
// Read in one place: openDevice (src/disk/open.ts) wraps every device it opens; unset, nothing is
// wrapped and nothing changes. Heartbeat writes never flush, so in a node process only `flush`
// counts are independent of timing; a process without a heartbeat (sanbox recover, the tests'
// crash child) counts writes deterministically too.

import { DiskError } from '../errors.js';
import type { BlockDevice, SectorSize } from './device.js';

export const CRASH_AT_ENV = 'SANBOX_CRASH_AT';

export type CrashSide = 'before' | 'after';
export type CrashOp = 'write' | 'flush' | 'io';

export interface CrashPoint {
  side: CrashSide;
  op: CrashOp;
  /** 1-based index among the counted I/Os of this process. */
  index: number;
  /** Only devices whose name contains this string are counted. */
  device?: string;
}

const SPEC = /^(before|after)-(write|flush|io):([1-9]\d*)(?:@(.+))?$/;

/** Parses SIDE-OP:K[@DEVICE]; anything else is refused (a typo must not silently disable the crash). */
export function parseCrashPoint(text: string): CrashPoint {
  const m = SPEC.exec(text.trim());
  const index = m === null ? NaN : Number(m[3]);
  if (m === null || !Number.isSafeInteger(index)) {
    throw new DiskError('EINVAL', `${CRASH_AT_ENV}='${text}' is not SIDE-OP:K[@DEVICE] (SIDE before|after, OP write|flush|io, K ≥ 1)`);
  }
  return { side: m[1] as CrashSide, op: m[2] as CrashOp, index, ...(m[4] !== undefined ? { device: m[4] } : {}) };
}

export function formatCrashPoint(p: CrashPoint): string {
  return `${p.side}-${p.op}:${p.index}${p.device !== undefined ? `@${p.device}` : ''}`;
}

/** Counted I/Os of this process so far (one counter: the crash point names a process-wide index). */
let counted = 0;

/** Kills this process at once (the kernel delivers a signal a process sends itself before kill returns). */
function die(): never {
  process.kill(process.pid, 'SIGKILL');
  // Not reached; kept so the type system knows nothing runs after the kill.
  throw new Error('SIGKILL did not end the process');
}

/** A device that kills its process at the crash point; everything else passes through. */
export class CrashPointDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly sectorSizeBytes: SectorSize;
  readonly readOnly: boolean;
  private readonly counts: boolean;

  constructor(private readonly inner: BlockDevice, private readonly point: CrashPoint) {
    this.name = inner.name;
    this.sizeBytes = inner.sizeBytes;
    this.sectorSizeBytes = inner.sectorSizeBytes;
    this.readOnly = inner.readOnly;
    this.counts = point.device === undefined || inner.name.includes(point.device);
  }

  /** Runs `io`, dying before or after it when it is the crash point's I/O. */
  private async at(op: 'write' | 'flush', io: () => Promise<void>): Promise<void> {
    const hit = this.counts && (this.point.op === 'io' || this.point.op === op) && ++counted === this.point.index;
    if (hit && this.point.side === 'before') die();
    await io();
    if (hit) die();
  }

  read(buf: Buffer, offsetBytes: number): Promise<void> {
    return this.inner.read(buf, offsetBytes);
  }
  write(buf: Buffer, offsetBytes: number): Promise<void> {
    return this.at('write', () => this.inner.write(buf, offsetBytes));
  }
  flush(): Promise<void> {
    return this.at('flush', () => this.inner.flush());
  }
  discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    return this.inner.discard(offsetBytes, lengthBytes);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

/** Wraps `dev` when SANBOX_CRASH_AT is set (the one place it is read); returns it unchanged otherwise. */
export function wrapCrashPoint(dev: BlockDevice, env: NodeJS.ProcessEnv = process.env): BlockDevice {
  const spec = env[CRASH_AT_ENV];
  if (spec === undefined || spec === '') return dev;
  return new CrashPointDevice(dev, parseCrashPoint(spec));
}
