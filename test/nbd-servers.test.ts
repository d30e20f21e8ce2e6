// The NBD client's contract against both real servers sanbox documents: nbdkit (file plugin) and
// qemu-nbd (Debian's qemu-utils). Each test runs once per server, on 127.0.0.1 or a Unix socket,
// and judges the result by reading the served file directly. nbd-device.test.ts goes deeper with
// nbdkit's filters (delays, errors, block-size policy), which qemu-nbd has no equivalent of.

import test, { type ExecutionContext } from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { NbdDevice, NbdError } from '../src/disk/nbd-device.js';
import { NBD_SERVER_KINDS, startNbdServer, type NbdServer, type NbdServerKind } from './helpers/nbdkit.js';
import { runSanbox, tempDir } from './helpers/tmp.js';

const MiB = 1024 * 1024;
const EXPORT = 'disk.img';

async function served(t: ExecutionContext, kind: NbdServerKind, sizeBytes: number, opts: { unixSocket?: boolean } = {}): Promise<{ srv: NbdServer; file: string; uri: string }> {
  const dir = tempDir(t);
  const file = path.join(dir, EXPORT);
  fs.writeFileSync(file, '');
  fs.truncateSync(file, sizeBytes);
  const srv = await startNbdServer(kind, file, opts);
  t.teardown(() => srv.stop('SIGKILL'));
  return { srv, file, uri: srv.uri(EXPORT) };
}

async function open(t: ExecutionContext, uri: string): Promise<NbdDevice> {
  const dev = await NbdDevice.open(uri);
  t.teardown(() => dev.close().catch(() => undefined));
  return dev;
}

function fileBytes(file: string, offsetBytes: number, lengthBytes: number): Buffer {
  const b = Buffer.alloc(lengthBytes);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, b, 0, lengthBytes, offsetBytes);
  } finally {
    fs.closeSync(fd);
  }
  return b;
}

for (const kind of NBD_SERVER_KINDS) {
  test(`${kind}: handshake, and reads and writes from 512 B to 40 MiB land byte for byte in the served file`, async (t) => {
    const { file, uri } = await served(t, kind, 64 * MiB);
    const dev = await open(t, uri);
    t.is(dev.sizeBytes, 64 * MiB);
    t.is(dev.sectorSizeBytes, 512);
    t.true(dev.info.structuredReplies, 'both servers offer structured replies');
    t.is(dev.info.via, 'NBD_OPT_GO');
    for (const [offsetBytes, lengthBytes] of [
      [512, 512],
      [3 * 4096, 4096],
      [5 * MiB + 512, 3 * MiB],
      [20 * MiB, 40 * MiB], // more than one request (32 MiB is the payload cap of both)
    ] as const) {
      const data = crypto.randomBytes(lengthBytes);
      await dev.write(data, offsetBytes);
      t.true(fileBytes(file, offsetBytes, lengthBytes).equals(data), `write of ${lengthBytes} at ${offsetBytes} is in the file`);
      const back = Buffer.alloc(lengthBytes);
      await dev.read(back, offsetBytes);
      t.true(back.equals(data), `read of ${lengthBytes} at ${offsetBytes}`);
    }
  });

  test(`${kind}: pipelined I/O: 512 small writes and 16 concurrent 1 MiB reads complete with the right data`, async (t) => {
    const { file, uri } = await served(t, kind, 32 * MiB);
    const dev = await open(t, uri);
    const image = crypto.randomBytes(32 * MiB);
    fs.writeFileSync(file, image);
    // Small writes at random sectors, all in flight at once (more than the pipeline holds).
    const sectors = Array.from({ length: 512 }, (_, i) => i * 97 + (i % 7));
    await Promise.all(sectors.map((s) => dev.write(Buffer.alloc(512, s & 0xff), s * 512)));
    for (const s of sectors) image.fill(s & 0xff, s * 512, s * 512 + 512);
    t.true(fs.readFileSync(file).equals(image), 'every write is in the file');
    // Large replies interleave on the wire; each must land in its own buffer.
    const reads = await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const b = Buffer.alloc(MiB);
        await dev.read(b, (31 - 2 * i) * MiB);
        return b.equals(image.subarray((31 - 2 * i) * MiB, (32 - 2 * i) * MiB));
      }),
    );
    t.deepEqual(reads, Array.from({ length: 16 }, () => true));
    // Unaligned reads are widened by the client; small ones mixed with large ones.
    const mixed = await Promise.all(
      Array.from({ length: 64 }, async (_, i) => {
        const len = i % 2 === 0 ? 1000 + i : 256 * 1024 + i;
        const at = i * 401_111;
        const b = Buffer.alloc(len);
        await dev.read(b, at);
        return b.equals(image.subarray(at, at + len));
      }),
    );
    t.true(mixed.every(Boolean));
  });

  test(`${kind}: over a Unix socket; two clients of one export see each other's writes at once`, async (t) => {
    const { srv, uri } = await served(t, kind, 4 * MiB, { unixSocket: true });
    t.regex(uri, /^nbd\+unix:\/\/\//);
    const a = await open(t, uri);
    const b = await open(t, srv.uri(EXPORT));
    for (let round = 0; round < 20; round++) {
      const data = Buffer.alloc(4096, round + 1);
      await a.write(data, round * 4096);
      const seen = Buffer.alloc(4096);
      await b.read(seen, round * 4096);
      t.true(seen.equals(data), `round ${round}`);
    }
  });

  test(`${kind}: discard reads back as zeros, trim and flush and FUA writes succeed`, async (t) => {
    const { file, uri } = await served(t, kind, 8 * MiB);
    const dev = await open(t, uri);
    t.true(dev.info.canWriteZeroes && dev.info.canTrim && dev.info.canFlush && dev.info.canFua);
    await dev.write(Buffer.alloc(2 * MiB, 0xee), MiB);
    await dev.discard(MiB + 4096, MiB);
    t.true(fileBytes(file, MiB + 4096, MiB).equals(Buffer.alloc(MiB)), 'the discarded range is zeros in the file');
    t.is(fileBytes(file, MiB, 4096)[0], 0xee, 'before the range is untouched');
    await dev.trim(2 * MiB + 4096, 4096);
    await dev.write(Buffer.alloc(4096, 0x11), 0, { fua: true });
    await dev.flush();
    t.is(fileBytes(file, 0, 1)[0], 0x11);
  });

  test(`${kind}: an unknown export is refused; killing the server fails every outstanding request, and acknowledged writes are in the file`, async (t) => {
    const { srv, file, uri } = await served(t, kind, 16 * MiB);
    const missing = await t.throwsAsync(NbdDevice.open(srv.uri('nope.img')), { instanceOf: NbdError });
    t.is(missing?.reason, 'refused');
    t.regex(missing?.message ?? '', /no export named 'nope\.img'/);
    const dev = await open(t, uri);
    const acked: number[] = [];
    const failures: NbdError[] = [];
    let stop = false;
    const writers = Array.from({ length: 8 }, async (_, w) => {
      for (let i = 0; !stop && i < 100_000; i++) {
        const sector = (w * 4000 + i) % 32768;
        try {
          await dev.write(Buffer.alloc(512, (sector % 250) + 1), sector * 512);
          acked.push(sector);
        } catch (err) {
          failures.push(err as NbdError);
          return;
        }
      }
    });
    await new Promise((r) => setTimeout(r, 300));
    await srv.stop('SIGKILL');
    stop = true;
    await Promise.all(writers);
    t.true(acked.length > 0, 'writes were acknowledged before the kill');
    t.true(failures.length > 0, 'the kill failed requests');
    for (const f of failures) {
      t.true(f instanceof NbdError && f.reason === 'disconnected', f.message);
      t.regex(f.message, /may or may not have landed/);
    }
    const data = fs.readFileSync(file);
    for (const s of acked) t.is(data[s * 512], (s % 250) + 1, `acknowledged sector ${s}`);
    await t.throwsAsync(dev.read(Buffer.alloc(512), 0), { instanceOf: NbdError }, 'the device stays failed');
  });

  test(`${kind}: sanbox disk create and cluster init write through the export`, async (t) => {
    // Larger than a default cluster image (its lockspace holds thousands of lock records).
    const { file, uri } = await served(t, kind, 64 * MiB);
    fs.writeFileSync(file, Buffer.alloc(4096, 0x77), { flag: 'r+' });
    const refused = await runSanbox(t, ['disk', 'create', uri, '--size', '64M']);
    t.is(refused.code, 1);
    t.regex(refused.stderr, /holds data at byte 0; it may be in use \(use --force to zero it\)/);
    const made = await runSanbox(t, ['disk', 'create', uri, '--size', '64M', '--force']);
    t.is(made.code, 0, made.stderr);
    t.true(fs.readFileSync(file).equals(Buffer.alloc(64 * MiB)), 'the export is zeroed');
    const init = await runSanbox(t, ['cluster', 'init', uri, '--nodes', '2', '--name', `on-${kind}`]);
    t.is(init.code, 0, init.stderr);
    const status = await runSanbox(t, ['cluster', 'status', file, '--json']);
    t.is(status.code, 0, status.stderr);
    t.regex(status.stdout, new RegExp(`on-${kind}`), 'the served file is a cluster image');
  });
}
