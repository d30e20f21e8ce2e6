// A bare Node NBD client, measured beside sanbox's client and fio's in bench/nbd.bench.ts: a floor
// for a Node client on this machine, so that a cell's gap to fio splits into what sanbox's client
// adds (sanbox / floor) and what a minimal Node client already costs (floor / fio).
//
// It is an instrument, not a client: no timeouts per request, no retries, no validation beyond what
// keeps its counting right (magic, error, cookie, chunk bounds), and a failure ends the run. What it
// keeps from a real client is what the server and the kernel see, so that they do the same work as
// for sanbox and fio:
// - structured replies, as sanbox and libnbd negotiate them, so a READ of a hole comes back as a hole
//   chunk (qemu-nbd on the sparse images of the random workloads), not as zeros (the export is then
//   opened with NBD_OPT_EXPORT_NAME where they use NBD_OPT_GO: the same export, the same replies);
// - every READ's data lands in its request's own buffer (a hole is zeroed there);
// - small replies are received into a scratch buffer, several per read, and a READ's data is copied
//   out; from DIRECT_RECV_MIN_BYTES up, a reply's header (and a data chunk's offset) is read alone
//   and its data straight into the request's buffer: sanbox's thresholds (src/disk/nbd-device.ts);
// - a request alone on the wire leaves at once in one write, a large one in writes of at most
//   SEND_PIECE_MAX_BYTES (BBR's pacing on this loopback; docs/nbd.md, "1 MiB writes to nbdkit");
//   requests made together (several replies in one read) leave corked in one writev.
// What it leaves out is sanbox's machinery: promises, the reply decoder's events, the pending map,
// the watchdog, the write gate. Everything runs in net's `onread` callback, and each in-flight slot
// owns its request buffer (header and payload, written once) and its READ buffer.
// The one place it does more than sanbox: a data chunk's 20-byte header and 8-byte offset are two
// reads in the direct mode (sanbox reads the 28 bytes at once) — one read(2) per 1 MiB reply.

import net from 'node:net';
import {
  ClientFlag,
  Cmd,
  encodeClientFlags,
  encodeExportNameOption,
  encodeOption,
  encodeRequest,
  encodeRequestInto,
  EXPORT_NAME_REPLY_BYTES,
  EXPORT_NAME_ZEROES_BYTES,
  GREETING_BYTES,
  HandshakeFlag,
  Opt,
  OPTION_REPLY_HEADER_BYTES,
  parseExportNameReply,
  parseGreeting,
  parseOptionReplyHeader,
  Rep,
  REPLY_TYPE_ERROR_BIT,
  ReplyFlag,
  ReplyType,
  REQUEST_HEADER_BYTES,
  SIMPLE_REPLY_BYTES,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_HEADER_BYTES,
  STRUCTURED_REPLY_MAGIC,
} from '../src/format/nbd-protocol.js';
// sanbox's client's own thresholds, so that the floor receives and sends as it does.
import { DIRECT_RECV_MIN_BYTES, parseNbdUri, RECV_SCRATCH_BYTES, SEND_PIECE_MAX_BYTES } from '../src/disk/nbd-device.js';

/** Bounds on the handshake and on the wait for the replies in flight at the end of a run. */
const HANDSHAKE_TIMEOUT_MS = 5000;
const DRAIN_BOUND_MS = 5000;
/** A data chunk's offset, or a hole chunk's offset and length, behind the structured header. */
const DATA_OFFSET_BYTES = 8;
const HOLE_PAYLOAD_BYTES = 12;

export interface FloorRun {
  uri: string;
  op: 'read' | 'write';
  blockBytes: number;
  depth: number;
  /** Request offsets, used in turn (drawn as sanbox's run draws its own). */
  offsets: ArrayLike<number>;
  warmupMs: number;
  timeMs: number;
}

/** Ops per second, counted as bench/nbd.bench.ts counts sanbox's: completions in `timeMs` after `warmupMs`. */
export async function measureFloor(run: FloorRun): Promise<number> {
  const { address, exportName } = parseNbdUri(run.uri);
  if (address.transport !== 'tcp') throw new Error(`the floor client takes nbd://HOST:PORT/EXPORT, as fio's runs use, not ${run.uri}`);
  const { host, port } = address;
  const c = new FloorConnection(run, exportName);
  try {
    await c.open(host, port);
    return await c.measure();
  } finally {
    await c.close();
  }
}

/** Where the parser is within the reply stream. */
const At = {
  /** The next reply's header (simple or structured): `headerBytes` of it in `header`. */
  Header: 0,
  /** A data chunk's 8-byte offset, or a hole chunk's 12 bytes, into `header` after the chunk header. */
  ChunkPayload: 1,
  /** A READ's data: `dataLeft` more bytes into its buffer from `dataAt`. */
  Data: 2,
} as const;
type At = (typeof At)[keyof typeof At];

class FloorConnection {
  private readonly socket: net.Socket;
  private readonly type: number;
  private readonly direct: boolean;
  /** Per slot: the request as written (header, then payload), in the pieces it leaves in when alone. */
  private readonly requests: Buffer[];
  private readonly pieces: Buffer[][];
  /** Per slot: the READ's buffer, and the offset of the request in flight. */
  private readonly targets: Buffer[];
  private readonly slotOffset: number[];
  private readonly scratch = Buffer.alloc(RECV_SCRATCH_BYTES);
  /** A reply's header, then (from byte 0 again) a chunk's payload, which is shorter. */
  private readonly header = Buffer.alloc(Math.max(STRUCTURED_HEADER_BYTES, HOLE_PAYLOAD_BYTES));

  private handshake: Buffer | null = Buffer.alloc(0);
  private handshakeWant: { bytes: number; resolve: (b: Buffer) => void } | undefined;
  private at: At = At.Header;
  private headerBytes = 0;
  /** Bytes the current header or chunk payload needs in all (4 at first: the magic says the rest). */
  private headerNeed: number;
  private slot = 0;
  private chunkFlags = 0;
  private chunkType = 0;
  private dataAt = 0;
  private dataLeft = 0;
  private directRead = false;
  /** Slots whose replies completed in the current read: their next requests. */
  private readonly toSend: number[] = [];

  private cursor = 0;
  private completed = 0;
  private inFlight = 0;
  private stopping = false;
  private failure: Error | undefined;
  private drained: (() => void) | undefined;

  constructor(
    private readonly run: FloorRun,
    private readonly exportName: string,
  ) {
    this.type = run.op === 'read' ? Cmd.READ : Cmd.WRITE;
    this.direct = run.op === 'read' && run.blockBytes >= DIRECT_RECV_MIN_BYTES;
    this.headerNeed = this.firstHeaderBytes();
    const payloadBytes = run.op === 'write' ? run.blockBytes : 0;
    this.requests = Array.from({ length: run.depth }, () => Buffer.alloc(REQUEST_HEADER_BYTES + payloadBytes, 0x5a));
    this.pieces = this.requests.map((b) => {
      const out: Buffer[] = [];
      for (let at = 0; at < b.length; at += SEND_PIECE_MAX_BYTES) out.push(b.subarray(at, Math.min(b.length, at + SEND_PIECE_MAX_BYTES)));
      return out;
    });
    this.targets = run.op === 'read' ? Array.from({ length: run.depth }, () => Buffer.alloc(run.blockBytes)) : [];
    this.slotOffset = new Array<number>(run.depth).fill(0);
    this.socket = new net.Socket({ onread: { buffer: this.readBuffer, callback: this.onRead } } as net.SocketConstructorOpts);
    this.socket.setNoDelay(true);
    this.socket.on('error', (err: Error) => this.fail(err));
    this.socket.on('close', () => {
      if (!this.stopping) this.fail(new Error(`${run.uri}: the server closed the connection`));
    });
  }

  async open(host: string, port: number): Promise<void> {
    const timer = setTimeout(() => this.fail(new Error(`${this.run.uri}: no NBD handshake within ${HANDSHAKE_TIMEOUT_MS} ms`)), HANDSHAKE_TIMEOUT_MS);
    try {
      this.socket.connect(port, host);
      const greeting = parseGreeting(await this.readHandshake(GREETING_BYTES), this.run.uri);
      const noZeroes = (greeting.handshakeFlags & HandshakeFlag.NO_ZEROES) !== 0;
      this.socket.write(encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | (noZeroes ? ClientFlag.NO_ZEROES : 0)));
      this.socket.write(encodeOption(Opt.STRUCTURED_REPLY));
      const reply = parseOptionReplyHeader(await this.readHandshake(OPTION_REPLY_HEADER_BYTES), Opt.STRUCTURED_REPLY, this.run.uri);
      if (reply.replyType !== Rep.ACK) throw new Error(`${this.run.uri}: the server refused structured replies (reply type 0x${reply.replyType.toString(16)})`);
      this.socket.write(encodeExportNameOption(this.exportName));
      parseExportNameReply(await this.readHandshake(EXPORT_NAME_REPLY_BYTES + (noZeroes ? 0 : EXPORT_NAME_ZEROES_BYTES)), this.run.uri);
      if (this.handshake!.length > 0) throw new Error(`${this.run.uri}: data after the handshake`);
      this.handshake = null;
    } finally {
      clearTimeout(timer);
    }
  }

  async measure(): Promise<number> {
    for (let slot = 0; slot < this.run.depth; slot++) this.toSend.push(slot);
    this.flushSends();
    await this.sleep(this.run.warmupMs);
    const [ops0, t0] = [this.completed, performance.now()];
    await this.sleep(this.run.timeMs);
    const [ops1, t1] = [this.completed, performance.now()];
    if (ops1 === ops0) throw new Error(`${this.run.uri}: the floor client completed no request in ${this.run.timeMs} ms`);
    return (ops1 - ops0) / ((t1 - t0) / 1000);
  }

  /** Lets the requests in flight be answered (bounded), then disconnects as a client should. */
  async close(): Promise<void> {
    this.stopping = true;
    if (this.failure === undefined && this.handshake === null && this.inFlight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve) => {
        this.drained = resolve;
        timer = setTimeout(resolve, DRAIN_BOUND_MS);
      });
      clearTimeout(timer);
    }
    if (this.failure === undefined && this.handshake === null) {
      // The server closes on NBD_CMD_DISC; the timer only bounds a server that does not.
      this.socket.end(encodeRequest({ flags: 0, type: Cmd.DISC, cookie: 0, offsetBytes: 0, lengthBytes: 0 }));
      setTimeout(() => this.socket.destroy(), DRAIN_BOUND_MS).unref();
    } else this.socket.destroy();
  }

  /** A sleep that ends early, with the error, when the connection fails. */
  private async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.onFailure = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.onFailure = undefined;
    if (this.failure !== undefined) throw this.failure;
  }
  private onFailure: (() => void) | undefined;

  private fail(err: Error): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    this.socket.destroy();
    this.onFailure?.();
    this.drained?.();
    this.handshakeWant?.resolve(Buffer.alloc(0));
  }

  private readHandshake(bytes: number): Promise<Buffer> {
    return new Promise<Buffer>((resolve) => {
      this.handshakeWant = { bytes, resolve };
      this.serveHandshake();
    }).then((b) => {
      if (this.failure !== undefined) throw this.failure;
      return b;
    });
  }

  private serveHandshake(): void {
    const want = this.handshakeWant;
    if (want === undefined || this.handshake === null || this.handshake.length < want.bytes) return;
    const b = this.handshake.subarray(0, want.bytes);
    this.handshake = this.handshake.subarray(want.bytes);
    this.handshakeWant = undefined;
    want.resolve(b);
  }

  private readonly readBuffer = (): Uint8Array => {
    this.directRead = false;
    if (this.handshake !== null || !this.direct) return this.scratch;
    if (this.at === At.Data) {
      this.directRead = true;
      return this.targets[this.slot]!.subarray(this.dataAt, this.dataAt + this.dataLeft);
    }
    // A header or a chunk's payload alone, so the data behind it is read in place.
    return this.header.subarray(this.headerBytes, this.headerNeed);
  };

  private readonly onRead = (n: number, buf: Uint8Array): boolean => {
    if (this.failure !== undefined) return false;
    if (this.handshake !== null) {
      this.handshake = Buffer.concat([this.handshake, buf.subarray(0, n)]);
      this.serveHandshake();
      return true;
    }
    // Node asks for the next read's buffer right after a read's callback, so the first read after
    // the handshake lands in the scratch buffer whatever the mode: go by where the bytes are.
    if (buf === this.scratch) this.parse(n);
    else if (this.directRead) this.onData(n);
    else {
      this.headerBytes += n;
      this.onHeaderBytes();
    }
    this.flushSends();
    return this.failure === undefined;
  };

  /** Bytes that landed in the scratch buffer. */
  private parse(n: number): void {
    let i = 0;
    while (i < n && this.failure === undefined) {
      if (this.at === At.Data) {
        const take = Math.min(n - i, this.dataLeft);
        this.scratch.copy(this.targets[this.slot]!, this.dataAt, i, i + take);
        i += take;
        this.onData(take);
      } else {
        const take = Math.min(n - i, this.headerNeed - this.headerBytes);
        this.scratch.copy(this.header, this.headerBytes, i, i + take);
        i += take;
        this.headerBytes += take;
        this.onHeaderBytes();
      }
    }
  }

  private onData(n: number): void {
    this.dataAt += n;
    this.dataLeft -= n;
    if (this.dataLeft === 0) this.endChunk();
  }

  /** Header or chunk-payload bytes arrived: act once there are as many as needed. */
  private onHeaderBytes(): void {
    if (this.headerBytes < this.headerNeed) return;
    if (this.at === At.ChunkPayload) return this.onChunkPayload();
    const magic = this.header.readUInt32BE(0);
    if (this.headerNeed === 4) {
      // The magic says how long the header is.
      if (magic === SIMPLE_REPLY_MAGIC) this.headerNeed = SIMPLE_REPLY_BYTES;
      else if (magic === STRUCTURED_REPLY_MAGIC) this.headerNeed = STRUCTURED_HEADER_BYTES;
      else return this.fail(new Error(`${this.run.uri}: reply with magic 0x${magic.toString(16)}`));
      return this.onHeaderBytes();
    }
    const isSimple = magic === SIMPLE_REPLY_MAGIC;
    if (!isSimple && magic !== STRUCTURED_REPLY_MAGIC) return this.fail(new Error(`${this.run.uri}: reply with magic 0x${magic.toString(16)}`));
    // The cookie is at byte 8 of both headers.
    const cookieHigh = this.header.readUInt32BE(8);
    const slot = this.header.readUInt32BE(12);
    if (cookieHigh !== 0 || slot >= this.run.depth) return this.fail(new Error(`${this.run.uri}: reply to unknown cookie`));
    this.slot = slot;
    if (isSimple) {
      const error = this.header.readUInt32BE(4);
      if (error !== 0) return this.fail(new Error(`${this.run.uri}: server error ${error}`));
      // With structured replies negotiated, a READ's data comes in chunks, never behind a simple reply.
      if (this.type === Cmd.READ) return this.fail(new Error(`${this.run.uri}: a simple reply to a READ`));
      return this.finish();
    }
    // Structured: u32 magic, u16 flags, u16 type, u64 cookie, u32 length.
    this.chunkFlags = this.header.readUInt16BE(4);
    this.chunkType = this.header.readUInt16BE(6);
    const lengthBytes = this.header.readUInt32BE(16);
    if ((this.chunkType & REPLY_TYPE_ERROR_BIT) !== 0) return this.fail(new Error(`${this.run.uri}: server error chunk type 0x${this.chunkType.toString(16)}`));
    if (this.chunkType === ReplyType.NONE) {
      if (lengthBytes !== 0) return this.fail(new Error(`${this.run.uri}: NONE chunk with ${lengthBytes} bytes`));
      return this.endChunk();
    }
    if (this.type !== Cmd.READ) return this.fail(new Error(`${this.run.uri}: chunk type ${this.chunkType} in the reply to a WRITE`));
    if (this.chunkType === ReplyType.OFFSET_DATA && lengthBytes > DATA_OFFSET_BYTES) this.dataLeft = lengthBytes - DATA_OFFSET_BYTES;
    else if (this.chunkType === ReplyType.OFFSET_HOLE && lengthBytes === HOLE_PAYLOAD_BYTES) this.dataLeft = 0;
    else return this.fail(new Error(`${this.run.uri}: chunk type ${this.chunkType} of ${lengthBytes} bytes`));
    this.at = At.ChunkPayload;
    this.headerBytes = 0;
    this.headerNeed = this.chunkType === ReplyType.OFFSET_DATA ? DATA_OFFSET_BYTES : HOLE_PAYLOAD_BYTES;
  }

  /** A data chunk's offset, or a hole chunk's offset and length, is in: place it in the READ's buffer. */
  private onChunkPayload(): void {
    const at = this.header.readUInt32BE(0) * 2 ** 32 + this.header.readUInt32BE(4) - this.slotOffset[this.slot]!;
    const target = this.targets[this.slot]!;
    if (this.chunkType === ReplyType.OFFSET_HOLE) {
      const holeBytes = this.header.readUInt32BE(8);
      if (at < 0 || at + holeBytes > target.length) return this.fail(new Error(`${this.run.uri}: hole chunk outside its READ`));
      target.fill(0, at, at + holeBytes);
      return this.endChunk();
    }
    if (at < 0 || at + this.dataLeft > target.length) return this.fail(new Error(`${this.run.uri}: data chunk outside its READ`));
    this.dataAt = at;
    this.at = At.Data;
  }

  /**
   * How much of a reply's header to take first: its magic, which says whether 12 or 16 more bytes
   * follow; in the direct mode (only READs, so only structured replies) the whole structured header,
   * read alone so that the data behind it can be read in place.
   */
  private firstHeaderBytes(): number {
    return this.direct ? STRUCTURED_HEADER_BYTES : 4;
  }

  /** A chunk (or a simple reply) is complete: the reply too if it was the last. */
  private endChunk(): void {
    this.expectHeader();
    if ((this.chunkFlags & ReplyFlag.DONE) !== 0) this.finish();
  }

  private expectHeader(): void {
    this.at = At.Header;
    this.headerBytes = 0;
    this.headerNeed = this.firstHeaderBytes();
  }

  private finish(): void {
    this.expectHeader();
    this.chunkFlags = 0;
    this.inFlight--;
    this.completed++;
    if (!this.stopping) this.toSend.push(this.slot);
    else if (this.inFlight === 0) this.drained?.();
  }

  /** The next requests of the slots answered in this read: alone at once, several corked into one writev. */
  private flushSends(): void {
    const n = this.toSend.length;
    if (n === 0) return;
    if (n > 1) this.socket.cork();
    for (let i = 0; i < n; i++) {
      const slot = this.toSend[i]!;
      const off = this.run.offsets[this.cursor]!;
      this.cursor = this.cursor + 1 === this.run.offsets.length ? 0 : this.cursor + 1;
      this.slotOffset[slot] = off;
      encodeRequestInto(this.requests[slot]!, 0, { flags: 0, type: this.type, cookie: slot, offsetBytes: off, lengthBytes: this.run.blockBytes });
      this.inFlight++;
      if (n > 1) this.socket.write(this.requests[slot]!);
      else for (const piece of this.pieces[slot]!) this.socket.write(piece);
    }
    if (n > 1) this.socket.uncork();
    this.toSend.length = 0;
  }
}

