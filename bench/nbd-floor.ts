// The floor of a Node NBD client on this machine, measured beside sanbox's client and fio's in
// bench/nbd.bench.ts: how fast any client written for Node can go here, so that a gap to fio can be
// split into what sanbox's client adds and what Node itself costs.
//
// It is an instrument, not a client. It does the least Node allows between a reply and the next
// request: everything runs in net's `onread` callback (the kernel reads into one scratch buffer; no
// stream 'data' events, no promises, no per-request objects), each in-flight slot owns one request
// buffer (header and payload), requests made in one callback leave corked in one writev, and READ
// data is left in the scratch buffer (the kernel's one copy is made, as sanbox's client makes it into
// the caller's buffer; nothing is copied after). It negotiates with NBD_OPT_EXPORT_NAME, so replies
// are simple replies; it checks each reply's magic, error and cookie, and has no timeouts or retries.
// Handshake and request encoding are the library's codecs (src/format/nbd-protocol.ts).

import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  ClientFlag,
  Cmd,
  encodeClientFlags,
  encodeExportNameOption,
  encodeRequestInto,
  EXPORT_NAME_REPLY_BYTES,
  EXPORT_NAME_ZEROES_BYTES,
  GREETING_BYTES,
  HandshakeFlag,
  parseExportNameReply,
  parseGreeting,
  REQUEST_HEADER_BYTES,
  SIMPLE_REPLY_BYTES,
  SIMPLE_REPLY_MAGIC,
} from '../src/format/nbd-protocol.js';

// Replies are received the way sanbox's client receives them (src/disk/nbd-device.ts), the cheapest
// way found there, so that the floor differs from it only in the machinery around: small replies
// land in a scratch buffer (several per read) and a READ's data is copied out of it into the
// request's own buffer; from DIRECT_RECV_MIN_BYTES up, a READ reply's header is read alone and its
// data straight into the request's buffer.
const SCRATCH_BYTES = 64 * 1024;
const DIRECT_RECV_MIN_BYTES = 16 * 1024;

/** How long the end of a run waits for the replies still in flight. */
const DRAIN_BOUND_MS = 5000;

export interface FloorRun {
  uri: string;
  op: 'read' | 'write';
  blockBytes: number;
  depth: number;
  /** Request offsets, used in turn (the same list sanbox's run uses). */
  offsets: ArrayLike<number>;
  warmupMs: number;
  timeMs: number;
}

/** Ops per second, counted as bench/nbd.bench.ts counts sanbox's: completions in `timeMs` after `warmupMs`. */
export async function measureFloor(run: FloorRun): Promise<number> {
  const { host, port, exportName } = parseUri(run.uri);
  const direct = run.op === 'read' && run.blockBytes >= DIRECT_RECV_MIN_BYTES;
  const type = run.op === 'read' ? Cmd.READ : Cmd.WRITE;
  const slots = Array.from({ length: run.depth }, () => Buffer.alloc(REQUEST_HEADER_BYTES + (run.op === 'write' ? run.blockBytes : 0), 0x5a));
  const targets = run.op === 'read' ? Array.from({ length: run.depth }, () => Buffer.alloc(run.blockBytes)) : [];
  const header = Buffer.alloc(SIMPLE_REPLY_BYTES);
  const scratch = Buffer.alloc(SCRATCH_BYTES);

  let handshake: Buffer | null = Buffer.alloc(0);
  let inHeader = 0; // bytes of the current reply's header received
  let slot = 0; // the current reply's request, once its header is in
  let target: Buffer | null = null; // its READ buffer, while its data is being received
  let dataAt = 0; // bytes of that data received
  let directRead = false; // the last buffer handed out was a READ's own
  let cursor = 0;
  let completed = 0;
  let inFlight = 0;
  let stopping = false;
  let failed: Error | null = null;
  let drained: (() => void) | null = null;
  let ready: (() => void) | null = null;

  const send = (slot: number): void => {
    const off = run.offsets[cursor]!;
    cursor = cursor + 1 === run.offsets.length ? 0 : cursor + 1;
    encodeRequestInto(slots[slot]!, 0, { flags: 0, type, cookie: slot, offsetBytes: off, lengthBytes: run.blockBytes });
    inFlight++;
    socket.write(slots[slot]!);
  };
  const fail = (err: Error): void => {
    failed ??= err;
    socket.destroy();
    drained?.();
    ready?.();
  };
  const finish = (): void => {
    target = null;
    inFlight--;
    completed++;
    if (!stopping) send(slot);
    else if (inFlight === 0) drained?.();
  };
  const onHeader = (): void => {
    inHeader = 0;
    if (header.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) return fail(new Error(`${run.uri}: reply without the simple reply magic`));
    const error = header.readUInt32BE(4);
    if (error !== 0) return fail(new Error(`${run.uri}: server error ${error}`));
    slot = header.readUInt32BE(12);
    if (header.readUInt32BE(8) !== 0 || slot >= run.depth) return fail(new Error(`${run.uri}: reply to unknown cookie`));
    if (run.op === 'write') return finish();
    target = targets[slot]!;
    dataAt = 0;
  };
  /** Bytes that landed in the scratch buffer: headers, and the data of small READs, copied out. */
  const fromScratch = (n: number): void => {
    let at = 0;
    while (at < n && failed === null) {
      if (target === null) {
        const take = Math.min(n - at, SIMPLE_REPLY_BYTES - inHeader);
        scratch.copy(header, inHeader, at, at + take);
        inHeader += take;
        at += take;
        if (inHeader === SIMPLE_REPLY_BYTES) onHeader();
      } else {
        const take = Math.min(n - at, target.length - dataAt);
        scratch.copy(target, dataAt, at, at + take);
        dataAt += take;
        at += take;
        if (dataAt === target.length) finish();
      }
    }
  };
  let sentOption = false;
  const onHandshake = (chunk: Buffer): void => {
    handshake = Buffer.concat([handshake!, chunk]);
    if (handshake.length < GREETING_BYTES) return;
    const noZeroes = (parseGreeting(handshake, run.uri).handshakeFlags & HandshakeFlag.NO_ZEROES) !== 0;
    if (!sentOption) {
      sentOption = true;
      socket.write(Buffer.concat([encodeClientFlags(ClientFlag.FIXED_NEWSTYLE | (noZeroes ? ClientFlag.NO_ZEROES : 0)), encodeExportNameOption(exportName)]));
    }
    const need = GREETING_BYTES + EXPORT_NAME_REPLY_BYTES + (noZeroes ? 0 : EXPORT_NAME_ZEROES_BYTES);
    if (handshake.length < need) return;
    if (handshake.length > need) return fail(new Error(`${run.uri}: data after the handshake`));
    parseExportNameReply(handshake.subarray(GREETING_BYTES), run.uri);
    handshake = null;
    ready?.();
  };

  const socket = new net.Socket({
    onread: {
      buffer: (): Uint8Array => {
        directRead = false;
        if (handshake !== null || !direct) return scratch;
        if (target === null) return header.subarray(inHeader);
        directRead = true;
        return target.subarray(dataAt);
      },
      callback: (n: number, buf: Uint8Array): boolean => {
        if (handshake !== null) {
          onHandshake(Buffer.from(buf.buffer, buf.byteOffset, n));
          return true;
        }
        // Requests made for the replies of one read leave together, in one writev.
        socket.cork();
        if (!direct) fromScratch(n);
        else if (directRead) {
          dataAt += n;
          if (dataAt === target!.length) finish();
        } else {
          inHeader += n;
          if (inHeader === SIMPLE_REPLY_BYTES) onHeader();
        }
        socket.uncork();
        return true;
      },
    },
  } as net.SocketConstructorOpts);
  socket.setNoDelay(true);
  socket.on('error', fail);
  await new Promise<void>((resolve) => {
    ready = resolve;
    socket.connect(port, host);
  });
  ready = null;
  if (failed) throw failed;
  try {
    for (let slot = 0; slot < run.depth; slot++) send(slot);
    await sleep(run.warmupMs);
    const [ops0, t0] = [completed, performance.now()];
    await sleep(run.timeMs);
    const [ops1, t1] = [completed, performance.now()];
    if (failed) throw failed;
    if (ops1 === ops0) throw new Error(`${run.uri}: the floor client completed no request in ${run.timeMs} ms`);
    return (ops1 - ops0) / ((t1 - t0) / 1000);
  } finally {
    stopping = true;
    // The requests still in flight are answered before the socket closes (the server would log a
    // dropped connection otherwise); bounded, in case the server is gone.
    if (inFlight > 0 && !failed) await Promise.race([new Promise<void>((resolve) => (drained = resolve)), sleep(DRAIN_BOUND_MS)]);
    socket.destroy();
  }
}

function parseUri(uri: string): { host: string; port: number; exportName: string } {
  const u = new URL(uri);
  if (u.protocol !== 'nbd:' || u.port === '') throw new Error(`the floor client takes nbd://HOST:PORT/EXPORT, not ${uri}`);
  return { host: u.hostname, port: Number(u.port), exportName: decodeURIComponent(u.pathname.slice(1)) };
}
