// A block device that is an NBD client: the disk lives on an NBD server (nbdkit, qemu-nbd,
// nbd-server) and every read, write, flush and discard is a request over one TCP or Unix socket.
// This is how node processes on several machines share one disk, as on a SAN.
//
// - No data is cached here: every read goes to the server, so two clients of one export see each
//   other's completed writes at once. (Whether the *server* caches is the server's business; nbdkit's
//   file plugin reads and writes one file, which all its connections share through the page cache.)
// - Requests are pipelined: up to INFLIGHT_MAX requests (INFLIGHT_BYTES_MAX bytes) are on the wire
//   at once, each with its own cookie; replies may come back in any order. At most NBD_WAITERS_MAX
//   more wait for room; past that a request is refused (EAGAIN) rather than queued without bound.
// - The hot path is built for line rate (issue 16; docs/nbd.md, "Where the time went"): the data of
//   a READ reply is received by the kernel straight into the caller's buffer (net's `onread`), one
//   watchdog timer covers every request's timeout, a request alone on the wire (QD1) is written at
//   once while the requests of a busy tick leave together in one writev, and a one-request call
//   allocates as little as it can (docs/nbd.md, "Small requests at QD1": garbage was most of the
//   client's own cost per request).
// - Every request has a timeout. A timeout, a lost connection or a protocol violation is final:
//   every outstanding request fails, later I/O fails with the same reason, and there is no silent
//   reconnect. That is what makes fencing at the server work: a node whose connection was cut
//   cannot write again through this device (ARCHITECTURE.md, "Over NBD the target does the refusing").
// - A write that fails in any of those ways says that it may or may not have landed: nothing claims
//   a success that the server did not confirm.
//
// The wire format is in src/format/nbd-protocol.ts; this file holds the socket, the handshake
// sequence and the request bookkeeping.
//
// URIs (after the NBD URI convention): nbd://HOST[:PORT]/[EXPORT] and
// nbd+unix:///[EXPORT]?socket=PATH, plus our query parameters timeout=DURATION (I/O timeout) and
// connect-timeout=DURATION.

import net from 'node:net';
import { DiskError, FormatError } from '../errors.js';
import * as P from '../format/nbd-protocol.js';
import { parseDurationMs } from '../units.js';
import { checkRange, checkWritable, type BlockDevice, type SectorSize } from './device.js';
import type { OpenOptions } from './file-disk.js';
import { OPEN_GATE, type WriteGate } from './write-gate.js';
import { LOCAL_TIMING, NBD_CONNECT_TIMEOUT_MS_DEFAULT } from '../timing.js';
export { NBD_CONNECT_TIMEOUT_MS_DEFAULT };

/** Default I/O timeout (the local preset's nbdIoTimeoutMs): loopback requests take ~50 µs; a server silent this long is gone. */
export const NBD_IO_TIMEOUT_MS_DEFAULT = LOCAL_TIMING.nbdIoTimeoutMs;
/** Requests on the wire at once. nbdkit serves 16 in parallel by default; more just queue there. */
const INFLIGHT_MAX = 64;
/** Bytes of request data on the wire at once, so a big write cannot buffer unbounded memory. */
const INFLIGHT_BYTES_MAX = 64 * 1024 * 1024;
/** Our cap on one READ/WRITE payload (the spec's default maximum; a server may advertise less). */
const PAYLOAD_MAX_BYTES = P.DEFAULT_PAYLOAD_MAX_BYTES;
/** Largest range in one TRIM or WRITE_ZEROES request (they carry no payload; 1 GiB is well inside u32). */
const RANGE_REQUEST_MAX_BYTES = 1024 * 1024 * 1024;
/** Zero buffer for discards on servers without WRITE_ZEROES. */
const ZERO_CHUNK_BYTES = 1024 * 1024;
/** Bound on the option replies to one NBD_OPT_GO (a few info items are normal). */
const OPTION_REPLIES_MAX = 64;
/**
 * Requests that may wait for room in the pipeline (beyond the INFLIGHT_MAX on the wire). Large I/O
 * is split at most INFLIGHT_MAX parts at a time, so only callers that issue I/O without waiting
 * for it reach this; 16 pipelines' worth is far beyond any sanbox caller, and past it memory would
 * grow without bound, so the request is refused instead (issue 14, item 6).
 */
export const NBD_WAITERS_MAX = 16 * INFLIGHT_MAX;
/**
 * Socket reads land in a scratch buffer of this size (Node's own default read size), except the
 * data of a READ reply, which is received straight into the caller's buffer.
 */
export const RECV_SCRATCH_BYTES = 64 * 1024;
/**
 * Receive in place only when at least this much of a reply's data is missing: below it, one more
 * read syscall costs more than copying the bytes, and a shared scratch read can take in several
 * pipelined replies at once.
 */
export const DIRECT_RECV_MIN_BYTES = 16 * 1024;
/**
 * What a READ reply's data is preceded by: a structured data chunk's header and offset, or a simple
 * reply's header. When every request on the wire is a READ whose data is received in place, a socket
 * read at the start of a reply takes only this much into the scratch buffer, so none of the data is
 * copied out of it: the read fills its buffer exactly, and libuv reads again at once, without
 * waiting for the socket, into the buffer given next, the caller's (docs/nbd.md, "1 MiB requests":
 * copying the first 64 KiB of every 1 MiB reply out of the scratch buffer was the client's largest
 * user-space cost). One more read(2) per reply, no copy.
 */
const READ_REPLY_HEAD_BYTES = { structured: P.STRUCTURED_HEADER_BYTES + 8, simple: P.SIMPLE_REPLY_BYTES } as const;
/**
 * A request sent on its own copies a payload up to this size behind its header and leaves in one
 * write(2); a larger one goes out with its header in one writev instead of being copied. (Copying
 * 16 KiB costs about a microsecond, less than Node's cork/writev path; a 1 MiB copy would not.)
 */
const SEND_COPY_MAX_BYTES = 16 * 1024;
/**
 * The buffer a request sent at once is encoded into, reused while the kernel takes each write
 * whole (a fresh buffer per request was a real allocation above Node's 4 KiB pool size, so every
 * 4 KiB write made garbage; docs/nbd.md, "Writes at QD1").
 */
const SEND_BUFFER_BYTES = P.REQUEST_HEADER_BYTES + SEND_COPY_MAX_BYTES;
/**
 * A large request sent at once is handed to the kernel in writes of at most this much. Linux's
 * tcp_sendmsg processes the ACKs that arrived meanwhile after every 16 packet buffers it fills in
 * one call (up to 64 KiB each); in one write of a 1 MiB request (17 of them) that ends the
 * connection's "application-limited" mark mid-request, and the last packet then gives BBR a rate
 * sample that lowers its pacing rate, request after request (docs/nbd.md, "1 MiB writes to nbdkit:
 * TCP pacing on loopback"). libnbd's two sends (header, payload) never fill 17 in one call; half a
 * MiB per write (9 at most) does not either, for one more write(2) per MiB.
 */
export const SEND_PIECE_MAX_BYTES = 512 * 1024;

export type NbdFailure = 'refused' | 'disconnected' | 'timeout' | 'server-error' | 'protocol' | 'unsupported' | 'queue-full';

/** A failure of an NBD device. `reason` says which kind; `serverErrno` is set for server-error. */
export class NbdError extends DiskError {
  readonly reason: NbdFailure;
  readonly serverErrno: string | undefined;
  constructor(
    code: 'EIO' | 'ENOENT' | 'EINVAL' | 'EAGAIN',
    reason: NbdFailure,
    message: string,
    opts: { device: string; offsetBytes?: number; cause?: unknown; serverErrno?: string },
  ) {
    super(code, message, opts);
    this.reason = reason;
    this.serverErrno = opts.serverErrno;
  }
}

export type NbdAddress = { transport: 'tcp'; host: string; port: number } | { transport: 'unix'; socketPath: string };

export interface NbdUri {
  address: NbdAddress;
  exportName: string;
  ioTimeoutMs: number | undefined;
  connectTimeoutMs: number | undefined;
}

export const NBD_SCHEMES = ['nbd', 'nbd+unix'] as const;

/** Parses nbd://HOST[:PORT]/[EXPORT] and nbd+unix:///[EXPORT]?socket=PATH. */
export function parseNbdUri(spec: string): NbdUri {
  const bad = (why: string): never => {
    throw new DiskError('EINVAL', `${spec}: ${why} (expected nbd://HOST[:PORT]/EXPORT or nbd+unix:///EXPORT?socket=PATH)`, { device: spec });
  };
  let url: URL;
  try {
    url = new URL(spec);
  } catch {
    return bad('not a valid URI');
  }
  const scheme = url.protocol.replace(/:$/, '');
  let ioTimeoutMs: number | undefined;
  let connectTimeoutMs: number | undefined;
  let socketPath: string | undefined;
  for (const [key, value] of url.searchParams) {
    if (key === 'socket') socketPath = value;
    else if (key === 'timeout') ioTimeoutMs = duration(value, key, bad);
    else if (key === 'connect-timeout') connectTimeoutMs = duration(value, key, bad);
    else bad(`unknown parameter '${key}'`);
  }
  const exportName = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (scheme === 'nbd') {
    if (socketPath !== undefined) bad('socket= belongs to nbd+unix://');
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (host === '') bad('no host');
    const port = url.port === '' ? P.NBD_DEFAULT_PORT : Number(url.port);
    return { address: { transport: 'tcp', host, port }, exportName, ioTimeoutMs, connectTimeoutMs };
  }
  if (scheme === 'nbd+unix') {
    if (url.hostname !== '') bad('nbd+unix:// takes no host');
    if (socketPath === undefined || socketPath === '') return bad('nbd+unix:// needs ?socket=PATH');
    return { address: { transport: 'unix', socketPath }, exportName, ioTimeoutMs, connectTimeoutMs };
  }
  return bad(`unsupported scheme '${scheme}://'`);
}

function duration(value: string, key: string, bad: (why: string) => never): number {
  try {
    const ms = parseDurationMs(value);
    if (ms <= 0) bad(`${key} must be positive`);
    return ms;
  } catch (err) {
    if (err instanceof DiskError) throw err;
    return bad(`${key}: ${(err as Error).message}`);
  }
}

export interface NbdOpenOptions extends OpenOptions {
  /** Per-request timeout; overrides ?timeout= in the URI. */
  ioTimeoutMs?: number;
  /** Bound on connect + handshake; overrides ?connect-timeout= in the URI. */
  connectTimeoutMs?: number;
  /** Ask for structured replies (default true). false forces simple replies, for tests. */
  structuredReplies?: boolean;
  /** Make every write FUA (durable before it is acknowledged). Default false: flush() makes writes durable. */
  fuaWrites?: boolean;
}

/** What the server told us about the export during the handshake. */
export interface NbdExportInfo {
  exportName: string;
  sizeBytes: number;
  transmissionFlags: number;
  /** From NBD_INFO_BLOCK_SIZE, if the server sent it. */
  blockSize: { minimumBytes: number; preferredBytes: number; maximumBytes: number } | undefined;
  structuredReplies: boolean;
  /** How transmission was entered: NBD_OPT_GO, or the old NBD_OPT_EXPORT_NAME if the server lacks GO. */
  via: 'NBD_OPT_GO' | 'NBD_OPT_EXPORT_NAME';
  serverReadOnly: boolean;
  canFlush: boolean;
  canFua: boolean;
  canTrim: boolean;
  canWriteZeroes: boolean;
  canMultiConn: boolean;
}

interface Pending {
  cookie: number;
  type: number;
  offsetBytes: number;
  lengthBytes: number;
  /** For READ: where the data goes. */
  target: Buffer | undefined;
  /** For structured READ replies: bytes covered by data and hole chunks so far. */
  coveredBytes: number;
  /** The first error chunk of a structured reply; the request fails when the reply is done. */
  error: NbdError | undefined;
  /** Pipeline room this request holds (its payload or read bytes). */
  costBytes: number;
  /** performance.now() when it was sent: the watchdog's clock. */
  sentAtMs: number;
  /** The request holds the write gate (a one-request write) and leaves it when it settles. */
  gated: boolean;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** A request waiting for room in the pipeline (pump() reserves the room before it calls go). */
interface Waiter {
  bytes: number;
  type: number;
  offsetBytes: number;
  lengthBytes: number;
  go: () => void;
  fail: (err: Error) => void;
}

const CMD_NAMES: Readonly<Record<number, string>> = Object.fromEntries(Object.entries(P.Cmd).map(([k, v]) => [v, k]));

function isWriteLike(type: number): boolean {
  return type === P.Cmd.WRITE || type === P.Cmd.TRIM || type === P.Cmd.WRITE_ZEROES;
}

export class NbdDevice implements BlockDevice {
  readonly name: string;
  readonly sizeBytes: number;
  readonly sectorSizeBytes: SectorSize;
  readonly readOnly: boolean;
  readonly info: NbdExportInfo;
  readonly ioTimeoutMs: number;
  /** Every request's offset and length must be a multiple of this (1 when the server sets no minimum). */
  private readonly alignBytes: number;
  private readonly payloadMaxBytes: number;
  private readonly fuaWrites: boolean;
  private readonly gate: WriteGate;
  private readonly socket: net.Socket;
  private readonly decoder: P.ReplyDecoder;
  /** Where socket reads land when they are not received in place (replaced while the decoder holds pieces of it). */
  private scratch = Buffer.allocUnsafe(RECV_SCRATCH_BYTES);
  /** The start of the scratch buffer, READ_REPLY_HEAD_BYTES long, and the rest of it (views, replaced with the scratch). */
  private replyHead: Buffer;
  private afterReplyHead: Buffer;
  private readonly replyHeadBytes: number;
  /** The last read went into replyHead: bytes the decoder still holds are within it. */
  private headRead = false;
  /** Requests on the wire that are READs large enough to be received in place (see READ_REPLY_HEAD_BYTES). */
  private directReadsPending = 0;
  /**
   * The last request to finish was such a READ. With nothing on the wire the buffer of the next
   * socket read is chosen before the caller sends its next request (in the same callback), so a
   * sequential reader at QD1 is guessed to read large again; a wrong guess costs one read(2).
   */
  private lastFinishedInPlace = false;
  /** The caller's buffer the current read was given, if it was received in place. */
  private directRead: Buffer | undefined;
  /** One timer for every request's timeout: it fires when the oldest request is due. */
  private watchdog: NodeJS.Timeout | undefined;
  /** Requests written in this tick go out together when the tick ends (one writev). */
  private corked = false;
  /** Where a request sent at once is encoded (SEND_BUFFER_BYTES); replaced if the socket keeps it. */
  private sendBuffer = Buffer.allocUnsafe(SEND_BUFFER_BYTES);
  private readonly pending = new Map<number, Pending>();
  /** Pipeline room taken by requests on the wire or about to be sent (bounded by INFLIGHT_MAX/BYTES_MAX). */
  private inflightCount = 0;
  private inflightBytes = 0;
  /** Cookies are request numbers (a safe integer: at a million requests a second, 285 years). */
  private nextCookie = 1;
  private waiters: Waiter[] = [];
  /** close() waiting for the pipeline to empty. */
  private idleWaiters: (() => void)[] = [];
  /** Set once the connection is unusable; every later request fails with (a copy of) this reason. */
  private dead: { reason: NbdFailure; detail: string; cause?: unknown } | undefined;
  /** Set when the server said ESHUTDOWN: nothing new is sent, outstanding replies are still taken. */
  private shutdownSeen = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly socketClosed: Promise<void>;

  private constructor(spec: string, socket: net.Socket, reads: ReadRouter, leftover: Buffer, info: NbdExportInfo, opts: NbdOpenOptions, ioTimeoutMs: number) {
    this.name = spec;
    this.socket = socket;
    this.info = info;
    this.sizeBytes = info.sizeBytes;
    this.readOnly = opts.readOnly ?? false;
    this.ioTimeoutMs = ioTimeoutMs;
    this.fuaWrites = opts.fuaWrites ?? false;
    this.gate = opts.gate ?? OPEN_GATE;
    const minimum = info.blockSize?.minimumBytes ?? 1;
    this.alignBytes = minimum;
    this.sectorSizeBytes = sectorSizeFor(minimum, spec);
    const serverMax = info.blockSize?.maximumBytes ?? PAYLOAD_MAX_BYTES;
    // Round down to the alignment so split requests stay aligned.
    this.payloadMaxBytes = Math.max(minimum, Math.floor(Math.min(serverMax, PAYLOAD_MAX_BYTES) / minimum) * minimum);
    this.decoder = new P.ReplyDecoder({
      device: spec,
      structuredReplies: info.structuredReplies,
      payloadMaxBytes: this.payloadMaxBytes + 8,
      simpleDataBytes: (cookie) => {
        const p = this.pending.get(cookie);
        if (p === undefined) return undefined;
        return p.type === P.Cmd.READ ? p.lengthBytes : 0;
      },
      dataTarget: (cookie, offsetBytes, lengthBytes) => this.dataTarget(cookie, offsetBytes, lengthBytes),
    });
    this.replyHeadBytes = info.structuredReplies ? READ_REPLY_HEAD_BYTES.structured : READ_REPLY_HEAD_BYTES.simple;
    this.replyHead = this.scratch.subarray(0, this.replyHeadBytes);
    this.afterReplyHead = this.scratch.subarray(this.replyHeadBytes);
    this.socketClosed = new Promise((resolve) => socket.once('close', () => resolve()));
    reads.sink = this;
    socket.on('error', (err: NodeJS.ErrnoException) => this.kill('disconnected', socketErrorText(err), err));
    socket.on('close', () => this.kill('disconnected', 'the server closed the connection'));
    this.gate.onSelfFence?.(this.failQueuedWrites);
    if (leftover.length > 0) this.onData(leftover, leftover.length);
  }

  /**
   * Connects, negotiates (fixed newstyle, structured replies, NBD_OPT_GO) and returns the device.
   * `opts.guard` is not used: the in-use guard is a local flock and cannot see the other machines
   * using an export (docs/nbd.md, "Limits").
   */
  static async open(spec: string, opts: NbdOpenOptions = {}): Promise<NbdDevice> {
    const uri = parseNbdUri(spec);
    const ioTimeoutMs = opts.ioTimeoutMs ?? uri.ioTimeoutMs ?? NBD_IO_TIMEOUT_MS_DEFAULT;
    const connectTimeoutMs = opts.connectTimeoutMs ?? uri.connectTimeoutMs ?? NBD_CONNECT_TIMEOUT_MS_DEFAULT;
    const reads = new ReadRouter();
    // `onread` is a documented constructor option (net.Socket docs); @types/node lists it only for connect().
    const socket = new net.Socket({ onread: reads.onread } as net.SocketConstructorOpts);
    const reader = new HandshakeReader(socket, spec, reads);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new NbdError('EIO', 'timeout', `${spec}: no NBD handshake within ${connectTimeoutMs} ms`, { device: spec })),
        connectTimeoutMs,
      );
    });
    try {
      const info = await Promise.race([connectAndNegotiate(socket, reader, spec, uri, opts.structuredReplies ?? true), timeout]);
      if (info.serverReadOnly && !(opts.readOnly ?? false)) {
        throw new NbdError('EIO', 'refused', `${spec}: the server exports '${uri.exportName}' read-only; open it read-only`, { device: spec });
      }
      sectorSizeFor(info.blockSize?.minimumBytes ?? 1, spec);
      const leftover = reader.detach();
      return new NbdDevice(spec, socket, reads, leftover, info, opts, ioTimeoutMs);
    } catch (err) {
      reader.detach();
      socket.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- BlockDevice -----------------------------------------------------------------------------

  // read() and write() are not async: an aligned request returns the request's own promise, not
  // another one around it (issue 16: a QD1 request is tens of microseconds, and every promise and
  // microtask on its path is paid again per request). A failed check still rejects, never throws.

  read(buf: Buffer, offsetBytes: number): Promise<void> {
    try {
      checkRange(this, offsetBytes, buf.length);
      this.checkUsable(offsetBytes);
    } catch (err) {
      return Promise.reject(err);
    }
    if (buf.length === 0) return Promise.resolve();
    const a = this.alignBytes;
    if (offsetBytes % a !== 0 || buf.length % a !== 0) return this.readWidened(buf, offsetBytes);
    // One request (the common case): no closure and no view of the buffer to allocate.
    if (buf.length <= this.payloadMaxBytes) return this.request(P.Cmd.READ, 0, offsetBytes, buf.length, undefined, buf);
    return splitRequests(buf.length, this.payloadMaxBytes, (done, len) => this.request(P.Cmd.READ, 0, offsetBytes + done, len, undefined, buf.subarray(done, done + len)));
  }

  /** Reading more than asked is harmless: widen to the server's block size and copy out. */
  private async readWidened(buf: Buffer, offsetBytes: number): Promise<void> {
    const a = this.alignBytes;
    const startBytes = Math.floor(offsetBytes / a) * a;
    const endBytes = Math.ceil((offsetBytes + buf.length) / a) * a;
    const wide = Buffer.alloc(endBytes - startBytes);
    await this.read(wide, startBytes);
    wide.copy(buf, 0, offsetBytes - startBytes, offsetBytes - startBytes + buf.length);
  }

  /** Writes `buf` at `offsetBytes`; with `fua` (or the device's fuaWrites) it is durable when this resolves. */
  write(buf: Buffer, offsetBytes: number, opts?: { fua?: boolean }): Promise<void> {
    try {
      checkRange(this, offsetBytes, buf.length);
      checkWritable(this, offsetBytes);
      this.checkUsable(offsetBytes);
      this.checkAlignedWrite(offsetBytes, buf.length, 'write');
    } catch (err) {
      return Promise.reject(err);
    }
    if (buf.length === 0) return Promise.resolve();
    const fua = opts?.fua ?? this.fuaWrites;
    // A server without FUA gets the same guarantee from a flush after the write.
    if (fua && !this.info.canFua) return this.writeThenFlush(buf, offsetBytes);
    const flags = fua ? P.CmdFlag.FUA : 0;
    if (buf.length > this.payloadMaxBytes) {
      return this.gated(offsetBytes, () =>
        splitRequests(buf.length, this.payloadMaxBytes, (done, len) => this.request(P.Cmd.WRITE, flags, offsetBytes + done, len, buf.subarray(done, done + len)), this.gateCheckFrom(offsetBytes)),
      );
    }
    // One request (the common case): the request itself leaves the gate when it settles, so the
    // caller gets the request's own promise, not one more around it (docs/nbd.md, "Writes at QD1").
    try {
      this.gate.enter(this.name, offsetBytes);
    } catch (err) {
      return Promise.reject(err);
    }
    return this.request(P.Cmd.WRITE, flags, offsetBytes, buf.length, buf, undefined, true);
  }

  private async writeThenFlush(buf: Buffer, offsetBytes: number): Promise<void> {
    await this.gated(offsetBytes, () =>
      splitRequests(buf.length, this.payloadMaxBytes, (done, len) => this.request(P.Cmd.WRITE, 0, offsetBytes + done, len, buf.subarray(done, done + len)), this.gateCheckFrom(offsetBytes)),
    );
    await this.flush();
  }

  async flush(): Promise<void> {
    this.checkUsable(0);
    // A server that does not offer FLUSH has no volatile cache to flush (the spec forbids sending it).
    if (!this.info.canFlush) return;
    await this.request(P.Cmd.FLUSH, 0, 0, 0);
  }

  /**
   * Makes a range read as zeros: NBD_CMD_WRITE_ZEROES (which lets the server punch a hole) when
   * offered, else writes of zeros. Not NBD_CMD_TRIM: after a TRIM the contents are undefined.
   */
  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    checkRange(this, offsetBytes, lengthBytes);
    checkWritable(this, offsetBytes);
    this.checkUsable(offsetBytes);
    this.checkAlignedWrite(offsetBytes, lengthBytes, 'discard');
    if (lengthBytes === 0) return;
    if (this.info.canWriteZeroes) {
      await this.gated(offsetBytes, () => this.rangeRequests(P.Cmd.WRITE_ZEROES, offsetBytes, lengthBytes));
      return;
    }
    const zeros = Buffer.alloc(Math.min(ZERO_CHUNK_BYTES, lengthBytes));
    await splitRequests(lengthBytes, zeros.length, (done, len) => this.write(zeros.subarray(0, len), offsetBytes + done));
  }

  /**
   * NBD_CMD_TRIM: tells the server the range is unused (a file server punches a hole). Afterwards
   * the range's contents are undefined until written again; use discard() to get zeros.
   */
  async trim(offsetBytes: number, lengthBytes: number): Promise<void> {
    checkRange(this, offsetBytes, lengthBytes);
    checkWritable(this, offsetBytes);
    this.checkUsable(offsetBytes);
    this.checkAlignedWrite(offsetBytes, lengthBytes, 'trim');
    if (!this.info.canTrim) {
      throw new NbdError('EIO', 'unsupported', `${this.name}: the server does not support TRIM`, { device: this.name, offsetBytes });
    }
    if (lengthBytes === 0) return;
    await this.gated(offsetBytes, () => this.rangeRequests(P.Cmd.TRIM, offsetBytes, lengthBytes));
  }

  /** Soft disconnect: waits (bounded) for outstanding requests, sends NBD_CMD_DISC, closes the socket. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  /** Requests currently on the wire (for tests and diagnostics). */
  get inflightRequests(): number {
    return this.pending.size;
  }

  // ---- requests --------------------------------------------------------------------------------

  private async doClose(): Promise<void> {
    // Outstanding requests finish first (each is bounded by its own timeout, which ends the wait too).
    if (this.dead === undefined && !this.isIdle()) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.closed = true;
    if (this.dead === undefined) {
      this.dead = { reason: 'disconnected', detail: 'the device was closed' };
      const disc = P.encodeRequest({ flags: 0, type: P.Cmd.DISC, cookie: this.nextCookie++, offsetBytes: 0, lengthBytes: 0 });
      this.socket.end(disc);
      // The server closes its end after DISC; do not wait on it for longer than one I/O timeout.
      const t = setTimeout(() => this.socket.destroy(), this.ioTimeoutMs);
      await this.socketClosed;
      clearTimeout(t);
    } else {
      this.socket.destroy();
    }
    this.failAll();
  }

  private checkUsable(offsetBytes: number): void {
    if (this.closed || this.closing !== undefined) {
      throw new DiskError('ECLOSED', `${this.name}: device is closed`, { device: this.name, offsetBytes });
    }
    if (this.dead !== undefined) throw this.deadError(undefined, offsetBytes, 0);
    if (this.shutdownSeen) throw this.shutdownError(offsetBytes);
  }

  private checkAlignedWrite(offsetBytes: number, lengthBytes: number, op: string): void {
    const a = this.alignBytes;
    if (offsetBytes % a !== 0 || lengthBytes % a !== 0) {
      // A read-modify-write here would not be atomic against other clients of the export.
      throw new DiskError(
        'EALIGN',
        `${this.name}: unaligned ${op}: offset ${offsetBytes} length ${lengthBytes} (the server's minimum block size is ${a})`,
        { device: this.name, offsetBytes },
      );
    }
  }

  /** Runs `fn` inside the write gate: entered first (a fenced writer is refused), left when it settles. */
  private gated(offsetBytes: number, fn: () => Promise<void>): Promise<void> {
    try {
      this.gate.enter(this.name, offsetBytes);
    } catch (err) {
      return Promise.reject(err);
    }
    let done: Promise<void>;
    try {
      done = fn();
    } catch (err) {
      this.gate.leave();
      return Promise.reject(err);
    }
    return done.then(this.leaveGate, this.leaveGateAndThrow);
  }

  private readonly leaveGate = (): void => this.gate.leave();

  private readonly leaveGateAndThrow = (err: unknown): never => {
    this.gate.leave();
    throw err;
  };

  private async rangeRequests(type: number, offsetBytes: number, lengthBytes: number): Promise<void> {
    const step = Math.floor(RANGE_REQUEST_MAX_BYTES / this.alignBytes) * this.alignBytes;
    await splitRequests(lengthBytes, step, (done, len) => this.request(type, 0, offsetBytes + done, len), this.gateCheckFrom(offsetBytes));
  }

  /**
   * For a write split into batches inside one gate entry (gated()): each batch after the first is
   * issued turns after the enter, so the gate is asked again before it (write-gate.ts check).
   */
  private gateCheckFrom(offsetBytes: number): (doneBytes: number) => void {
    return (doneBytes) => this.gate.check(this.name, offsetBytes + doneBytes);
  }

  /**
   * Sends one request (waiting for room in the pipeline) and resolves when its reply is complete.
   * Not async: with room in the pipeline (the common case) the request goes out in this tick with
   * one promise, which matters at tens of thousands of requests per second. With `gated`, the
   * caller has entered the write gate and the request leaves it when it settles, whichever way.
   */
  private request(type: number, flags: number, offsetBytes: number, lengthBytes: number, payload?: Buffer, target?: Buffer, gated = false): Promise<void> {
    const costBytes = (payload?.length ?? 0) + (target?.length ?? 0);
    if (this.waiters.length === 0 && this.hasRoom(costBytes)) {
      this.reserve(costBytes);
      return this.send(type, flags, offsetBytes, lengthBytes, costBytes, payload, target, gated);
    }
    if (this.waiters.length >= NBD_WAITERS_MAX) {
      if (gated) this.gate.leave();
      return Promise.reject(
        new NbdError(
          'EAGAIN',
          'queue-full',
          `${this.name}: ${CMD_NAMES[type]} at offset ${offsetBytes} length ${lengthBytes} refused: ${NBD_WAITERS_MAX} requests already wait for room in the NBD pipeline (${INFLIGHT_MAX} on the wire); the caller issues I/O faster than the server answers`,
          { device: this.name, offsetBytes },
        ),
      );
    }
    // pump() reserves the room before it wakes us.
    const woken = new Promise<void>((go, fail) => this.waiters.push({ bytes: costBytes, type, offsetBytes, lengthBytes, go, fail }));
    return woken.then(
      () => this.sendWoken(type, flags, offsetBytes, lengthBytes, costBytes, payload, target, gated),
      gated ? this.leaveGateAndThrow : undefined,
    );
  }

  /**
   * Sends a request that waited for room. A write is asked through the gate again first: the node
   * may have fenced itself while it waited (its heartbeat lease ran out during a stop), and no write
   * may leave this process after that (write-gate.ts; review 7, M2). Only here: a request sent at
   * once was entered in the same call.
   */
  private sendWoken(type: number, flags: number, offsetBytes: number, lengthBytes: number, costBytes: number, payload: Buffer | undefined, target: Buffer | undefined, gated: boolean): Promise<void> {
    if (isWriteLike(type)) {
      try {
        this.gate.check(this.name, offsetBytes);
      } catch (err) {
        this.release(costBytes);
        if (gated) this.gate.leave();
        // The room it held may let the next waiter go (a read, or a write the gate judges itself).
        this.pump();
        this.notifyIdle();
        return Promise.reject(err);
      }
    }
    return this.send(type, flags, offsetBytes, lengthBytes, costBytes, payload, target, gated);
  }

  /**
   * The gate's self-fence (WriteGate.onSelfFence): every write still waiting for room fails now,
   * never sent, rather than leave when the replies on the wire make room. Reads and flushes wait on.
   * Writes already on the wire are the server's: they may land, as they could have a moment earlier.
   */
  private readonly failQueuedWrites = (reason: string): void => {
    if (!this.waiters.some((w) => isWriteLike(w.type))) return;
    const waiters = this.waiters;
    this.waiters = waiters.filter((w) => !isWriteLike(w.type));
    for (const w of waiters) {
      if (!isWriteLike(w.type)) continue;
      w.fail(
        new DiskError('EFENCED', `${this.name}: ${CMD_NAMES[w.type]} at offset ${w.offsetBytes} length ${w.lengthBytes} refused: this node has fenced itself (${reason}); it was queued and never sent`, {
          device: this.name,
          offsetBytes: w.offsetBytes,
        }),
      );
    }
    this.pump();
    this.notifyIdle();
  };

  /** Puts a request on the wire; its pipeline room is already reserved. */
  private send(type: number, flags: number, offsetBytes: number, lengthBytes: number, costBytes: number, payload: Buffer | undefined, target: Buffer | undefined, gated: boolean): Promise<void> {
    if (this.dead !== undefined || this.shutdownSeen) {
      this.release(costBytes);
      if (gated) this.gate.leave();
      return Promise.reject(this.dead !== undefined ? this.deadError(type, offsetBytes, lengthBytes) : this.shutdownError(offsetBytes));
    }
    const cookie = this.nextCookie++;
    const request: P.Request = { flags, type, cookie, offsetBytes, lengthBytes };
    return new Promise<void>((resolve, reject) => {
      // Nothing else on the wire (QD1, or the first request of a burst): no reply can wake another
      // caller in this tick, so there is nothing to batch with; send now rather than a tick later.
      const alone = this.pending.size === 0 && !this.corked;
      const p: Pending = { cookie, type, offsetBytes, lengthBytes, target, coveredBytes: 0, error: undefined, costBytes, sentAtMs: performance.now(), gated, resolve, reject };
      this.pending.set(cookie, p);
      if (receivedInPlace(p)) this.directReadsPending++;
      this.armWatchdog();
      if (alone) this.sendNow(request, payload);
      else this.sendCorked(P.encodeRequest(request), payload);
    });
  }

  /**
   * One request out at once: a small payload is copied behind its header into one buffer and leaves
   * in one write (cheaper than a writev); a large one leaves with its header, uncopied, in writes of
   * at most SEND_PIECE_MAX_BYTES (the header and the first piece in one writev through cork/uncork).
   */
  private sendNow(request: P.Request, payload: Buffer | undefined): void {
    if (payload !== undefined && payload.length > SEND_COPY_MAX_BYTES) {
      const first = Math.min(payload.length, SEND_PIECE_MAX_BYTES);
      this.socket.cork();
      this.socket.write(P.encodeRequest(request));
      this.socket.write(first === payload.length ? payload : payload.subarray(0, first));
      this.socket.uncork();
      for (let at = first; at < payload.length; at += SEND_PIECE_MAX_BYTES) {
        this.socket.write(payload.subarray(at, Math.min(at + SEND_PIECE_MAX_BYTES, payload.length)));
      }
      return;
    }
    const msg = this.sendBuffer.subarray(0, P.REQUEST_HEADER_BYTES + (payload?.length ?? 0));
    P.encodeRequestInto(msg, 0, request);
    payload?.copy(msg, P.REQUEST_HEADER_BYTES);
    this.socket.write(msg);
    // Nothing left in the socket's queue: the kernel took the whole message in the write(2) above,
    // so the buffer is free again. Otherwise the socket still holds it: use a new one next time.
    if (this.socket.writableLength !== 0) this.sendBuffer = Buffer.allocUnsafe(SEND_BUFFER_BYTES);
  }

  /** Requests issued in one tick (a batch of replies wakes many callers) leave in one writev at its end. */
  private sendCorked(header: Buffer, payload: Buffer | undefined): void {
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(this.uncork);
    }
    this.socket.write(header);
    if (payload !== undefined) this.socket.write(payload);
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.socket.uncork();
  };

  /** Arms the one timeout timer for the oldest outstanding request (Map order is send order). */
  private armWatchdog(): void {
    if (this.watchdog !== undefined || this.dead !== undefined) return;
    const oldest = this.pending.values().next();
    if (oldest.done === true) return;
    const dueInMs = oldest.value.sentAtMs + this.ioTimeoutMs - performance.now();
    this.watchdog = setTimeout(this.onWatchdog, Math.max(0, dueInMs));
    this.watchdog.unref();
  }

  private readonly onWatchdog = (): void => {
    this.watchdog = undefined;
    const oldest = this.pending.values().next();
    if (oldest.done === true || this.dead !== undefined) return;
    if (performance.now() - oldest.value.sentAtMs >= this.ioTimeoutMs) this.onTimeout(oldest.value);
    else this.armWatchdog();
  };

  private onTimeout(p: Pending): void {
    if (!this.pending.has(p.cookie)) return;
    this.kill(
      'timeout',
      `no reply within ${this.ioTimeoutMs} ms to ${CMD_NAMES[p.type]} at offset ${p.offsetBytes} length ${p.lengthBytes}; connection abandoned`,
    );
  }

  /** ReadSink: where the next socket read lands: in place in a READ's buffer, or the scratch buffer. */
  readBuffer(): Buffer {
    const afterHead = this.headRead;
    this.headRead = false;
    this.directRead = this.dead === undefined ? this.decoder.directBuffer(DIRECT_RECV_MIN_BYTES) : undefined;
    if (this.directRead !== undefined) return this.directRead;
    if (this.decoder.pendingBytes > 0) {
      // The decoder still refers to the scratch's bytes (an incomplete message): do not overwrite
      // them. After a head read they are within the head (a reply that is not a data chunk, such
      // as a hole): the rest of the scratch is free.
      if (afterHead && this.decoder.pendingBytes <= this.replyHeadBytes) return this.afterReplyHead;
      this.scratch = Buffer.allocUnsafe(RECV_SCRATCH_BYTES);
      this.replyHead = this.scratch.subarray(0, this.replyHeadBytes);
      this.afterReplyHead = this.scratch.subarray(this.replyHeadBytes);
    } else if ((this.pending.size === 0 ? this.lastFinishedInPlace : this.directReadsPending === this.pending.size) && this.decoder.atMessageStart) {
      this.headRead = true;
      return this.replyHead;
    }
    return this.scratch;
  }

  /** ReadSink: `n` bytes arrived in `buf` (the buffer readBuffer() gave, or the handshake's last one). */
  onRead(n: number, buf: Buffer): void {
    if (this.dead !== undefined) return;
    const direct = buf === this.directRead;
    this.directRead = undefined;
    this.onData(direct ? undefined : buf.subarray(0, n), n);
  }

  private onData(chunk: Buffer | undefined, n: number): void {
    if (this.dead !== undefined) return;
    try {
      for (const ev of chunk === undefined ? this.decoder.pushDirect(n) : this.decoder.push(chunk)) this.onEvent(ev);
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      // The message already starts with our name; the request errors add it again.
      const prefix = `${this.name}: `;
      this.kill('protocol', err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message, err);
    }
  }

  private protocolError(what: string): never {
    throw new FormatError(`${this.name}: NBD protocol error: ${what}`, { device: this.name });
  }

  /** The decoder's dataTarget: the part of the READ's buffer a data chunk covers, checked to be inside it. */
  private dataTarget(cookie: number, offsetBytes: number | undefined, lengthBytes: number): Buffer {
    const p = this.pending.get(cookie);
    if (p === undefined) this.protocolError(`reply for unknown cookie ${cookie}`);
    if (p.type !== P.Cmd.READ || p.target === undefined) this.protocolError(`content chunk in the reply to ${CMD_NAMES[p.type]}`);
    if (offsetBytes === undefined) return p.target; // a simple reply: the decoder asked for the READ's length
    const at = this.chunkAt(p, offsetBytes, lengthBytes);
    return at === 0 && lengthBytes === p.target.length ? p.target : p.target.subarray(at, at + lengthBytes);
  }

  /** Where a chunk starts in its READ's buffer; a chunk outside the request is a protocol error. */
  private chunkAt(p: Pending, offsetBytes: number, lengthBytes: number): number {
    const at = offsetBytes - p.offsetBytes;
    if (at < 0 || at + lengthBytes > p.lengthBytes) {
      this.protocolError(`chunk [${offsetBytes}, +${lengthBytes}) outside READ [${p.offsetBytes}, +${p.lengthBytes})`);
    }
    return at;
  }

  private onEvent(ev: P.ReplyEvent): void {
    const p = this.pending.get(ev.cookie);
    if (p === undefined) this.protocolError(`reply for unknown cookie ${ev.cookie}`);
    switch (ev.kind) {
      case 'simple':
        if (ev.errno !== 0) p.error = this.serverError(p, ev.errno, '');
        else if (p.target !== undefined && ev.pieces !== undefined) copyPieces(ev.pieces, p.target, 0);
        p.coveredBytes = p.lengthBytes;
        this.finish(p);
        return;
      case 'data':
      case 'hole': {
        if (p.type !== P.Cmd.READ || p.target === undefined) this.protocolError(`content chunk in the reply to ${CMD_NAMES[p.type]}`);
        const len = ev.lengthBytes;
        const at = this.chunkAt(p, ev.offsetBytes, len);
        if (ev.kind === 'hole') p.target.fill(0, at, at + len);
        else if (ev.placed !== true) copyPieces(ev.pieces, p.target, at);
        p.coveredBytes += len;
        if (ev.done) this.finish(p);
        return;
      }
      case 'error':
        p.error ??= this.serverError(p, ev.errno, ev.message, ev.offsetBytes);
        if (ev.done) this.finish(p);
        return;
      case 'none':
        this.finish(p);
        return;
    }
  }

  private hasRoom(bytes: number): boolean {
    return this.inflightCount < INFLIGHT_MAX && (this.inflightCount === 0 || this.inflightBytes + bytes <= INFLIGHT_BYTES_MAX);
  }

  private reserve(bytes: number): void {
    this.inflightCount++;
    this.inflightBytes += bytes;
  }

  private release(bytes: number): void {
    this.inflightCount--;
    this.inflightBytes -= bytes;
  }

  private finish(p: Pending): void {
    this.forget(p);
    this.release(p.costBytes);
    if (p.gated) this.gate.leave();
    if (p.error !== undefined) {
      p.reject(p.error);
      // The spec: a client that receives ESHUTDOWN must initiate a soft disconnect.
      if (p.error.serverErrno === 'ESHUTDOWN') this.shutdownSeen = true;
    } else if (p.type === P.Cmd.READ && p.coveredBytes !== p.lengthBytes) {
      // Chunks may not overlap, so full coverage means their lengths add up to the request.
      this.kill('protocol', `NBD protocol error: the reply to READ at offset ${p.offsetBytes} covered ${p.coveredBytes} of ${p.lengthBytes} bytes`);
      p.reject(this.deadError(p.type, p.offsetBytes, p.lengthBytes));
    } else {
      p.resolve();
    }
    if (this.shutdownSeen && this.pending.size === 0 && this.dead === undefined) this.softDisconnect();
    this.pump();
    this.notifyIdle();
  }

  /** Takes a request off the wire's books (its pipeline room is released by the caller). */
  private forget(p: Pending): void {
    this.pending.delete(p.cookie);
    this.lastFinishedInPlace = receivedInPlace(p);
    if (this.lastFinishedInPlace) this.directReadsPending--;
  }

  private isIdle(): boolean {
    return this.pending.size === 0 && this.waiters.length === 0 && this.inflightCount === 0;
  }

  private notifyIdle(): void {
    if (!this.isIdle() && this.dead === undefined) return;
    const idle = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of idle) resolve();
  }

  /** After ESHUTDOWN, once nothing is outstanding: NBD_CMD_DISC, then the device is finished. */
  private softDisconnect(): void {
    const disc = P.encodeRequest({ flags: 0, type: P.Cmd.DISC, cookie: this.nextCookie++, offsetBytes: 0, lengthBytes: 0 });
    this.dead = { reason: 'disconnected', detail: 'the server is shutting down (it answered ESHUTDOWN)' };
    this.socket.end(disc);
    this.failAll();
  }

  /** Wakes queued requests, in order, while the pipeline has room, reserving the room for each. */
  private pump(): void {
    while (this.waiters.length > 0 && this.hasRoom(this.waiters[0]!.bytes)) {
      const w = this.waiters.shift()!;
      this.reserve(w.bytes);
      w.go();
    }
  }

  private serverError(p: Pending, errno: number, message: string, errorOffsetBytes?: number): NbdError {
    const name = P.errnoName(errno);
    const where = errorOffsetBytes !== undefined ? ` (failed at byte ${errorOffsetBytes})` : '';
    return new NbdError(
      errno === 22 ? 'EINVAL' : 'EIO',
      'server-error',
      `${this.name}: the server failed ${CMD_NAMES[p.type]} at offset ${p.offsetBytes} length ${p.lengthBytes}: ${name}${message ? `: ${message}` : ''}${where}`,
      { device: this.name, offsetBytes: errorOffsetBytes ?? p.offsetBytes, serverErrno: name },
    );
  }

  /** Makes the connection unusable for good and fails everything outstanding. */
  private kill(reason: NbdFailure, detail: string, cause?: unknown): void {
    if (this.dead !== undefined) {
      this.failAll();
      return;
    }
    this.dead = { reason, detail, cause };
    this.socket.destroy();
    this.failAll();
  }

  private failAll(): void {
    clearTimeout(this.watchdog);
    this.watchdog = undefined;
    for (const p of [...this.pending.values()]) {
      this.forget(p);
      this.release(p.costBytes);
      if (p.gated) this.gate.leave();
      p.reject(this.deadError(p.type, p.offsetBytes, p.lengthBytes));
    }
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.fail(this.deadError(undefined, 0, 0));
    this.notifyIdle();
  }

  private shutdownError(offsetBytes: number): NbdError {
    return new NbdError('EIO', 'disconnected', `${this.name}: I/O refused: the server is shutting down (it answered ESHUTDOWN)`, { device: this.name, offsetBytes });
  }

  private deadError(type: number | undefined, offsetBytes: number, lengthBytes: number): DiskError {
    const d = this.dead;
    if (d === undefined || (this.closed && d.detail === 'the device was closed')) {
      return new DiskError('ECLOSED', `${this.name}: device is closed`, { device: this.name, offsetBytes });
    }
    const op = type === undefined ? 'I/O' : `${CMD_NAMES[type]} at offset ${offsetBytes} length ${lengthBytes}`;
    const outcome =
      type === undefined
        ? ''
        : isWriteLike(type)
          ? '; the write may or may not have landed'
          : type === P.Cmd.FLUSH
            ? '; writes since the last successful flush may not be durable'
            : '';
    const what = d.reason === 'timeout' ? 'NBD request timed out' : d.reason === 'protocol' ? 'NBD connection broken' : 'NBD connection lost';
    return new NbdError('EIO', d.reason, `${this.name}: ${op} failed: ${what}: ${d.detail}${outcome}`, {
      device: this.name,
      offsetBytes,
      cause: d.cause,
    });
  }
}

/** A READ whose data the decoder will receive straight into its buffer (most of it, at least). */
function receivedInPlace(p: Pending): boolean {
  return p.type === P.Cmd.READ && p.lengthBytes >= DIRECT_RECV_MIN_BYTES;
}

function copyPieces(pieces: readonly Buffer[], target: Buffer, atBytes: number): void {
  let at = atBytes;
  for (const piece of pieces) at += piece.copy(target, at);
}

function socketErrorText(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ECONNRESET':
      return 'the server reset the connection (ECONNRESET)';
    case 'EPIPE':
      return 'the server closed the connection (EPIPE)';
    case 'ETIMEDOUT':
      return 'the network connection timed out (ETIMEDOUT)';
    default:
      return `socket error ${err.code ?? err.message}`;
  }
}

/**
 * Runs `part(doneBytes, lengthBytes)` over [0, totalBytes) in steps of `stepBytes`, at most
 * INFLIGHT_MAX parts at a time (so one large call cannot fill the waiter queue); waits for every
 * part before throwing the first failure. `beforeLaterBatch(doneBytes)` runs before each batch but
 * the first; if it throws, nothing more is issued and that is the failure.
 */
function splitRequests(totalBytes: number, stepBytes: number, part: (doneBytes: number, lengthBytes: number) => Promise<void>, beforeLaterBatch?: (doneBytes: number) => void): Promise<void> {
  // Not async: one request (the common case) returns its own promise, without another around it.
  if (totalBytes <= stepBytes) return part(0, totalBytes);
  return splitMany(totalBytes, stepBytes, part, beforeLaterBatch);
}

async function splitMany(totalBytes: number, stepBytes: number, part: (doneBytes: number, lengthBytes: number) => Promise<void>, beforeLaterBatch?: (doneBytes: number) => void): Promise<void> {
  let failure: { err: unknown } | undefined;
  for (let batch = 0; batch < totalBytes; batch += stepBytes * INFLIGHT_MAX) {
    if (batch > 0) beforeLaterBatch?.(batch);
    const parts: Promise<void>[] = [];
    for (let done = batch; done < totalBytes && done < batch + stepBytes * INFLIGHT_MAX; done += stepBytes) {
      parts.push(part(done, Math.min(stepBytes, totalBytes - done)));
    }
    for (const r of await Promise.allSettled(parts)) if (r.status === 'rejected') failure ??= { err: r.reason };
    if (failure !== undefined) throw failure.err;
  }
}

/** The sector size we present: the server's minimum block size if it is a sector size, else 512 or 4096 above it. */
function sectorSizeFor(minimumBytes: number, spec: string): SectorSize {
  if (minimumBytes <= 512) return 512;
  if (minimumBytes <= 4096) return 4096;
  throw new NbdError('EIO', 'unsupported', `${spec}: the server's minimum block size ${minimumBytes} is larger than the largest sector size (4096)`, {
    device: spec,
  });
}

// ---- handshake ---------------------------------------------------------------------------------

/**
 * Who receives the socket's reads. The socket reads into buffers we give it (net's `onread`), not
 * into fresh ones per read, so that reply data can land in the caller's buffer with no copy; first
 * the handshake reads, then the device.
 */
interface ReadSink {
  /** The buffer the next read goes into. */
  readBuffer(): Buffer;
  /** `n` bytes arrived in `buf`. */
  onRead(n: number, buf: Buffer): void;
}

class ReadRouter {
  sink: ReadSink | undefined;
  /** For socket.connect's `onread`. */
  readonly onread = {
    buffer: (): Buffer => this.sink!.readBuffer(),
    // Every buffer handed out is a Buffer; false would stop reading, which we never want.
    callback: (n: number, buf: Uint8Array): boolean => {
      this.sink!.onRead(n, buf as Buffer);
      return true;
    },
  };
}

/** The handshake's reads: small, so they land in one reused buffer and are copied out. */
const HANDSHAKE_READ_BYTES = 16 * 1024;

/** Buffers socket data during the handshake and hands out exact byte counts. */
class HandshakeReader implements ReadSink {
  private chunks: Buffer[] = [];
  private bytes = 0;
  private want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private failure: Error | undefined;
  private readonly buf = Buffer.allocUnsafe(HANDSHAKE_READ_BYTES);
  readBuffer(): Buffer {
    return this.buf;
  }
  onRead(n: number, buf: Buffer): void {
    // The buffer is reused for the next read: keep a copy.
    this.chunks.push(Buffer.from(buf.subarray(0, n)));
    this.bytes += n;
    this.serve();
  }
  // A server that hangs up before transmission is refusing us (an address filter, a policy, or an
  // unknown export on a server without NBD_OPT_GO), so this counts as a refusal.
  private readonly onEnd = (): void =>
    this.fail(
      new NbdError('EIO', 'refused', `${this.device}: the server closed the connection during the NBD handshake (it refused this client or this export)`, {
        device: this.device,
      }),
    );
  private readonly onError = (err: NodeJS.ErrnoException): void => this.fail(connectError(this.device, err));

  constructor(
    private readonly socket: net.Socket,
    private readonly device: string,
    reads: ReadRouter,
  ) {
    reads.sink = this;
    socket.on('end', this.onEnd);
    socket.on('close', this.onEnd);
    socket.on('error', this.onError);
  }

  read(n: number): Promise<Buffer> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.want = { n, resolve, reject };
      this.serve();
    });
  }

  /** Stops listening; returns any bytes received beyond what was read. */
  detach(): Buffer {
    this.socket.off('end', this.onEnd);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onError);
    const rest = Buffer.concat(this.chunks);
    this.chunks = [];
    this.bytes = 0;
    return rest;
  }

  private fail(err: Error): void {
    this.failure ??= err;
    const w = this.want;
    this.want = undefined;
    w?.reject(this.failure);
  }

  private serve(): void {
    const w = this.want;
    if (w === undefined || this.bytes < w.n) return;
    const all = Buffer.concat(this.chunks);
    this.chunks = all.length > w.n ? [all.subarray(w.n)] : [];
    this.bytes -= w.n;
    this.want = undefined;
    w.resolve(all.subarray(0, w.n));
  }
}

function connectError(device: string, err: NodeJS.ErrnoException): NbdError {
  const code = err.code ?? err.message;
  if (code === 'ECONNREFUSED') return new NbdError('EIO', 'refused', `${device}: connection refused (is the NBD server running?)`, { device, cause: err });
  if (code === 'ENOENT') return new NbdError('EIO', 'refused', `${device}: no NBD server socket at that path`, { device, cause: err });
  return new NbdError('EIO', 'disconnected', `${device}: connection failed: ${code}`, { device, cause: err });
}

async function connectAndNegotiate(socket: net.Socket, reader: HandshakeReader, device: string, uri: NbdUri, wantStructured: boolean): Promise<NbdExportInfo> {
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
    if (uri.address.transport === 'tcp') socket.connect({ host: uri.address.host, port: uri.address.port });
    else socket.connect({ path: uri.address.socketPath });
  }).catch((err: NodeJS.ErrnoException) => {
    throw connectError(device, err);
  });
  // Requests are small and latency-bound: do not let Nagle hold them back.
  socket.setNoDelay(true);
  const greeting = P.parseGreeting(await reader.read(P.GREETING_BYTES), device);
  const noZeroes = (greeting.handshakeFlags & P.HandshakeFlag.NO_ZEROES) !== 0;
  socket.write(P.encodeClientFlags(P.ClientFlag.FIXED_NEWSTYLE | (noZeroes ? P.ClientFlag.NO_ZEROES : 0)));

  let structuredReplies = false;
  if (wantStructured) {
    socket.write(P.encodeOption(P.Opt.STRUCTURED_REPLY));
    const reply = await readOptionReply(reader, P.Opt.STRUCTURED_REPLY, device);
    if (reply.replyType === P.Rep.ACK) structuredReplies = true;
    else if (reply.replyType === P.RepErr.TLS_REQD) throw refusal(device, uri.exportName, P.Opt.STRUCTURED_REPLY, reply.replyType, reply.data);
    else if (!P.isOptionError(reply.replyType)) throw new FormatError(`${device}: NBD protocol error: reply type ${reply.replyType} to NBD_OPT_STRUCTURED_REPLY`, { device });
    // Any other error: the server does not do structured replies; simple replies work everywhere.
  }

  socket.write(P.encodeGoOption(P.Opt.GO, uri.exportName, [P.Info.EXPORT, P.Info.BLOCK_SIZE]));
  let exportItem: { sizeBytes: number; transmissionFlags: number } | undefined;
  let blockSize: NbdExportInfo['blockSize'];
  for (let i = 0; i < OPTION_REPLIES_MAX; i++) {
    const reply = await readOptionReply(reader, P.Opt.GO, device);
    if (reply.replyType === P.Rep.INFO) {
      const item = P.parseInfoReply(reply.data, device);
      if (item.type === 'export') exportItem = { sizeBytes: item.sizeBytes, transmissionFlags: item.transmissionFlags };
      else if (item.type === 'block-size') blockSize = { minimumBytes: item.minimumBytes, preferredBytes: item.preferredBytes, maximumBytes: item.maximumBytes };
      continue;
    }
    if (reply.replyType === P.Rep.ACK) {
      if (exportItem === undefined) throw new FormatError(`${device}: NBD protocol error: NBD_OPT_GO acknowledged without NBD_INFO_EXPORT`, { device });
      return describe(uri.exportName, exportItem, blockSize, structuredReplies, 'NBD_OPT_GO');
    }
    if (reply.replyType === P.RepErr.UNSUP) {
      // A server older than NBD_OPT_GO: enter transmission the old way. It cannot report errors:
      // an unknown export makes the server hang up, which the reader reports.
      socket.write(P.encodeExportNameOption(uri.exportName));
      const r = P.parseExportNameReply(await reader.read(P.EXPORT_NAME_REPLY_BYTES), device);
      if (!noZeroes) await reader.read(P.EXPORT_NAME_ZEROES_BYTES);
      return describe(uri.exportName, r, undefined, structuredReplies, 'NBD_OPT_EXPORT_NAME');
    }
    if (P.isOptionError(reply.replyType)) throw refusal(device, uri.exportName, P.Opt.GO, reply.replyType, reply.data);
    throw new FormatError(`${device}: NBD protocol error: reply type ${reply.replyType} to NBD_OPT_GO`, { device });
  }
  throw new FormatError(`${device}: NBD protocol error: more than ${OPTION_REPLIES_MAX} replies to NBD_OPT_GO`, { device });
}

async function readOptionReply(reader: HandshakeReader, option: number, device: string): Promise<{ replyType: number; data: Buffer }> {
  const header = P.parseOptionReplyHeader(await reader.read(P.OPTION_REPLY_HEADER_BYTES), option, device);
  const data = header.lengthBytes > 0 ? await reader.read(header.lengthBytes) : Buffer.alloc(0);
  return { replyType: header.replyType, data };
}

function refusal(device: string, exportName: string, option: number, replyType: number, data: Buffer): NbdError {
  const text = data.length > 0 ? `: ${data.subarray(0, P.STRING_MAX_BYTES).toString('utf8')}` : '';
  if (replyType === P.RepErr.UNKNOWN) {
    return new NbdError('ENOENT', 'refused', `${device}: the server has no export named '${exportName}'${text}`, { device });
  }
  return new NbdError('EIO', 'refused', `${device}: the server refused ${P.optionName(option)}: ${P.describeOptionError(replyType)}${text}`, { device });
}

function describe(
  exportName: string,
  e: { sizeBytes: number; transmissionFlags: number },
  blockSize: NbdExportInfo['blockSize'],
  structuredReplies: boolean,
  via: NbdExportInfo['via'],
): NbdExportInfo {
  const f = e.transmissionFlags;
  // Without HAS_FLAGS the other bits mean nothing; the server supports only READ/WRITE/DISC.
  const has = (bit: number): boolean => (f & P.TxFlag.HAS_FLAGS) !== 0 && (f & bit) !== 0;
  return {
    exportName,
    sizeBytes: e.sizeBytes,
    transmissionFlags: f,
    blockSize,
    structuredReplies,
    via,
    serverReadOnly: has(P.TxFlag.READ_ONLY),
    canFlush: has(P.TxFlag.SEND_FLUSH),
    canFua: has(P.TxFlag.SEND_FUA),
    canTrim: has(P.TxFlag.SEND_TRIM),
    canWriteZeroes: has(P.TxFlag.SEND_WRITE_ZEROES),
    canMultiConn: has(P.TxFlag.CAN_MULTI_CONN),
  };
}

/** The opener registered for nbd:// and nbd+unix:// in open.ts. */
export function openNbdDevice(spec: string, opts: OpenOptions): Promise<BlockDevice> {
  return NbdDevice.open(spec, opts);
}

export function isNbdSpec(spec: string): boolean {
  return /^nbd(\+unix)?:\/\//.test(spec);
}

/** What `sanbox disk info` shows for an NBD disk: asked from the server, read-only. */
export async function nbdDiskInfo(spec: string, opts: NbdOpenOptions = {}): Promise<NbdExportInfo & { device: string; sectorSizeBytes: SectorSize }> {
  const dev = await NbdDevice.open(spec, { ...opts, readOnly: true });
  try {
    return { device: spec, ...dev.info, sectorSizeBytes: dev.sectorSizeBytes };
  } finally {
    await dev.close();
  }
}
