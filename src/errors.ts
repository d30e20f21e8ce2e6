// Typed errors shared by every layer. Each names the device (or file) and, where there is one,
// the byte offset, so a one-line message tells the user exactly where the problem is.

export type ErrorCode =
  | 'EBOUNDS' // I/O outside a device or view
  | 'EALIGN' // sector I/O that is not sector-aligned
  | 'EIO' // the device (or an injected fault) failed the I/O
  | 'ESHORT' // a read or write transferred fewer bytes than asked and could not be completed
  | 'EBUSY' // the device is in use by another process
  | 'EEXIST' // the target exists and --force was not given
  | 'ENOENT' // no such device
  | 'EFENCED' // this node has been fenced off the device
  | 'ECLOSED' // I/O on a closed device
  | 'EFORMAT' // bad magic, version, checksum, size or range in an on-disk record
  | 'EUSAGE' // bad command-line input
  | 'EINVAL' // a bad argument to a library call
  | 'EAGAIN' // a lock request with NOQUEUE that would have to wait (DLM -EAGAIN)
  | 'EDEADLK' // a lock conversion that would deadlock; it was cancelled (DLM -EDEADLK)
  | 'ETIMEDOUT' // a bounded wait ran out (e.g. a lock request); nothing was left half-done
  | 'ECANCELED' // the caller cancelled a wait (AbortSignal); the request was withdrawn
  | 'ENOSPC'; // a fixed-size on-disk table is full (e.g. a node's lock records)

export class SanboxError extends Error {
  readonly code: ErrorCode;
  readonly device: string | undefined;
  readonly offsetBytes: number | undefined;

  constructor(code: ErrorCode, message: string, opts: { device?: string; offsetBytes?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.device = opts.device;
    this.offsetBytes = opts.offsetBytes;
  }
}

/** Any failure of a device operation. */
export class DiskError extends SanboxError {}

/** A corrupt or foreign on-disk record: bad magic, version, checksum, size or range. */
export class FormatError extends SanboxError {
  constructor(message: string, opts: { device?: string; offsetBytes?: number; cause?: unknown } = {}) {
    super('EFORMAT', message, opts);
  }
}

/** Bad input on the command line; the CLI exits 2 for these. */
export class UsageError extends SanboxError {
  constructor(message: string) {
    super('EUSAGE', message);
  }
}

export function isSanboxError(err: unknown): err is SanboxError {
  return err instanceof SanboxError;
}

/** Invariant check: a failed assertion is a bug in sanbox, never a user error. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`sanbox invariant violated: ${message}`);
}
