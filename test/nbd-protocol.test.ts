// The NBD wire codecs (src/format/nbd-protocol.ts) on hand-built messages: layout, stream
// splitting at every byte boundary, validation, and fuzzing (only FormatError may come out).

import test from 'ava';
import { FormatError } from '../src/errors.js';
import * as P from '../src/format/nbd-protocol.js';
import { onlyFormatError, prng, fuzzSeed } from './helpers/fuzz.js';

const DEV = 'nbd://test/x';

function greeting(flags: number, second = P.IHAVEOPT): Buffer {
  const b = Buffer.alloc(P.GREETING_BYTES);
  b.writeBigUInt64BE(P.NBDMAGIC, 0);
  b.writeBigUInt64BE(second, 8);
  b.writeUInt16BE(flags, 16);
  return b;
}

function optionReply(option: number, replyType: number, data: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(P.OPTION_REPLY_HEADER_BYTES + data.length);
  b.writeBigUInt64BE(P.OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option, 8);
  b.writeUInt32BE(replyType, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

function simpleReply(cookie: number, errno: number, data?: Buffer): Buffer {
  const b = Buffer.alloc(P.SIMPLE_REPLY_BYTES);
  b.writeUInt32BE(P.SIMPLE_REPLY_MAGIC, 0);
  b.writeUInt32BE(errno, 4);
  b.writeBigUInt64BE(BigInt(cookie), 8);
  return data ? Buffer.concat([b, data]) : b;
}

function chunk(cookie: number, type: number, flags: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(P.STRUCTURED_HEADER_BYTES);
  b.writeUInt32BE(P.STRUCTURED_REPLY_MAGIC, 0);
  b.writeUInt16BE(flags, 4);
  b.writeUInt16BE(type, 6);
  b.writeBigUInt64BE(BigInt(cookie), 8);
  b.writeUInt32BE(payload.length, 16);
  return Buffer.concat([b, payload]);
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

function errorPayload(errno: number, message: string, offset?: number): Buffer {
  const m = Buffer.from(message);
  const head = Buffer.alloc(6);
  head.writeUInt32BE(errno, 0);
  head.writeUInt16BE(m.length, 4);
  return Buffer.concat([head, m, offset === undefined ? Buffer.alloc(0) : u64(offset)]);
}

function expectFormat(t: import('ava').ExecutionContext, fn: () => unknown, re: RegExp): void {
  const err = t.throws(fn, { instanceOf: FormatError });
  t.regex(err?.message ?? '', re);
  t.is(err?.device, DEV);
  t.true(typeof err?.offsetBytes === 'number');
}

test('greeting: fixed newstyle accepted; oldstyle, bad magic and plain newstyle refused with the byte offset', (t) => {
  t.deepEqual(P.parseGreeting(greeting(3), DEV), { handshakeFlags: 3 });
  expectFormat(t, () => P.parseGreeting(greeting(3, P.OLDSTYLE_MAGIC), DEV), /oldstyle.*byte 8/);
  expectFormat(t, () => P.parseGreeting(greeting(0), DEV), /fixed newstyle.*byte 16/);
  const bad = greeting(1);
  bad[0] ^= 1;
  expectFormat(t, () => P.parseGreeting(bad, DEV), /NBDMAGIC.*byte 0/);
  expectFormat(t, () => P.parseGreeting(bad.subarray(0, 10), DEV), /10 bytes, expected 18/);
});

test('options and requests have the layout of the spec', (t) => {
  const go = P.encodeGoOption(P.Opt.GO, 'disk0', [P.Info.EXPORT, P.Info.BLOCK_SIZE]);
  t.is(go.readBigUInt64BE(0), P.IHAVEOPT);
  t.is(go.readUInt32BE(8), 7);
  t.is(go.readUInt32BE(12), 4 + 5 + 2 + 4);
  t.is(go.readUInt32BE(16), 5);
  t.is(go.subarray(20, 25).toString(), 'disk0');
  t.is(go.readUInt16BE(25), 2);
  t.is(go.readUInt16BE(27), 0);
  t.is(go.readUInt16BE(29), 3);
  t.is(P.encodeClientFlags(3).readUInt32BE(0), 3);
  const r = P.encodeRequest({ flags: P.CmdFlag.FUA, type: P.Cmd.WRITE, cookie: 0x01020304050607, offsetBytes: 2 ** 40 + 512, lengthBytes: 4096 });
  t.is(r.length, 28);
  t.is(r.readUInt32BE(0), 0x25609513);
  t.is(r.readUInt16BE(4), 1);
  t.is(r.readUInt16BE(6), 1);
  t.is(r.readBigUInt64BE(8), 0x01020304050607n);
  t.is(r.readBigUInt64BE(16), BigInt(2 ** 40 + 512));
  t.is(r.readUInt32BE(24), 4096);
  // The largest offset a request can carry (2^53-1) round-trips through the two 32-bit halves.
  const top = P.encodeRequest({ flags: 0, type: P.Cmd.READ, cookie: Number.MAX_SAFE_INTEGER, offsetBytes: Number.MAX_SAFE_INTEGER, lengthBytes: 512 });
  t.is(top.readBigUInt64BE(8), BigInt(Number.MAX_SAFE_INTEGER));
  t.is(top.readBigUInt64BE(16), BigInt(Number.MAX_SAFE_INTEGER));
  t.throws(() => P.encodeRequest({ flags: 0, type: 0, cookie: 1, offsetBytes: 2 ** 53, lengthBytes: 0 }), { instanceOf: FormatError });
  t.throws(() => P.encodeRequest({ flags: 0, type: 0, cookie: 2 ** 53, offsetBytes: 0, lengthBytes: 0 }), { instanceOf: FormatError });
  t.throws(() => P.encodeRequest({ flags: 0, type: 0, cookie: 1, offsetBytes: 0, lengthBytes: 2 ** 32 }), { instanceOf: FormatError });
  t.throws(() => P.encodeGoOption(P.Opt.GO, 'x'.repeat(4097), []), { instanceOf: FormatError });
});

test('option replies: header checks, export and block-size info, unknown info ignored', (t) => {
  const info = Buffer.alloc(12);
  info.writeUInt16BE(P.Info.EXPORT, 0);
  info.writeBigUInt64BE(1n << 40n, 2);
  info.writeUInt16BE(P.TxFlag.HAS_FLAGS | P.TxFlag.SEND_FLUSH, 10);
  const whole = optionReply(P.Opt.GO, P.Rep.INFO, info);
  const h = P.parseOptionReplyHeader(whole, P.Opt.GO, DEV);
  t.deepEqual(h, { option: P.Opt.GO, replyType: P.Rep.INFO, lengthBytes: 12 });
  t.deepEqual(P.parseInfoReply(whole.subarray(20), DEV), { type: 'export', sizeBytes: 2 ** 40, transmissionFlags: 5 });
  const bs = Buffer.alloc(14);
  bs.writeUInt16BE(P.Info.BLOCK_SIZE, 0);
  bs.writeUInt32BE(4096, 2);
  bs.writeUInt32BE(4096, 6);
  bs.writeUInt32BE(65536, 10);
  t.deepEqual(P.parseInfoReply(bs, DEV), { type: 'block-size', minimumBytes: 4096, preferredBytes: 4096, maximumBytes: 65536 });
  bs.writeUInt32BE(3000, 2);
  expectFormat(t, () => P.parseInfoReply(bs, DEV), /minimum block size 3000/);
  t.deepEqual(P.parseInfoReply(Buffer.from([0, 99, 1, 2]), DEV), { type: 'other', infoType: 99 });
  expectFormat(t, () => P.parseOptionReplyHeader(whole, P.Opt.STRUCTURED_REPLY, DEV), /reply is for NBD_OPT_GO, but NBD_OPT_STRUCTURED_REPLY was sent.*byte 8/);
  expectFormat(t, () => P.parseOptionReplyHeader(optionReply(P.Opt.GO, P.Rep.ACK, Buffer.alloc(3)), P.Opt.GO, DEV), /ACK with 3 bytes/);
  const huge = optionReply(P.Opt.GO, P.Rep.INFO);
  huge.writeUInt32BE(P.OPTION_REPLY_DATA_MAX_BYTES + 1, 16);
  expectFormat(t, () => P.parseOptionReplyHeader(huge, P.Opt.GO, DEV), /exceeds/);
  const big = Buffer.alloc(12);
  big.writeBigUInt64BE(1n << 60n, 2);
  expectFormat(t, () => P.parseInfoReply(big, DEV), /larger than 2\^53-1/);
  t.true(P.isOptionError(P.RepErr.UNKNOWN));
  t.regex(P.describeOptionError(P.RepErr.TLS_REQD), /TLS/);
});

test('reply decoder: simple and structured replies, split at every byte boundary, decode identically', (t) => {
  const reads = new Map<number, number>([
    [1, 8],
    [2, 0],
    [3, 16],
    [4, 4],
    [5, 0],
  ]);
  const stream = Buffer.concat([
    simpleReply(1, 0, Buffer.from('ABCDEFGH')),
    simpleReply(2, 5),
    chunk(3, P.ReplyType.OFFSET_DATA, 0, Buffer.concat([u64(1000), Buffer.from('0123456789')])),
    chunk(3, P.ReplyType.OFFSET_HOLE, P.ReplyFlag.DONE, Buffer.concat([u64(1010), Buffer.from([0, 0, 0, 6])])),
    chunk(4, P.ReplyType.ERROR_OFFSET, P.ReplyFlag.DONE, errorPayload(5, 'disk on fire', 2048)),
    chunk(5, P.ReplyType.NONE, P.ReplyFlag.DONE, Buffer.alloc(0)),
  ]);
  const decode = (pieces: Buffer[]): P.ReplyEvent[] => {
    const d = new P.ReplyDecoder({ device: DEV, structuredReplies: true, payloadMaxBytes: 1 << 20, simpleDataBytes: (c) => reads.get(c) });
    const out = pieces.flatMap((p) => d.push(p));
    t.is(d.pendingBytes, 0);
    // Data comes as received pieces; join them to compare.
    return out.map((ev) => {
      if (ev.kind === 'simple' && ev.pieces) {
        const { pieces: ps, ...rest } = ev;
        return { ...rest, data: Buffer.concat(ps).toString() } as unknown as P.ReplyEvent;
      }
      if (ev.kind === 'data') {
        const { pieces: ps, ...rest } = ev;
        t.is(Buffer.concat(ps).length, ev.lengthBytes);
        return { ...rest, data: Buffer.concat(ps).toString() } as unknown as P.ReplyEvent;
      }
      return ev;
    });
  };
  const whole = decode([stream]);
  t.deepEqual(whole, [
    { kind: 'simple', cookie: 1, errno: 0, data: 'ABCDEFGH' },
    { kind: 'simple', cookie: 2, errno: 5 },
    { kind: 'data', cookie: 3, done: false, offsetBytes: 1000, lengthBytes: 10, data: '0123456789' },
    { kind: 'hole', cookie: 3, done: true, offsetBytes: 1010, lengthBytes: 6 },
    { kind: 'error', cookie: 4, done: true, errno: 5, message: 'disk on fire', offsetBytes: 2048 },
    { kind: 'none', cookie: 5, done: true },
  ]);
  for (let cut = 1; cut < stream.length; cut++) {
    t.deepEqual(decode([stream.subarray(0, cut), stream.subarray(cut)]), whole, `split at ${cut}`);
  }
  t.deepEqual(decode([...stream].map((b) => Buffer.from([b]))), whole, 'one byte at a time');
});

test('reply decoder rejects what the spec forbids, naming the stream offset', (t) => {
  const mk = (structured = true) =>
    new P.ReplyDecoder({ device: DEV, structuredReplies: structured, payloadMaxBytes: 4096 + 8, simpleDataBytes: (c) => (c === 1 ? 0 : undefined) });
  expectFormat(t, () => mk().push(simpleReply(9, 0)), /unknown cookie 9.*stream byte 8/);
  // Cookies are safe integers (Request.cookie): one above 2^53-1 is no request of ours, in either reply form.
  for (const reply of [simpleReply(0, 0), chunk(0, P.ReplyType.NONE, 1, Buffer.alloc(0))]) {
    reply.fill(0xff, 8, 16);
    expectFormat(t, () => mk().push(reply), /reply for unknown cookie 18446744073709551615 .*stream byte 8/);
  }
  expectFormat(t, () => mk(false).push(chunk(1, P.ReplyType.NONE, 1, Buffer.alloc(0))), /not negotiated/);
  expectFormat(t, () => mk().push(chunk(1, P.ReplyType.NONE, 0, Buffer.alloc(0))), /without the DONE flag/);
  expectFormat(t, () => mk().push(chunk(1, P.ReplyType.OFFSET_DATA, 1, u64(0))), /at least 9/);
  expectFormat(t, () => mk().push(chunk(1, P.ReplyType.OFFSET_HOLE, 1, Buffer.concat([u64(0), Buffer.alloc(4)]))), /hole of size 0/);
  expectFormat(t, () => mk().push(chunk(1, P.ReplyType.BLOCK_STATUS, 1, Buffer.alloc(12))), /unexpected structured reply type 5/);
  expectFormat(t, () => mk().push(chunk(1, P.ReplyType.ERROR, 1, errorPayload(0, 'x'))), /error value 0/);
  const over = errorPayload(5, 'abc');
  over.writeUInt16BE(200, 4);
  expectFormat(t, () => mk().push(chunk(1, P.ReplyType.ERROR, 1, over)), /overruns/);
  // Offsets are u64 on the wire; one past 2^53-1 cannot be a byte offset here (data, hole, error chunks).
  const past = Buffer.from('0020000000000000', 'hex');
  expectFormat(t, () => mk().push(chunk(1, P.ReplyType.OFFSET_DATA, 1, Buffer.concat([past, Buffer.alloc(1)]))), /data offset 9007199254740992 is larger than 2\^53-1.*stream byte 20/);
  expectFormat(t, () => mk().push(chunk(1, P.ReplyType.OFFSET_HOLE, 1, Buffer.concat([past, Buffer.from([0, 0, 0, 1])]))), /hole offset 9007199254740992 is larger/);
  expectFormat(t, () => mk().push(chunk(1, P.ReplyType.ERROR_OFFSET, 1, Buffer.concat([errorPayload(5, 'x'), past]))), /error offset 9007199254740992 is larger/);
  const hdr = chunk(1, P.ReplyType.OFFSET_DATA, 1, Buffer.alloc(0));
  hdr.writeUInt32BE(1 << 20, 16);
  expectFormat(t, () => mk().push(hdr), /exceeds/);
  // The offset counts from the start of the stream: a bad magic after one good 16-byte reply.
  const err = t.throws(() => mk().push(Buffer.concat([simpleReply(1, 0), Buffer.from('garbage!')])), { instanceOf: FormatError });
  t.is(err?.offsetBytes, 16);
  t.regex(err?.message ?? '', /bad reply magic/);
  // An unknown error type (bit 15 set) is still an error, not a protocol violation.
  const ev = mk().push(chunk(1, 0x8000 + 77, 1, Buffer.concat([errorPayload(28, 'full'), Buffer.alloc(4)])));
  t.like(ev[0], { kind: 'error', errno: 28, message: 'full' });
});

// ---- fuzz -------------------------------------------------------------------------------------


test('fuzz: random and bit-flipped input gives a result or a FormatError, never anything else', (t) => {
  const rnd = prng(fuzzSeed(t));
  const randomBytes = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
  const flip = (b: Buffer) => {
    const c = Buffer.from(b);
    const bits = 1 + Math.floor(rnd() * 3);
    for (let i = 0; i < bits; i++) c[Math.floor(rnd() * c.length)]! ^= 1 << Math.floor(rnd() * 8);
    return c;
  };
  const exportInfo = Buffer.from([0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5]);
  const valid = [
    greeting(3),
    optionReply(P.Opt.GO, P.Rep.INFO, exportInfo),
    simpleReply(1, 0, Buffer.alloc(8, 7)),
    chunk(2, P.ReplyType.OFFSET_DATA, 1, Buffer.concat([u64(0), Buffer.alloc(16, 1)])),
    chunk(2, P.ReplyType.OFFSET_HOLE, 1, Buffer.concat([u64(4), Buffer.from([0, 0, 0, 4])])),
    chunk(2, P.ReplyType.ERROR_OFFSET, 1, errorPayload(5, 'msg', 9)),
  ];
  let results = 0;
  for (let i = 0; i < 4000; i++) {
    const base = valid[i % valid.length]!;
    const input = i % 2 === 0 ? flip(base) : randomBytes(Math.floor(rnd() * 64));
    onlyFormatError(t, 'greeting', () => P.parseGreeting(input, DEV));
    onlyFormatError(t, 'option header', () => P.parseOptionReplyHeader(input, P.Opt.GO, DEV));
    onlyFormatError(t, 'info', () => P.parseInfoReply(input.subarray(Math.min(20, input.length)), DEV));
    onlyFormatError(t, 'info raw', () => P.parseInfoReply(input, DEV));
    onlyFormatError(t, 'export name reply', () => P.parseExportNameReply(input, DEV));
    onlyFormatError(t, 'decoder', () => {
      const d = new P.ReplyDecoder({
        device: DEV,
        structuredReplies: rnd() < 0.8,
        payloadMaxBytes: 4096,
        simpleDataBytes: (c) => (c < 4 ? c * 8 : undefined),
      });
      results += d.push(input).length;
      d.push(randomBytes(8));
    });
  }
  t.true(results > 0, 'some fuzzed inputs still decode');
});

test('reply decoder with a dataTarget: data lands in the caller buffers at every byte split, and in place through directBuffer/pushDirect', (t) => {
  // cookie 1: simple READ of 40 bytes; cookie 2: structured, two data chunks out of order and a hole.
  const d1 = Buffer.from('simple reply data, forty bytes long.....');
  const stream = Buffer.concat([
    simpleReply(1, 0, d1),
    chunk(2, P.ReplyType.OFFSET_DATA, 0, Buffer.concat([u64(5030), Buffer.from('second half')])),
    chunk(2, P.ReplyType.OFFSET_HOLE, 0, Buffer.concat([u64(5020), Buffer.from([0, 0, 0, 10])])),
    chunk(2, P.ReplyType.OFFSET_DATA, P.ReplyFlag.DONE, Buffer.concat([u64(5000), Buffer.from('the first 20 bytes..')])),
  ]);
  const run = (pieces: Buffer[], direct: boolean): { events: string[]; r1: string; r2: string } => {
    const r1 = Buffer.alloc(40);
    const r2 = Buffer.alloc(41, 0x2e);
    const d = new P.ReplyDecoder({
      device: DEV,
      structuredReplies: true,
      payloadMaxBytes: 4096,
      simpleDataBytes: (c) => (c === 1 ? 40 : undefined),
      dataTarget: (c, off, len) => (c === 1 ? r1 : r2.subarray(off! - 5000, off! - 5000 + len)),
    });
    const events: string[] = [];
    const note = (evs: P.ReplyEvent[]): void => {
      for (const ev of evs) events.push(`${ev.kind}:${ev.cookie}${'placed' in ev && ev.placed ? ':placed' : ''}`);
    };
    for (const piece of pieces) {
      let rest = piece;
      while (rest.length > 0) {
        const into = direct ? d.directBuffer(1) : undefined;
        if (into === undefined) {
          note(d.push(rest));
          break;
        }
        const n = Math.min(into.length, rest.length);
        rest.copy(into, 0, 0, n);
        note(d.pushDirect(n));
        rest = rest.subarray(n);
      }
    }
    t.is(d.pendingBytes, 0);
    return { events, r1: r1.toString(), r2: r2.toString('latin1') };
  };
  const expected = {
    events: ['simple:1:placed', 'data:2:placed', 'hole:2', 'data:2:placed'],
    r1: d1.toString(),
    r2: 'the first 20 bytes..' + '.'.repeat(10) + 'second half',
  };
  t.deepEqual(run([stream], false), expected);
  for (let cut = 1; cut < stream.length; cut++) {
    for (const direct of [false, true]) {
      t.deepEqual(run([stream.subarray(0, cut), stream.subarray(cut)], direct), expected, `split at ${cut}, direct ${direct}`);
    }
  }
  t.deepEqual(run([...stream].map((b) => Buffer.from([b])), true), expected, 'one byte at a time, in place');
  // A target that throws (a chunk outside its request) surfaces as the decoder's error.
  const bad = new P.ReplyDecoder({
    device: DEV,
    structuredReplies: true,
    payloadMaxBytes: 4096,
    simpleDataBytes: () => undefined,
    dataTarget: () => {
      throw new FormatError('outside the read');
    },
  });
  t.throws(() => bad.push(chunk(2, P.ReplyType.OFFSET_DATA, 1, Buffer.concat([u64(0), Buffer.alloc(4)]))), { message: 'outside the read' });
  t.throws(() => bad.pushDirect(4), { message: /pushDirect\(4\) without a matching directBuffer/ });
});
