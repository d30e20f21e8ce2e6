// The NBD client against a real nbdkit (file plugin) on 127.0.0.1 or a Unix socket, started by
// each test and killed in teardown. nbdkit is the judge of our handshake and requests: it refuses
// anything malformed, and with the blocksize-policy filter in "error" mode it refuses requests that
// break the block-size constraints it advertised.

import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { DiskError } from '../src/errors.js';
import { NBD_WAITERS_MAX, NbdDevice, NbdError, parseNbdUri, nbdDiskInfo } from '../src/disk/nbd-device.js';
import { openDevice } from '../src/disk/open.js';
import { startNbdkit, freePort, type Nbdkit, type NbdkitOptions } from './helpers/nbdkit.js';
import { tempDir } from './helpers/tmp.js';

const MiB = 1024 * 1024;

function image(dir: string, name: string, sizeBytes: number): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, '');
  fs.truncateSync(p, sizeBytes);
  return p;
}

async function server(t: ExecutionContext, opts: Partial<NbdkitOptions> & { dir: string }): Promise<Nbdkit> {
  const srv = await startNbdkit(opts);
  t.teardown(() => srv.stop('SIGKILL'));
  return srv;
}

async function open(t: ExecutionContext, spec: string, opts: Parameters<typeof NbdDevice.open>[1] = {}): Promise<NbdDevice> {
  const dev = await NbdDevice.open(spec, opts);
  t.teardown(() => dev.close().catch(() => undefined));
  return dev;
}

function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}

test('URIs: nbd://host:port/export, default port, IPv6, nbd+unix, timeouts; bad ones are EINVAL', (t) => {
  t.deepEqual(parseNbdUri('nbd://127.0.0.1:10810/disk%200?timeout=2s'), {
    address: { transport: 'tcp', host: '127.0.0.1', port: 10810 },
    exportName: 'disk 0',
    ioTimeoutMs: 2000,
    connectTimeoutMs: undefined,
  });
  t.like(parseNbdUri('nbd://localhost'), { address: { transport: 'tcp', host: 'localhost', port: 10809 }, exportName: '' });
  t.like(parseNbdUri('nbd://[::1]:99/x'), { address: { transport: 'tcp', host: '::1', port: 99 } });
  t.like(parseNbdUri('nbd+unix:///a.img?socket=/run/n.sock&connect-timeout=500ms'), {
    address: { transport: 'unix', socketPath: '/run/n.sock' },
    exportName: 'a.img',
    connectTimeoutMs: 500,
  });
  for (const bad of ['nbd://', 'nbd+unix:///x', 'nbd://h/x?frobnicate=1', 'nbd://h/x?timeout=soon', 'nbd://h/x?socket=/s', 'nbd+unix://h/x?socket=/s']) {
    const err = t.throws(() => parseNbdUri(bad), { instanceOf: DiskError }, bad);
    t.is(err?.code, 'EINVAL');
  }
});

test('handshake with nbdkit: NBD_OPT_GO export info, structured replies; data lands in the served file', async (t) => {
  const dir = tempDir(t);
  const file = image(dir, 'a.img', 16 * MiB);
  const srv = await server(t, { dir });
  const dev = await openDevice(srv.uri('a.img'));
  t.teardown(() => dev.close());
  t.true(dev instanceof NbdDevice);
  const nbd = dev as NbdDevice;
  t.is(dev.sizeBytes, 16 * MiB);
  t.is(dev.sectorSizeBytes, 512, 'no NBD_INFO_BLOCK_SIZE: 512');
  t.like(nbd.info, { exportName: 'a.img', via: 'NBD_OPT_GO', structuredReplies: true, canFlush: true, canFua: true, canTrim: true, serverReadOnly: false });
  const data = Buffer.from('hello over the network block device');
  await dev.write(data, 12345);
  const back = Buffer.alloc(data.length);
  await dev.read(back, 12345);
  t.deepEqual(back, data);
  t.deepEqual(fs.readFileSync(file).subarray(12345, 12345 + data.length), data, 'nbdkit wrote it to the file');
  // And the other way round: a change made to the file is what the next read returns (no cache).
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from('changed'), 0, 7, 12345);
  fs.closeSync(fd);
  await dev.read(back, 12345);
  t.is(back.subarray(0, 7).toString(), 'changed');
  await nbd.write(Buffer.alloc(4096, 9), 8192, { fua: true });
  await dev.flush();
  t.is(fs.readFileSync(file)[8192 + 4095], 9);
});

test('simple replies work too: the client without structured replies, and nbdkit --no-sr', async (t) => {
  const dir = tempDir(t);
  image(dir, 'a.img', 4 * MiB);
  for (const [label, srvFlags, structured] of [
    ['client declines', [], false],
    ['server lacks', ['--no-sr'], true],
  ] as const) {
    const srv = await server(t, { dir, flags: [...srvFlags] });
    const dev = await open(t, srv.uri('a.img'), { structuredReplies: structured });
    t.false(dev.info.structuredReplies, label);
    const data = Buffer.alloc(3 * 4096);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (structured ? 1 : 2)) & 0xff;
    await dev.write(data, 4096);
    const back = Buffer.alloc(data.length);
    await dev.read(back, 4096);
    t.deepEqual(back, data, label);
    await t.throwsAsync(dev.read(Buffer.alloc(512), 4 * MiB), { instanceOf: DiskError, message: /beyond end of device/ });
    await dev.close();
  }
});

test('over a Unix socket (nbd+unix://)', async (t) => {
  const dir = tempDir(t);
  image(dir, 'u.img', MiB);
  const srv = await server(t, { dir, unixSocket: true });
  const dev = await open(t, srv.uri('u.img'));
  await dev.write(Buffer.from('unix'), 0);
  const b = Buffer.alloc(4);
  await dev.read(b, 0);
  t.is(b.toString(), 'unix');
});

test('two clients of one export see each other’s writes at once (no client cache), many clients at once', async (t) => {
  const dir = tempDir(t);
  image(dir, 'shared.img', 8 * MiB);
  const srv = await server(t, { dir });
  const clients = await Promise.all(Array.from({ length: 6 }, () => open(t, srv.uri('shared.img'))));
  const [a, b] = clients as [NbdDevice, NbdDevice];
  const buf = Buffer.alloc(512);
  for (let round = 0; round < 50; round++) {
    const writer = round % 2 === 0 ? a : b;
    const reader = round % 2 === 0 ? b : a;
    await writer.write(Buffer.alloc(512, round), 4096);
    await reader.read(buf, 4096);
    t.is(buf[0], round, `round ${round}: the other client read the write just acknowledged`);
  }
  // Every client writes its own sectors concurrently; every client then reads all of them.
  await Promise.all(clients.map((c, i) => Promise.all(Array.from({ length: 32 }, (_, k) => c.write(Buffer.alloc(512, i + 1), (k * clients.length + i) * 512)))));
  for (const c of clients) {
    const all = Buffer.alloc(32 * clients.length * 512);
    await c.read(all, 0);
    for (let s = 0; s < 32 * clients.length; s++) {
      if (all[s * 512] !== (s % clients.length) + 1) t.fail(`sector ${s} holds ${all[s * 512]}`);
    }
  }
  t.pass();
});

// Serial: a timing claim must not share the event loop with the other tests of this file.
test.serial('pipelining: hundreds of requests in flight complete correctly, out of order', async (t) => {
  const dir = tempDir(t);
  image(dir, 'p.img', 32 * MiB);
  // The delay filter makes every read take 5 ms in nbdkit's 16 threads: 256 reads done one at a
  // time would take 1.3 s; pipelined they need about 80 ms. We ask for less than half of serial.
  const delayMs = 5;
  const srv = await server(t, { dir, filters: ['--filter=delay'], filterParams: [`rdelay=${delayMs}ms`] });
  const dev = await open(t, srv.uri('p.img'));
  const n = 256;
  await Promise.all(Array.from({ length: n }, (_, i) => dev.write(Buffer.alloc(4096, i & 0xff), i * 8192)));
  let maxInflight = 0;
  const t0 = performance.now();
  const reads = Array.from({ length: n }, async (_, i) => {
    const b = Buffer.alloc(4096);
    const p = dev.read(b, i * 8192);
    maxInflight = Math.max(maxInflight, dev.inflightRequests);
    await p;
    return b.every((x) => x === (i & 0xff));
  });
  const ok = await Promise.all(reads);
  const elapsedMs = performance.now() - t0;
  t.true(ok.every(Boolean));
  t.true(maxInflight >= 32 && maxInflight <= 64, `max in flight ${maxInflight} (bound: 64)`);
  t.true(elapsedMs < n * delayMs * 0.5, `pipelined reads took ${elapsedMs.toFixed(0)} ms`);
  t.log(`256 delayed reads pipelined in ${elapsedMs.toFixed(0)} ms, up to ${maxInflight} in flight`);
});

test('block-size constraints: minimum 4096 makes 4096-byte sectors; big I/O is split under the maximum; nbdkit enforces', async (t) => {
  const dir = tempDir(t);
  image(dir, 'b.img', 8 * MiB);
  const srv = await server(t, {
    dir,
    filters: ['--filter=blocksize-policy'],
    filterParams: ['blocksize-minimum=4096', 'blocksize-preferred=4096', 'blocksize-maximum=65536', 'blocksize-error-policy=error'],
  });
  const dev = await open(t, srv.uri('b.img'));
  t.deepEqual(dev.info.blockSize, { minimumBytes: 4096, preferredBytes: 4096, maximumBytes: 65536 });
  t.is(dev.sectorSizeBytes, 4096);
  const big = Buffer.alloc(MiB + 8192);
  for (let i = 0; i < big.length; i += 4096) big.fill(i / 4096, i, i + 4096);
  await dev.write(big, 4096); // 17 requests of at most 64 KiB, or nbdkit would answer EINVAL
  const back = Buffer.alloc(big.length);
  await dev.read(back, 4096);
  // Buffer.equals, not t.deepEqual: ava compares a Buffer byte by byte in JS (about 2 s of CPU for
  // this 1 MiB), blocking the event loop that the file's other tests share, so their NBD handshake
  // and request timers expired on a loaded machine.
  t.is(back.equals(big) ? -1 : back.findIndex((x, i) => x !== big[i]), -1, 'first byte that differs');
  // Unaligned reads are widened to whole blocks; unaligned writes are refused (a read-modify-write
  // would not be atomic against other clients).
  const odd = Buffer.alloc(10);
  await dev.read(odd, 4096 + 4090);
  t.deepEqual([...odd], [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]);
  const err = await t.throwsAsync(dev.write(Buffer.alloc(512), 512), { instanceOf: DiskError });
  t.is(err?.code, 'EALIGN');
  t.regex(err?.message ?? '', /minimum block size is 4096/);
});

test('discard reads back as zeros (WRITE_ZEROES); trim punches a hole in the served file; flush and FUA succeed', async (t) => {
  const dir = tempDir(t);
  const file = image(dir, 'd.img', 8 * MiB);
  const srv = await server(t, { dir });
  const dev = await open(t, srv.uri('d.img'));
  await dev.write(Buffer.alloc(4 * MiB, 0xaa), 0, { fua: true });
  await dev.flush();
  const before = allocatedBytes(file);
  t.true(before >= 4 * MiB);
  await dev.discard(MiB, 1000);
  const b = Buffer.alloc(2 * MiB);
  await dev.read(b, 0);
  t.true(b.subarray(MiB, MiB + 1000).every((x) => x === 0));
  t.is(b[MiB + 1000], 0xaa);
  t.is(b[MiB - 1], 0xaa);
  await dev.trim(2 * MiB, 2 * MiB);
  await dev.flush();
  t.true(allocatedBytes(file) <= before - 2 * MiB + 64 * 1024, `allocated ${allocatedBytes(file)} of ${before} after trimming 2 MiB`);
});

test('a read-only export: refused for read-write use, readable read-only, and writes are refused locally', async (t) => {
  const dir = tempDir(t);
  image(dir, 'ro.img', MiB);
  const srv = await server(t, { dir, flags: ['-r'] });
  const err = await t.throwsAsync(NbdDevice.open(srv.uri('ro.img')), { instanceOf: NbdError });
  t.is(err?.reason, 'refused');
  t.regex(err?.message ?? '', /read-only; open it read-only/);
  const dev = await open(t, srv.uri('ro.img'), { readOnly: true });
  t.true(dev.info.serverReadOnly);
  await dev.read(Buffer.alloc(512), 0);
  await t.throwsAsync(dev.write(Buffer.alloc(512), 0), { instanceOf: DiskError, message: /read-only/ });
});

test('clear errors: nothing listening, no such export, handshake timeout', async (t) => {
  const dir = tempDir(t);
  image(dir, 'a.img', MiB);
  const port = await freePort();
  const refused = await t.throwsAsync(NbdDevice.open(`nbd://127.0.0.1:${port}/a.img`), { instanceOf: NbdError });
  t.is(refused?.reason, 'refused');
  t.regex(refused?.message ?? '', /connection refused \(is the NBD server running\?\)/);
  const srv = await server(t, { dir });
  const missing = await t.throwsAsync(NbdDevice.open(srv.uri('nope.img')), { instanceOf: NbdError });
  t.is(missing?.code, 'ENOENT');
  t.regex(missing?.message ?? '', /no export named 'nope.img'/);
  // A server that refuses this client's address hangs up during the handshake.
  const denying = await server(t, { dir, filters: ['--filter=ip'], filterParams: ['deny=all'] });
  const denied = await t.throwsAsync(NbdDevice.open(denying.uri('a.img')), { instanceOf: NbdError });
  t.is(denied?.reason, 'refused');
  t.regex(denied?.message ?? '', /closed the connection during the NBD handshake \(it refused this client or this export\)/);
  // A listener that never speaks: the handshake is bounded.
  const net = await import('node:net');
  const mute = net.createServer(() => undefined);
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => mute.close(() => r())));
  const mutePort = (mute.address() as import('node:net').AddressInfo).port;
  const t0 = Date.now();
  const silent = await t.throwsAsync(NbdDevice.open(`nbd://127.0.0.1:${mutePort}/a.img?connect-timeout=300ms`), { instanceOf: NbdError });
  t.is(silent?.reason, 'timeout');
  t.true(Date.now() - t0 < 3000);
  // Something that is not an NBD server at all.
  const http = net.createServer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => http.close(() => r())));
  const httpPort = (http.address() as import('node:net').AddressInfo).port;
  await t.throwsAsync(NbdDevice.open(`nbd://127.0.0.1:${httpPort}/a.img`), { message: /NBDMAGIC|closed the connection during the NBD handshake/ });
});

test('server errors come back as errors naming the operation and the errno; the connection stays usable', async (t) => {
  const dir = tempDir(t);
  image(dir, 'e.img', MiB);
  const trigger = path.join(tempDir(t), 'fail-now');
  const srv = await server(t, {
    dir,
    filters: ['--filter=error'],
    filterParams: ['error-pwrite=ENOSPC', 'error-pwrite-rate=100%', `error-pwrite-file=${trigger}`, 'error-pread=EIO', 'error-pread-rate=100%', `error-pread-file=${trigger}`],
  });
  for (const structured of [true, false]) {
    const dev = await open(t, srv.uri('e.img'), { structuredReplies: structured });
    await dev.write(Buffer.alloc(512, 1), 0);
    fs.writeFileSync(trigger, '');
    const w = await t.throwsAsync(dev.write(Buffer.alloc(512, 2), 512), { instanceOf: NbdError });
    t.is(w?.reason, 'server-error');
    t.is(w?.serverErrno, 'ENOSPC');
    t.regex(w?.message ?? '', /the server failed WRITE at offset 512 length 512: ENOSPC/);
    const r = await t.throwsAsync(dev.read(Buffer.alloc(512), 0), { instanceOf: NbdError });
    t.is(r?.serverErrno, 'EIO');
    fs.rmSync(trigger);
    const b = Buffer.alloc(1024);
    await dev.read(b, 0);
    t.is(b[0], 1);
    t.is(b[512], 0, 'the failed write did not land');
  }
});

test('every write passes the write gate: left once it settles (success or server error); a fenced write rejects, is not sent, and leaves nothing held', async (t) => {
  const dir = tempDir(t);
  const file = image(dir, 'g.img', MiB);
  const trigger = path.join(tempDir(t), 'fail-now');
  const srv = await server(t, { dir, filters: ['--filter=error'], filterParams: ['error-pwrite=ENOSPC', 'error-pwrite-rate=100%', `error-pwrite-file=${trigger}`] });
  const gate = { fenced: false, entered: 0, left: 0 };
  const dev = await open(t, srv.uri('g.img'), {
    gate: {
      enter(deviceName: string, offsetBytes: number): void {
        if (gate.fenced) throw new DiskError('EFENCED', `${deviceName}: write at offset ${offsetBytes} refused: fenced`, { device: deviceName, offsetBytes });
        gate.entered++;
      },
      check(deviceName: string, offsetBytes: number): void {
        if (gate.fenced) throw new DiskError('EFENCED', `${deviceName}: write at offset ${offsetBytes} refused: fenced`, { device: deviceName, offsetBytes });
      },
      leave(): void {
        gate.left++;
      },
    },
  });
  const w = dev.write(Buffer.alloc(512, 1), 0);
  t.is(gate.entered, 1, 'entered before the request is sent');
  t.is(gate.left, 0, 'held while the request is on the wire');
  await w;
  t.is(gate.left, 1);
  fs.writeFileSync(trigger, '');
  await t.throwsAsync(dev.write(Buffer.alloc(512, 2), 512), { instanceOf: NbdError, message: /ENOSPC/ });
  t.deepEqual([gate.entered, gate.left], [2, 2], 'left after a server error too');
  fs.rmSync(trigger);
  gate.fenced = true;
  let fenced: Promise<void> | undefined;
  t.notThrows(() => (fenced = dev.write(Buffer.alloc(512, 3), 1024)), 'a refused write rejects; it does not throw');
  await t.throwsAsync(fenced!, { instanceOf: DiskError, message: /refused: fenced/ });
  t.deepEqual([gate.entered, gate.left], [2, 2], 'a refused enter is not left');
  t.is(dev.inflightRequests, 0);
  await dev.flush();
  t.is(fs.readFileSync(file)[1024], 0, 'the fenced write was not sent');
  t.is(fs.readFileSync(file)[0], 1);
});

test('the write gate is left exactly once on every path of a one-request write: sent at once, queued behind a full pipeline, refused as queue-full, failed by a lost connection', async (t) => {
  const dir = tempDir(t);
  image(dir, 'gq.img', 8 * MiB);
  const srv = await server(t, { dir });
  const held = { entered: 0, left: 0 };
  const dev = await open(t, srv.uri('gq.img'), {
    gate: {
      enter(): void {
        held.entered++;
      },
      check(): void {},
      leave(): void {
        held.left++;
        if (held.left > held.entered) throw new Error('left more often than entered');
      },
    },
  });
  // Issued in one synchronous loop: 64 go on the wire, NBD_WAITERS_MAX wait for room, one is refused.
  const count = 64 + NBD_WAITERS_MAX + 1;
  const results = await Promise.all(
    Array.from({ length: count }, (_, i) => dev.write(Buffer.alloc(512, i & 0xff), (i % 1000) * 512).then(() => 'ok', (err: unknown) => err)),
  );
  t.is(results.filter((r) => r !== 'ok').length, 1, 'one refused as queue-full');
  t.deepEqual([held.entered, held.left], [count, count], 'every write, the refused one too, left the gate');
  // Writes outstanding when the connection is lost (64 on the wire, 40 waiting for room) fail, and leave the gate too.
  const outstanding = Array.from({ length: 64 + 40 }, (_, i) => dev.write(Buffer.alloc(512, 1), i * 512).then(() => 'ok', (err: unknown) => err));
  t.is(held.entered - held.left, 64 + 40, 'held while on the wire or waiting');
  await srv.stop('SIGKILL');
  await Promise.all(outstanding);
  t.is(held.left, held.entered, 'left after the connection was lost');
  await t.throwsAsync(dev.write(Buffer.alloc(512), 0), { instanceOf: NbdError });
  t.is(held.left, held.entered, 'a write on a dead device leaves what it entered');
});
test.serial('a server that stops answering: the request times out, and the device stays failed (no reconnect)', async (t) => {
  const dir = tempDir(t);
  image(dir, 's.img', MiB);
  const srv = await server(t, { dir, filters: ['--filter=delay'], filterParams: ['wdelay=5'] });
  const dev = await open(t, srv.uri('s.img', 'timeout=1s'));
  t.is(dev.ioTimeoutMs, 1000);
  await dev.read(Buffer.alloc(512), 0);
  const t0 = Date.now();
  const err = await t.throwsAsync(dev.write(Buffer.alloc(512, 1), 0), { instanceOf: NbdError });
  t.true(Date.now() - t0 < 4000);
  t.is(err?.reason, 'timeout');
  t.regex(err?.message ?? '', /WRITE at offset 0 length 512 failed: NBD request timed out: no reply within 1000 ms.*may or may not have landed/);
  const later = await t.throwsAsync(dev.read(Buffer.alloc(512), 0), { instanceOf: NbdError });
  t.is(later?.reason, 'timeout', 'later I/O fails with the same, final reason');
});

test('killing the server mid-I/O: every outstanding request fails clearly, and every write that succeeded is in the file', async (t) => {
  const dir = tempDir(t);
  const file = image(dir, 'k.img', 16 * MiB);
  const srv = await server(t, { dir });
  const dev = await open(t, srv.uri('k.img'));
  const sectors = 16 * MiB / 512;
  const acked = new Set<number>();
  const failures: NbdError[] = [];
  let next = 0;
  let killed = false;
  const record = (s: number) => {
    const b = Buffer.alloc(512, 0x5a);
    b.writeUInt32LE(s, 0);
    b.writeUInt32LE(0xc0ffee, 4);
    return b;
  };
  // 8 writers, each keeping a write in flight until the device fails.
  const writers = Array.from({ length: 8 }, async () => {
    while (next < sectors) {
      const s = next++;
      try {
        await dev.write(record(s), s * 512);
        acked.add(s);
      } catch (err) {
        if (!(err instanceof NbdError)) throw err;
        failures.push(err);
        return;
      }
    }
  });
  while (acked.size < 500) await new Promise((r) => setTimeout(r, 1));
  await srv.stop('SIGKILL');
  killed = true;
  await Promise.all(writers);
  t.true(killed);
  t.true(failures.length >= 1, 'writes in flight when the server died failed');
  for (const f of failures) {
    t.is(f.reason, 'disconnected');
    t.regex(f.message, /WRITE at offset \d+ length 512 failed: NBD connection lost: .*may or may not have landed/);
  }
  const after = await t.throwsAsync(dev.read(Buffer.alloc(512), 0), { instanceOf: NbdError });
  t.is(after?.reason, 'disconnected');
  await t.throwsAsync(dev.flush(), { instanceOf: NbdError });
  // Nothing claimed success that did not happen: every acknowledged write is in the file.
  const data = fs.readFileSync(file);
  let missing = 0;
  for (const s of acked) if (data.readUInt32LE(s * 512 + 4) !== 0xc0ffee || data.readUInt32LE(s * 512) !== s) missing++;
  t.is(missing, 0, `${acked.size} acknowledged writes checked`);
  t.log(`${acked.size} writes acknowledged before the kill, ${failures.length} failed with: ${failures[0]?.message}`);
});

test('close sends NBD_CMD_DISC after outstanding requests finish; I/O after close is ECLOSED', async (t) => {
  const dir = tempDir(t);
  image(dir, 'c.img', MiB);
  const srv = await server(t, { dir, filters: ['--filter=delay'], filterParams: ['wdelay=50ms'] });
  const dev = await NbdDevice.open(srv.uri('c.img'));
  const w = dev.write(Buffer.alloc(512, 3), 0);
  const closing = dev.close();
  await w; // the in-flight write still completes
  await closing;
  const err = await t.throwsAsync(dev.read(Buffer.alloc(512), 0), { instanceOf: DiskError });
  t.is(err?.code, 'ECLOSED');
  const again = await NbdDevice.open(srv.uri('c.img'));
  const b = Buffer.alloc(1);
  await again.read(b, 0);
  t.is(b[0], 3);
  await again.close();
});

test('sanbox-style info from the server: nbdDiskInfo', async (t) => {
  const dir = tempDir(t);
  image(dir, 'i.img', 3 * MiB);
  const srv = await server(t, { dir, filters: ['--filter=blocksize-policy'], filterParams: ['blocksize-minimum=4096'] });
  const info = await nbdDiskInfo(srv.uri('i.img'));
  t.like(info, { sizeBytes: 3 * MiB, sectorSizeBytes: 4096, exportName: 'i.img' });
});

test('fencing at the target: one nbdkit per node on one image; cutting node A’s server stops A for good, B carries on', async (t) => {
  const dir = tempDir(t);
  const file = image(dir, 'f.img', MiB);
  const serverA = await server(t, { dir });
  const serverB = await server(t, { dir });
  const a = await open(t, serverA.uri('f.img'));
  const b = await open(t, serverB.uri('f.img'));
  await a.write(Buffer.alloc(512, 0xa1), 0);
  const seen = Buffer.alloc(512);
  await b.read(seen, 0);
  t.is(seen[0], 0xa1, 'two servers on one file are coherent');
  await serverA.stop('SIGKILL'); // the fence: node A's connection is cut at the server side
  const err = await t.throwsAsync(a.write(Buffer.alloc(512, 0xa2), 512), { instanceOf: NbdError });
  t.is(err?.reason, 'disconnected');
  // No reconnect: A's device stays failed, with the same reason.
  const again = await t.throwsAsync(a.write(Buffer.alloc(512, 0xa3), 512), { instanceOf: NbdError });
  t.is(again?.reason, 'disconnected');
  await b.write(Buffer.alloc(512, 0xb1), 1024);
  const data = fs.readFileSync(file);
  t.is(data[512], 0, 'nothing of the fenced node landed');
  t.is(data[1024], 0xb1);
});

test('ESHUTDOWN from the server: that request fails, nothing new is sent, the client disconnects softly', async (t) => {
  const dir = tempDir(t);
  image(dir, 'sd.img', MiB);
  const trigger = path.join(tempDir(t), 'shutting-down');
  const srv = await server(t, { dir, filters: ['--filter=error'], filterParams: ['error-pread=ESHUTDOWN', 'error-pread-rate=100%', `error-pread-file=${trigger}`] });
  const dev = await open(t, srv.uri('sd.img'));
  await dev.write(Buffer.alloc(512, 1), 0);
  fs.writeFileSync(trigger, '');
  const err = await t.throwsAsync(dev.read(Buffer.alloc(512), 0), { instanceOf: NbdError });
  t.is(err?.serverErrno, 'ESHUTDOWN');
  fs.rmSync(trigger);
  const after = await t.throwsAsync(dev.write(Buffer.alloc(512, 2), 512), { instanceOf: NbdError });
  t.is(after?.reason, 'disconnected');
  t.regex(after?.message ?? '', /shutting down/);
});

test('I/O larger than the pipeline byte bound (64 MiB) is split into 32 MiB requests and completes', async (t) => {
  const dir = tempDir(t);
  const file = image(dir, 'big.img', 96 * MiB);
  const srv = await server(t, { dir });
  const dev = await open(t, srv.uri('big.img'));
  const big = Buffer.alloc(80 * MiB);
  for (let i = 0; i < big.length; i += MiB) big.fill((i / MiB) & 0xff, i, i + MiB);
  await dev.write(big, 8 * MiB);
  const back = Buffer.alloc(big.length);
  await dev.read(back, 8 * MiB);
  t.true(back.equals(big));
  const fd = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(fd));
  const probe = Buffer.alloc(1);
  fs.readSync(fd, probe, 0, 1, 8 * MiB + 79 * MiB);
  t.is(probe[0], 79);
});

test('the waiter queue is bounded: past NBD_WAITERS_MAX queued requests, a request fails at once with EAGAIN; the rest complete', async (t) => {
  const dir = tempDir(t);
  image(dir, 'q.img', 8 * MiB);
  // The requests are issued in one synchronous loop, so no reply can free room meanwhile.
  const srv = await server(t, { dir });
  const dev = await open(t, srv.uri('q.img'));
  const onWire = 64; // INFLIGHT_MAX
  const issued = Array.from({ length: onWire + NBD_WAITERS_MAX + 1 }, (_, i) => dev.read(Buffer.alloc(512), (i % 1000) * 512).then(
    () => 'ok',
    (err: unknown) => err,
  ));
  const results = await Promise.all(issued);
  const refused = results.filter((r) => r !== 'ok');
  t.is(refused.length, 1, 'exactly the request past the bound is refused');
  const err = refused[0] as NbdError;
  t.true(err instanceof NbdError);
  t.is(err.code, 'EAGAIN');
  t.is(err.reason, 'queue-full');
  t.regex(err.message, new RegExp(`READ at offset \\d+ length 512 refused: ${NBD_WAITERS_MAX} requests already wait for room in the NBD pipeline`));
  t.is(results.indexOf(err), results.length - 1, 'it is the last one issued');
  // The device is still usable.
  await dev.write(Buffer.alloc(512, 1), 0);
});
