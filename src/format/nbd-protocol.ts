// The NBD (network block device) wire protocol, client side: pure codecs over Buffers. The socket,
// timers and request bookkeeping live in src/disk/nbd-device.ts; this file only turns messages into
// bytes and bytes into typed messages, and rejects anything malformed with a FormatError that names
// the device (the nbd:// URI) and the byte offset of the bad field inside the message.
//
// Facts from the NBD protocol specification (NetworkBlockDevice/nbd, doc/proto.md), in our words.
// All integers are big-endian ("network byte order").
//
// Handshake, fixed newstyle:
//   S: u64 NBDMAGIC  u64 IHAVEOPT  u16 handshake flags          (GREETING_BYTES = 18)
//   C: u32 client flags
//   C: option  = u64 IHAVEOPT  u32 option  u32 length  data[length]
//   S: reply   = u64 OPTION_REPLY_MAGIC  u32 option  u32 reply type  u32 length  data[length]
//   NBD_OPT_GO / NBD_OPT_INFO data: u32 name length, name, u16 count, count x u16 info type.
//   NBD_REP_INFO data: u16 info type, then
//     NBD_INFO_EXPORT      u64 size, u16 transmission flags                (12 bytes in all)
//     NBD_INFO_BLOCK_SIZE  u32 minimum, u32 preferred, u32 maximum payload  (14 bytes in all)
//     NBD_INFO_NAME / NBD_INFO_DESCRIPTION  text (ignored here)
//   A reply type with bit 31 set is an error; its data, if any, is a message for a human.
//   NBD_OPT_EXPORT_NAME (the old way in, used only if the server does not know NBD_OPT_GO) has no
//   option reply: S: u64 size, u16 transmission flags, then 124 zero bytes unless NO_ZEROES.
//
// Transmission:
//   request          = u32 REQUEST_MAGIC  u16 command flags  u16 type  u64 cookie  u64 offset  u32 length
//                      (then `length` bytes of data for NBD_CMD_WRITE)                  (28 bytes)
//   simple reply     = u32 SIMPLE_REPLY_MAGIC  u32 error  u64 cookie                    (16 bytes)
//                      (then the data of a successful NBD_CMD_READ: the length is only known from
//                      the request, which is why the decoder asks the caller)
//   structured chunk = u32 STRUCTURED_REPLY_MAGIC  u16 flags  u16 type  u64 cookie  u32 length
//                      then `length` bytes of payload                                    (20 + length)
//     OFFSET_DATA   u64 offset, data[length-8]
//     OFFSET_HOLE   u64 offset, u32 hole size (payload exactly 12)
//     NONE          empty payload, flag DONE set
//     ERROR         u32 error, u16 message length, message
//     ERROR_OFFSET  u32 error, u16 message length, message, u64 offset
//   The chunk with NBD_REPLY_FLAG_DONE is the last one of a reply.

import { FormatError } from '../errors.js';

export const NBD_DEFAULT_PORT = 10809;

export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT": newstyle negotiation
/** The second magic of the oldstyle handshake (no options, no export names): we refuse it. */
export const OLDSTYLE_MAGIC = 0x00420281861253n;
export const OPTION_REPLY_MAGIC = 0x0003e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const GREETING_BYTES = 18;
export const OPTION_HEADER_BYTES = 16;
export const OPTION_REPLY_HEADER_BYTES = 20;
export const REQUEST_HEADER_BYTES = 28;
export const SIMPLE_REPLY_BYTES = 16;
export const STRUCTURED_HEADER_BYTES = 20;
/** After NBD_OPT_EXPORT_NAME: size + flags, then this many zero bytes unless NO_ZEROES was agreed. */
export const EXPORT_NAME_REPLY_BYTES = 10;
export const EXPORT_NAME_ZEROES_BYTES = 124;

/** The spec caps every string (export names, messages) at 4096 bytes. */
export const STRING_MAX_BYTES = 4096;
/** Our cap on option reply data: the largest we expect is a 4 KiB description plus its header. */
export const OPTION_REPLY_DATA_MAX_BYTES = 64 * 1024;
/** A client SHOULD NOT send or ask for more than 32 MiB in one request unless the server says so. */
export const DEFAULT_PAYLOAD_MAX_BYTES = 32 * 1024 * 1024;

export const HandshakeFlag = { FIXED_NEWSTYLE: 1 << 0, NO_ZEROES: 1 << 1 } as const;
export const ClientFlag = { FIXED_NEWSTYLE: 1 << 0, NO_ZEROES: 1 << 1 } as const;

export const Opt = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
} as const;

export const Rep = { ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4 } as const;
export const REP_ERROR_BIT = 0x8000_0000;
export const RepErr = {
  UNSUP: REP_ERROR_BIT + 1,
  POLICY: REP_ERROR_BIT + 2,
  INVALID: REP_ERROR_BIT + 3,
  PLATFORM: REP_ERROR_BIT + 4,
  TLS_REQD: REP_ERROR_BIT + 5,
  UNKNOWN: REP_ERROR_BIT + 6,
  SHUTDOWN: REP_ERROR_BIT + 7,
  BLOCK_SIZE_REQD: REP_ERROR_BIT + 8,
  TOO_BIG: REP_ERROR_BIT + 9,
} as const;

export const Info = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

/** Transmission flags, sent with the export size. */
export const TxFlag = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

export const Cmd = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 } as const;
export const CmdFlag = { FUA: 1 << 0, NO_HOLE: 1 << 1, DF: 1 << 2, REQ_ONE: 1 << 3, FAST_ZERO: 1 << 4 } as const;

export const ReplyFlag = { DONE: 1 << 0 } as const;
export const REPLY_TYPE_ERROR_BIT = 0x8000;
export const ReplyType = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: REPLY_TYPE_ERROR_BIT + 1,
  ERROR_OFFSET: REPLY_TYPE_ERROR_BIT + 2,
} as const;

/** Error values on the wire (the spec fixes them to the Linux numbers). */
export const NBD_ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: 'EPERM',
  5: 'EIO',
  12: 'ENOMEM',
  22: 'EINVAL',
  28: 'ENOSPC',
  75: 'EOVERFLOW',
  95: 'ENOTSUP',
  108: 'ESHUTDOWN',
};
export const NBD_ESHUTDOWN = 108;

export function errnoName(errno: number): string {
  return NBD_ERRNO_NAMES[errno] ?? `error ${errno}`;
}

const OPTION_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(Opt).map(([k, v]) => [v, `NBD_OPT_${k}`]),
);
const REP_ERROR_TEXT: Readonly<Record<number, string>> = {
  [RepErr.UNSUP]: 'option not supported by the server',
  [RepErr.POLICY]: 'refused by server policy',
  [RepErr.INVALID]: 'option rejected as invalid',
  [RepErr.PLATFORM]: 'not supported on the server platform',
  [RepErr.TLS_REQD]: 'the server requires TLS (sanbox speaks NBD without TLS)',
  [RepErr.UNKNOWN]: 'no such export on the server',
  [RepErr.SHUTDOWN]: 'the server is shutting down',
  [RepErr.BLOCK_SIZE_REQD]: 'the server requires block-size negotiation',
  [RepErr.TOO_BIG]: 'request too big',
};

export function optionName(option: number): string {
  return OPTION_NAMES[option] ?? `option ${option}`;
}

export function describeOptionError(replyType: number): string {
  return REP_ERROR_TEXT[replyType] ?? `server error 0x${replyType.toString(16)}`;
}

export function isOptionError(replyType: number): boolean {
  return (replyType & REP_ERROR_BIT) !== 0;
}

function fail(device: string, what: string, offsetBytes: number): never {
  throw new FormatError(`${device}: NBD protocol error: ${what} (byte ${offsetBytes} of the message)`, { device, offsetBytes });
}

function needBytes(buf: Buffer, n: number, device: string, what: string): void {
  if (buf.length < n) fail(device, `${what} is ${buf.length} bytes, expected ${n}`, buf.length);
}

/** 64-bit field that must fit a JS number exactly (sizes and offsets: 2^53 bytes is 8 PiB). */
function readSafeU64(buf: Buffer, at: number, device: string, what: string): number {
  const v = buf.readBigUInt64BE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(device, `${what} ${v} is larger than 2^53-1`, at);
  return Number(v);
}

// ---- handshake ------------------------------------------------------------------------------

export interface Greeting {
  handshakeFlags: number;
}

/** The server's first 18 bytes. Only fixed newstyle servers are accepted. */
export function parseGreeting(buf: Buffer, device: string): Greeting {
  needBytes(buf, GREETING_BYTES, device, 'server greeting');
  if (buf.readBigUInt64BE(0) !== NBDMAGIC) fail(device, 'the server did not greet with NBDMAGIC (is this an NBD server?)', 0);
  const second = buf.readBigUInt64BE(8);
  if (second === OLDSTYLE_MAGIC) fail(device, 'the server speaks the oldstyle handshake, which has no export names; sanbox needs newstyle', 8);
  if (second !== IHAVEOPT) fail(device, `unknown handshake magic 0x${second.toString(16)}`, 8);
  const handshakeFlags = buf.readUInt16BE(16);
  if ((handshakeFlags & HandshakeFlag.FIXED_NEWSTYLE) === 0) fail(device, 'the server does not offer fixed newstyle negotiation', 16);
  return { handshakeFlags };
}

export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(flags >>> 0, 0);
  return b;
}

export function encodeOption(option: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_HEADER_BYTES + data.length);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(data.length, 12);
  data.copy(b, OPTION_HEADER_BYTES);
  return b;
}

/** NBD_OPT_GO (or NBD_OPT_INFO): the export name and the info items we ask for. */
export function encodeGoOption(option: typeof Opt.GO | typeof Opt.INFO, exportName: string, infoTypes: readonly number[]): Buffer {
  const name = Buffer.from(exportName, 'utf8');
  if (name.length > STRING_MAX_BYTES) throw new FormatError(`export name is ${name.length} bytes; NBD allows at most ${STRING_MAX_BYTES}`);
  const data = Buffer.alloc(4 + name.length + 2 + 2 * infoTypes.length);
  data.writeUInt32BE(name.length, 0);
  name.copy(data, 4);
  data.writeUInt16BE(infoTypes.length, 4 + name.length);
  infoTypes.forEach((t, i) => data.writeUInt16BE(t, 4 + name.length + 2 + 2 * i));
  return encodeOption(option, data);
}

export function encodeExportNameOption(exportName: string): Buffer {
  const name = Buffer.from(exportName, 'utf8');
  if (name.length > STRING_MAX_BYTES) throw new FormatError(`export name is ${name.length} bytes; NBD allows at most ${STRING_MAX_BYTES}`);
  return encodeOption(Opt.EXPORT_NAME, name);
}

export interface OptionReplyHeader {
  option: number;
  replyType: number;
  lengthBytes: number;
}

/** An option reply header; it must answer the option we sent. */
export function parseOptionReplyHeader(buf: Buffer, expectedOption: number, device: string): OptionReplyHeader {
  needBytes(buf, OPTION_REPLY_HEADER_BYTES, device, 'option reply header');
  if (buf.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) fail(device, 'bad option reply magic', 0);
  const option = buf.readUInt32BE(8);
  if (option !== expectedOption) fail(device, `reply is for ${optionName(option)}, but ${optionName(expectedOption)} was sent`, 8);
  const replyType = buf.readUInt32BE(12);
  const lengthBytes = buf.readUInt32BE(16);
  if (lengthBytes > OPTION_REPLY_DATA_MAX_BYTES) fail(device, `option reply length ${lengthBytes} exceeds ${OPTION_REPLY_DATA_MAX_BYTES}`, 16);
  if (replyType === Rep.ACK && lengthBytes !== 0) fail(device, `NBD_REP_ACK with ${lengthBytes} bytes of data`, 16);
  return { option, replyType, lengthBytes };
}

export type InfoItem =
  | { type: 'export'; sizeBytes: number; transmissionFlags: number }
  | { type: 'block-size'; minimumBytes: number; preferredBytes: number; maximumBytes: number }
  | { type: 'name' | 'description'; text: string }
  | { type: 'other'; infoType: number };

/** The data of an NBD_REP_INFO reply. */
export function parseInfoReply(data: Buffer, device: string): InfoItem {
  needBytes(data, 2, device, 'NBD_REP_INFO');
  const infoType = data.readUInt16BE(0);
  switch (infoType) {
    case Info.EXPORT: {
      if (data.length !== 12) fail(device, `NBD_INFO_EXPORT is ${data.length} bytes, expected 12`, 0);
      return { type: 'export', sizeBytes: readSafeU64(data, 2, device, 'export size'), transmissionFlags: data.readUInt16BE(10) };
    }
    case Info.BLOCK_SIZE: {
      if (data.length !== 14) fail(device, `NBD_INFO_BLOCK_SIZE is ${data.length} bytes, expected 14`, 0);
      const minimumBytes = data.readUInt32BE(2);
      const preferredBytes = data.readUInt32BE(6);
      const maximumBytes = data.readUInt32BE(10);
      // The spec: minimum a power of 2 in 1..64 KiB; preferred a power of 2 >= max(minimum, 512);
      // maximum a multiple of the minimum (or 0xffffffff).
      if (!isPowerOf2(minimumBytes) || minimumBytes > 64 * 1024) fail(device, `minimum block size ${minimumBytes} is not a power of 2 up to 64 KiB`, 2);
      if (!isPowerOf2(preferredBytes) || preferredBytes < minimumBytes) fail(device, `preferred block size ${preferredBytes} is invalid`, 6);
      if (maximumBytes < minimumBytes || (maximumBytes !== 0xffffffff && maximumBytes % minimumBytes !== 0)) {
        fail(device, `maximum payload ${maximumBytes} is not a multiple of the minimum block size ${minimumBytes}`, 10);
      }
      return { type: 'block-size', minimumBytes, preferredBytes, maximumBytes };
    }
    case Info.NAME:
    case Info.DESCRIPTION:
      if (data.length - 2 > STRING_MAX_BYTES) fail(device, `info text of ${data.length - 2} bytes exceeds ${STRING_MAX_BYTES}`, 2);
      return { type: infoType === Info.NAME ? 'name' : 'description', text: data.subarray(2).toString('utf8') };
    default:
      // Unknown info types are to be ignored by a client (the spec lets servers add them).
      return { type: 'other', infoType };
  }
}

/** The answer to NBD_OPT_EXPORT_NAME (10 bytes; the 124 zero bytes, if any, are skipped by the caller). */
export function parseExportNameReply(buf: Buffer, device: string): { sizeBytes: number; transmissionFlags: number } {
  needBytes(buf, EXPORT_NAME_REPLY_BYTES, device, 'NBD_OPT_EXPORT_NAME reply');
  return { sizeBytes: readSafeU64(buf, 0, device, 'export size'), transmissionFlags: buf.readUInt16BE(8) };
}

function isPowerOf2(n: number): boolean {
  return n > 0 && (n & (n - 1)) === 0;
}

// ---- transmission: requests ------------------------------------------------------------------

export interface Request {
  flags: number;
  type: number;
  /**
   * The handle the reply will carry. A number, not a bigint: a client numbers its requests, and a
   * safe integer never runs out; numbers cost no allocation and hash cheaply as Map keys on the hot
   * path (issue 16).
   */
  cookie: number;
  offsetBytes: number;
  lengthBytes: number;
}

function writeSafeU64(b: Buffer, at: number, v: number): void {
  b.writeUInt32BE(Math.floor(v / 0x1_0000_0000), at);
  b.writeUInt32BE(v % 0x1_0000_0000, at + 4);
}

/** The 28-byte request header (the data of a WRITE follows it on the wire). */
export function encodeRequest(r: Request): Buffer {
  const b = Buffer.allocUnsafe(REQUEST_HEADER_BYTES);
  encodeRequestInto(b, 0, r);
  return b;
}

export function encodeRequestInto(b: Buffer, at: number, r: Request): void {
  if (!Number.isSafeInteger(r.offsetBytes) || r.offsetBytes < 0) throw new FormatError(`NBD request offset ${r.offsetBytes} is invalid`);
  if (!Number.isSafeInteger(r.cookie) || r.cookie < 0) throw new FormatError(`NBD request cookie ${r.cookie} is invalid`);
  if (!Number.isInteger(r.lengthBytes) || r.lengthBytes < 0 || r.lengthBytes > 0xffffffff) {
    throw new FormatError(`NBD request length ${r.lengthBytes} does not fit 32 bits`);
  }
  b.writeUInt32BE(REQUEST_MAGIC, at);
  b.writeUInt16BE(r.flags, at + 4);
  b.writeUInt16BE(r.type, at + 6);
  // Two 32-bit halves rather than BigInts: no allocation per request (a safe integer fits).
  writeSafeU64(b, at + 8, r.cookie);
  writeSafeU64(b, at + 16, r.offsetBytes);
  b.writeUInt32BE(r.lengthBytes, at + 24);
}

// ---- transmission: replies -------------------------------------------------------------------

export type ReplyEvent =
  /**
   * A simple reply; `pieces` (the data, in order) is present for a successful READ, unless the data
   * went to the buffer `dataTarget` gave (`placed`).
   */
  | { kind: 'simple'; cookie: number; errno: number; pieces?: readonly Buffer[]; placed?: true }
  /**
   * Data is handed over as the received pieces, in order, so a large read is copied only once (into
   * its target); or, if `dataTarget` gave a buffer, it is already there (`placed`, no pieces).
   */
  | { kind: 'data'; cookie: number; done: boolean; offsetBytes: number; pieces: readonly Buffer[]; lengthBytes: number; placed?: true }
  | { kind: 'hole'; cookie: number; done: boolean; offsetBytes: number; lengthBytes: number }
  | { kind: 'none'; cookie: number; done: true }
  | { kind: 'error'; cookie: number; done: boolean; errno: number; message: string; offsetBytes?: number };

export interface ReplyDecoderOptions {
  device: string;
  /** Whether structured replies were negotiated (if not, a structured chunk is a protocol error). */
  structuredReplies: boolean;
  /** Largest structured payload we accept (the largest READ we send, plus its 8-byte offset). */
  payloadMaxBytes: number;
  /**
   * How many data bytes follow a successful simple reply with this cookie: the length of the READ
   * it answers, 0 for any other command. `undefined` means no such request is outstanding, which is
   * a protocol error (the simple reply format cannot be parsed past an unknown cookie).
   */
  simpleDataBytes(cookie: number): number | undefined;
  /**
   * Where the data of a READ reply goes, asked once its header is parsed (for a structured data
   * chunk: header and offset; `offsetBytes` is undefined for a simple reply). A buffer of exactly
   * `lengthBytes` makes the decoder copy the data there as it arrives, and lets the caller receive
   * straight into it (`directBuffer`); undefined hands the data over as pieces. It may throw a
   * FormatError (a chunk outside its request).
   */
  dataTarget?(cookie: number, offsetBytes: number | undefined, lengthBytes: number): Buffer | undefined;
}

/** The pieces of a data event whose data went straight to its target (shared: one allocation fewer per reply). */
const NO_PIECES: readonly Buffer[] = Object.freeze([]);

/**
 * Splits the server's byte stream into reply events. Incremental: push whatever the socket
 * delivered; complete messages come back, a partial one waits for more bytes. Any malformed
 * message throws a FormatError and the decoder must not be used again (the stream has lost sync).
 */
export class ReplyDecoder {
  private chunks: Buffer[] = [];
  private bufferedBytes = 0;
  /** Bytes of the stream consumed so far, so an error can say where it happened. */
  private streamOffsetBytes = 0;
  /** The data payload being received into a dataTarget buffer, and the event it completes. */
  private placing: { dest: Buffer; filledBytes: number; event: ReplyEvent } | undefined;

  constructor(private readonly opts: ReplyDecoderOptions) {}

  /**
   * Takes the next received bytes; returns the messages they complete. The decoder keeps
   * references to `chunk` while a message is incomplete (see pendingBytes).
   */
  push(chunk: Buffer): ReplyEvent[] {
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.bufferedBytes += chunk.length;
    }
    return this.drain();
  }

  /**
   * Where the next bytes of the stream may be received in place: the unfilled rest of the current
   * dataTarget buffer, when nothing else is buffered and at least `minBytes` are missing.
   */
  directBuffer(minBytes: number): Buffer | undefined {
    const d = this.placing;
    if (d === undefined || this.bufferedBytes !== 0 || d.dest.length - d.filledBytes < minBytes) return undefined;
    return d.dest.subarray(d.filledBytes);
  }

  /** `n` bytes were received into the buffer directBuffer() returned; returns the messages they complete. */
  pushDirect(n: number): ReplyEvent[] {
    const d = this.placing;
    if (d === undefined || this.bufferedBytes !== 0 || n > d.dest.length - d.filledBytes) {
      throw new Error(`sanbox invariant violated: pushDirect(${n}) without a matching directBuffer()`);
    }
    d.filledBytes += n;
    this.streamOffsetBytes += n;
    return this.drain();
  }

  private drain(): ReplyEvent[] {
    const events: ReplyEvent[] = [];
    for (;;) {
      const ev = this.next();
      if (ev === undefined) return events;
      events.push(ev);
    }
  }

  /** Copies buffered bytes into the dataTarget buffer; the finished event once it is full. */
  private continuePlacing(d: { dest: Buffer; filledBytes: number; event: ReplyEvent }): ReplyEvent | undefined {
    const want = d.dest.length - d.filledBytes;
    if (want > 0 && this.bufferedBytes > 0) {
      const n = Math.min(want, this.bufferedBytes);
      this.consume(n, d.dest, d.filledBytes);
      d.filledBytes += n;
    }
    if (d.filledBytes < d.dest.length) return undefined;
    this.placing = undefined;
    return d.event;
  }

  /** Starts receiving `lengthBytes` of data into the caller's buffer, if it gives one. */
  private place(cookie: number, offsetBytes: number | undefined, lengthBytes: number, event: ReplyEvent): boolean {
    const dest = this.opts.dataTarget?.(cookie, offsetBytes, lengthBytes);
    if (dest === undefined) return false;
    if (dest.length !== lengthBytes) throw new Error(`sanbox invariant violated: dataTarget gave ${dest.length} bytes for ${lengthBytes}`);
    this.placing = { dest, filledBytes: 0, event };
    return true;
  }

  /** Bytes received but not yet part of a complete message. */
  get pendingBytes(): number {
    return this.bufferedBytes;
  }

  /** Whether the next byte received starts a new message: nothing buffered, no data being placed. */
  get atMessageStart(): boolean {
    return this.placing === undefined && this.bufferedBytes === 0;
  }

  /**
   * The cookie of the reply whose header is `h` (at byte 8 of both reply forms). A cookie above
   * 2^53-1 cannot be one a client of this module sent (Request.cookie is a safe integer), so it is
   * an unknown cookie.
   */
  private cookieAt(h: Buffer): number {
    const high = h.readUInt32BE(8);
    if (high > SAFE_HIGH_WORD_MAX) this.fail(`reply for unknown cookie ${h.readBigUInt64BE(8)}`, 8);
    return high * 0x1_0000_0000 + h.readUInt32BE(12);
  }

  /** fail() as a value, made once rather than a closure per chunk. */
  private readonly failAt = (what: string, offsetInMessage: number): never => this.fail(what, offsetInMessage);

  private fail(what: string, offsetInMessage: number): never {
    const at = this.streamOffsetBytes + offsetInMessage;
    const device = this.opts.device;
    throw new FormatError(`${device}: NBD protocol error: ${what} (reply stream byte ${at})`, { device, offsetBytes: at });
  }

  private next(): ReplyEvent | undefined {
    if (this.placing !== undefined) return this.continuePlacing(this.placing);
    if (this.bufferedBytes < 4) return undefined;
    const magic = this.peek(4).readUInt32BE(0);
    if (magic === SIMPLE_REPLY_MAGIC) {
      if (this.bufferedBytes < SIMPLE_REPLY_BYTES) return undefined;
      const h = this.peek(SIMPLE_REPLY_BYTES);
      const errno = h.readUInt32BE(4);
      const cookie = this.cookieAt(h);
      const dataBytes = this.opts.simpleDataBytes(cookie);
      if (dataBytes === undefined) this.fail(`simple reply for unknown cookie ${cookie}`, 8);
      const follow = errno === 0 ? dataBytes : 0;
      if (follow > 0 && this.opts.dataTarget !== undefined) {
        const event: ReplyEvent = { kind: 'simple', cookie, errno, placed: true };
        if (this.place(cookie, undefined, follow, event)) {
          this.skip(SIMPLE_REPLY_BYTES);
          return this.continuePlacing(this.placing!);
        }
      }
      if (this.bufferedBytes < SIMPLE_REPLY_BYTES + follow) return undefined;
      this.skip(SIMPLE_REPLY_BYTES);
      if (follow === 0) return { kind: 'simple', cookie, errno };
      return { kind: 'simple', cookie, errno, pieces: this.takePieces(follow) };
    }
    if (magic === STRUCTURED_REPLY_MAGIC) {
      if (!this.opts.structuredReplies) this.fail('structured reply chunk, but structured replies were not negotiated', 0);
      if (this.bufferedBytes < STRUCTURED_HEADER_BYTES) return undefined;
      const h = this.peek(STRUCTURED_HEADER_BYTES);
      const flags = h.readUInt16BE(4);
      const type = h.readUInt16BE(6);
      const cookie = this.cookieAt(h);
      const lengthBytes = h.readUInt32BE(16);
      if (lengthBytes > this.opts.payloadMaxBytes) this.fail(`chunk payload of ${lengthBytes} bytes exceeds ${this.opts.payloadMaxBytes}`, 16);
      if (type === ReplyType.OFFSET_DATA && lengthBytes >= 9 && this.opts.dataTarget !== undefined) {
        // Header and offset first; the data goes where the caller says, as it arrives.
        const at = STRUCTURED_HEADER_BYTES;
        if (this.bufferedBytes < at + 8) return undefined;
        const offsetBytes = safeU64(this.peek(at + 8), at, 0, this.failAt, 'data offset');
        const dataBytes = lengthBytes - 8;
        const event: ReplyEvent = { kind: 'data', cookie, done: (flags & ReplyFlag.DONE) !== 0, offsetBytes, pieces: NO_PIECES, lengthBytes: dataBytes, placed: true };
        if (this.place(cookie, offsetBytes, dataBytes, event)) {
          this.skip(at + 8);
          return this.continuePlacing(this.placing!);
        }
      }
      if (this.bufferedBytes < STRUCTURED_HEADER_BYTES + lengthBytes) return undefined;
      if (type === ReplyType.OFFSET_DATA && lengthBytes >= 9) {
        // The large case: parse the offset, then hand the data over without joining it.
        const at = STRUCTURED_HEADER_BYTES;
        const offsetBytes = safeU64(this.peek(at + 8), at, 0, this.failAt, 'data offset');
        this.skip(at + 8);
        const dataBytes = lengthBytes - 8;
        return { kind: 'data', cookie, done: (flags & ReplyFlag.DONE) !== 0, offsetBytes, pieces: this.takePieces(dataBytes), lengthBytes: dataBytes };
      }
      const parsePayload = parseChunk(flags, type, cookie, lengthBytes, this.failAt);
      // Parse before consuming, so an error's stream offset still points into this chunk.
      const whole = this.peek(STRUCTURED_HEADER_BYTES + lengthBytes);
      const ev = parsePayload(whole.subarray(STRUCTURED_HEADER_BYTES, STRUCTURED_HEADER_BYTES + lengthBytes));
      this.skip(STRUCTURED_HEADER_BYTES + lengthBytes);
      return ev;
    }
    this.fail(`bad reply magic 0x${magic.toString(16).padStart(8, '0')}`, 0);
  }

  /** The first n buffered bytes, contiguous (n <= bufferedBytes); joins only the chunks it needs. */
  private peek(n: number): Buffer {
    const first = this.chunks[0]!;
    if (first.length >= n) return first;
    let k = 0;
    let sum = 0;
    while (sum < n) sum += this.chunks[k++]!.length;
    const joined = Buffer.concat(this.chunks.slice(0, k), sum);
    this.chunks.splice(0, k, joined);
    return joined;
  }

  /** Removes the first n buffered bytes and returns them as the received pieces, uncopied. */
  private takePieces(n: number): Buffer[] {
    this.streamOffsetBytes += n;
    this.bufferedBytes -= n;
    const out: Buffer[] = [];
    let left = n;
    while (left > 0) {
      const c = this.chunks[0]!;
      if (c.length <= left) {
        out.push(c);
        this.chunks.shift();
        left -= c.length;
      } else {
        out.push(c.subarray(0, left));
        this.chunks[0] = c.subarray(left);
        left = 0;
      }
    }
    return out;
  }

  /** Drops the first n buffered bytes (n <= bufferedBytes); the parsed header they were is not needed again. */
  private skip(n: number): void {
    this.consume(n, undefined, 0);
  }

  /** Removes the first n buffered bytes (n <= bufferedBytes), copying them to `dest` at `atBytes` if given; allocates nothing for whole chunks. */
  private consume(n: number, dest: Buffer | undefined, atBytes: number): void {
    this.streamOffsetBytes += n;
    this.bufferedBytes -= n;
    let done = 0;
    while (done < n) {
      const c = this.chunks[0]!;
      const left = n - done;
      if (c.length <= left) {
        if (dest !== undefined) c.copy(dest, atBytes + done);
        this.chunks.shift();
        done += c.length;
      } else {
        if (dest !== undefined) c.copy(dest, atBytes + done, 0, left);
        this.chunks[0] = c.subarray(left);
        done = n;
      }
    }
  }
}

/**
 * Validates a chunk header and returns the payload parser. Header problems are reported before the
 * payload is consumed, so the reported stream offset points at the header field.
 */
function parseChunk(
  flags: number,
  type: number,
  cookie: number,
  lengthBytes: number,
  fail: (what: string, offsetInMessage: number) => never,
): (payload: Buffer) => ReplyEvent {
  const done = (flags & ReplyFlag.DONE) !== 0;
  const P = STRUCTURED_HEADER_BYTES; // payload fields are reported relative to the chunk start
  switch (type) {
    case ReplyType.NONE:
      if (lengthBytes !== 0) fail(`NBD_REPLY_TYPE_NONE with ${lengthBytes} bytes of payload`, 16);
      if (!done) fail('NBD_REPLY_TYPE_NONE without the DONE flag', 4);
      return () => ({ kind: 'none', cookie, done: true });
    case ReplyType.OFFSET_DATA:
      if (lengthBytes < 9) fail(`NBD_REPLY_TYPE_OFFSET_DATA of ${lengthBytes} bytes (at least 9)`, 16);
      return (p) => ({ kind: 'data', cookie, done, offsetBytes: safeU64(p, 0, P, fail, 'data offset'), pieces: [p.subarray(8)], lengthBytes: p.length - 8 });
    case ReplyType.OFFSET_HOLE:
      if (lengthBytes !== 12) fail(`NBD_REPLY_TYPE_OFFSET_HOLE of ${lengthBytes} bytes (exactly 12)`, 16);
      return (p) => {
        const holeBytes = p.readUInt32BE(8);
        if (holeBytes === 0) fail('hole of size 0', P + 8);
        return { kind: 'hole', cookie, done, offsetBytes: safeU64(p, 0, P, fail, 'hole offset'), lengthBytes: holeBytes };
      };
    default:
      break;
  }
  if ((type & REPLY_TYPE_ERROR_BIT) === 0) fail(`unexpected structured reply type ${type}`, 6);
  // Every error chunk starts with u32 error, u16 message length, message; unknown error types are
  // still errors (the spec says so), their extra fields are skipped.
  if (lengthBytes < 6) fail(`error chunk of ${lengthBytes} bytes (at least 6)`, 16);
  return (p) => {
    const errno = p.readUInt32BE(0);
    const messageBytes = p.readUInt16BE(4);
    if (6 + messageBytes > p.length) fail(`error message length ${messageBytes} overruns the chunk`, P + 4);
    const message = p.subarray(6, 6 + messageBytes).toString('utf8');
    if (errno === 0) fail('error chunk with error value 0', P);
    if (type === ReplyType.ERROR_OFFSET) {
      if (p.length !== 6 + messageBytes + 8) fail(`NBD_REPLY_TYPE_ERROR_OFFSET of ${p.length} bytes, expected ${6 + messageBytes + 8}`, 16);
      return { kind: 'error', cookie, done, errno, message, offsetBytes: safeU64(p, 6 + messageBytes, P, fail, 'error offset') };
    }
    if (type === ReplyType.ERROR && p.length !== 6 + messageBytes) fail(`NBD_REPLY_TYPE_ERROR of ${p.length} bytes, expected ${6 + messageBytes}`, 16);
    return { kind: 'error', cookie, done, errno, message };
  };
}

/** The largest high 32-bit word of a u64 that is a safe integer (2^53-1 >> 32). */
const SAFE_HIGH_WORD_MAX = 0x1f_ffff;

function safeU64(p: Buffer, at: number, base: number, fail: (what: string, offsetInMessage: number) => never, what: string): number {
  // Two 32-bit halves: no BigInt on the hot path (every data chunk has an offset).
  const high = p.readUInt32BE(at);
  if (high > SAFE_HIGH_WORD_MAX) fail(`${what} ${p.readBigUInt64BE(at)} is larger than 2^53-1`, base + at);
  return high * 0x1_0000_0000 + p.readUInt32BE(at + 4);
}
