// The cluster image format: round trips, refusals with device and offset, fuzzing of every
// region codec (only FormatError may come out), openRegion('lockspace'), and `cluster init`.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { FormatError } from '../src/errors.js';
import { BLOCK_BYTES, decodeClusterHeader, decodeConfig, decodeRegionHeader, encodeClusterHeader, encodeConfig, encodeRegionHeader, planRegions } from '../src/format/cluster-image.js';
import { decodeNodeRecord, encodeNodeRecord, NODE_CLIENTS_MAX } from '../src/format/node-record.js';
import { sealCrc32Zlib } from '../src/format/crc32.js';
import { decodeReservationCopies, decodeReservations, emptyReservations, encodeReservations } from '../src/format/reservations.js';
import { initClusterImage, openRegion, readClusterImage } from '../src/heartbeat/cluster-image.js';
import { presetTiming } from '../src/timing.js';
import { runSanbox, spawnChild, tempDir, SANBOX_BIN, waitFor, collect } from './helpers/tmp.js';
import { fuzzRandom, type FuzzRandom } from './helpers/fuzz.js';

function fuzz(t: import('ava').ExecutionContext, rnd: FuzzRandom, good: Buffer, decode: (b: Buffer) => unknown, iterations = 1500): void {
  let rejected = 0;
  for (let i = 0; i < iterations; i++) {
    let b: Buffer;
    if (i % 4 === 0) b = rnd.bytes(good.length);
    else if (i % 4 === 1) b = good.subarray(0, rnd.int(good.length));
    else {
      b = Buffer.from(good);
      const bit = rnd.int(b.length * 8);
      b[bit >> 3]! ^= 1 << (bit & 7);
    }
    try {
      decode(b);
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      rejected++;
    }
  }
  // Every bit flip and every truncation must be refused (CRC or size).
  t.true(rejected >= iterations * 0.7, `${rejected} of ${iterations} refused`);
}

const uuid = Buffer.alloc(16, 0xab);
const plan = planRegions({ sectorSizeBytes: 512, nodeCount: 4, lockspaceBytes: 1 << 20 });
const header = { version: 1, sectorSizeBytes: 512 as const, imageSizeBytes: plan.imageSizeBytes, clusterUuid: uuid, regions: plan.regions };
const config = { clusterName: 'fz', nodeCount: 4, intervalMs: 100, deadThreshold: 15, ioTimeoutMs: 500, timingPreset: 'local', runDir: '/tmp/x', nodeNames: ['a', 'b', '', 'd'] };

test('codecs round-trip and refuse corruption with the offset', (t) => {
  const h = encodeClusterHeader(header);
  t.deepEqual(decodeClusterHeader(h).regions, plan.regions);
  const c = encodeConfig(config);
  t.deepEqual(decodeConfig(c), config);
  const r = encodeRegionHeader({ name: 'lockspace', version: 1, payloadBytes: 1 << 20, clusterUuid: uuid });
  t.is(decodeRegionHeader(r).name, 'lockspace');
  const bad = Buffer.from(h);
  bad[0x44] ^= 1;
  const e = t.throws(() => decodeClusterHeader(bad, { device: 'c.img', offsetBytes: 0 }), { instanceOf: FormatError });
  t.regex(e!.message, /^c\.img: cluster header has a bad checksum/);
  t.is(e!.offsetBytes, BLOCK_BYTES - 4);
  const v2 = Buffer.from(h);
  v2.writeUInt32LE(2, 8);
  t.throws(() => decodeClusterHeader(v2), { message: /version 2 is not supported/ });
  t.throws(() => encodeClusterHeader({ ...header, regions: [...plan.regions, { name: 'extra', offsetBytes: plan.regions[1]!.offsetBytes, sizeBytes: 8192 }] }), { message: /overlaps/ });
  t.throws(() => encodeConfig({ ...config, clusterName: 'x'.repeat(65) }), { instanceOf: FormatError });
});

test('node record: the clients table round-trips; a bad entry or too many clients is a FormatError', (t) => {
  const base = { nodeId: 3, generation: 5n, pid: 42, pidStartTicks: 99n, bootId: uuid, joinedAtMs: 1, prKey: 7n, name: 'n3', hostname: 'h' };
  const clients = Array.from({ length: NODE_CLIENTS_MAX }, (_, i) => ({ pid: 1000 + i, startTicks: BigInt(i) * 0x1_0000_0001n }));
  t.deepEqual(decodeNodeRecord(encodeNodeRecord({ ...base, clients }), 3)!.clients, clients);
  t.deepEqual(decodeNodeRecord(encodeNodeRecord(base), 3)!.clients, [], 'no clients: the table is all zero');
  t.throws(() => encodeNodeRecord({ ...base, clients: [...clients, { pid: 1, startTicks: 1n }] }), { instanceOf: FormatError, message: /17 clients, more than 16/ });
  t.throws(() => encodeNodeRecord({ ...base, clients: [{ pid: 0, startTicks: 1n }] }), { instanceOf: FormatError, message: /client pid 0 does not fit/ });
  // Sealed again after the change, so the entry's own check speaks, not the CRC.
  const resealed = (edit: (b: Buffer) => void): Buffer => {
    const b = encodeNodeRecord({ ...base, clients: clients.slice(0, 2) });
    edit(b);
    sealCrc32Zlib(b, 0x1fc);
    return b;
  };
  t.throws(() => decodeNodeRecord(resealed((b) => b.writeUInt32LE(1, 0xd8 + 4)), 3, { device: 'c.img', offsetBytes: 4096 }), { instanceOf: FormatError, message: /client entry 0 has a non-zero reserved field/ });
  t.throws(() => decodeNodeRecord(resealed((b) => b.writeBigUInt64LE(9n, 0xd8 + 2 * 16 + 8)), 3), { instanceOf: FormatError, message: /client entry 2 has a start time but no pid/ });
});

test('fuzz: cluster header, region header, config, node record, reservations', (t) => {
  const rnd = fuzzRandom(t);
  fuzz(t, rnd, encodeClusterHeader(header), (b) => decodeClusterHeader(b, { device: 'f', offsetBytes: 0 }));
  fuzz(t, rnd, encodeRegionHeader({ name: 'config', version: 1, payloadBytes: 4096, clusterUuid: uuid }), (b) => decodeRegionHeader(b));
  fuzz(t, rnd, encodeConfig(config), (b) => decodeConfig(b));
  const rec = encodeNodeRecord({ nodeId: 3, generation: 5n, pid: 42, pidStartTicks: 99n, bootId: uuid, joinedAtMs: 1, prKey: 7n, name: 'n3', hostname: 'h', clients: [{ pid: 77, startTicks: 1234n }] });
  t.is(decodeNodeRecord(rec, 3)!.name, 'n3');
  t.is(decodeNodeRecord(Buffer.alloc(512), 3), null);
  t.throws(() => decodeNodeRecord(rec, 2), { message: /names node 3/ });
  fuzz(t, rnd, rec, (b) => decodeNodeRecord(b, 3));
  const s = emptyReservations();
  s.registered[1] = 0x1234n;
  s.reservationKey = 0x1234n;
  s.reservationType = 5;
  s.updateSeq = 4n;
  const pr = encodeReservations(s);
  t.is(decodeReservations(pr)!.registered[1], 0x1234n);
  fuzz(t, rnd, pr, (b) => decodeReservations(b), 600);
  // Both copies corrupt: an error, never a silently empty state.
  t.throws(() => decodeReservationCopies(Buffer.concat([rnd.bytes(8192), rnd.bytes(8192)])), { instanceOf: FormatError });
});

test('openRegion(image, "lockspace") is a bounded view of the lockspace payload', async (t) => {
  const img = path.join(tempDir(t), 'c.img');
  await initClusterImage(img, { clusterName: 'ls', nodeCount: 3, timing: presetTiming('local'), lockspaceBytes: 256 * 1024, sectorSizeBytes: 4096 });
  const ls = await openRegion(img, 'lockspace');
  t.teardown(() => ls.closeAll());
  t.is(ls.sizeBytes, 256 * 1024);
  t.is(ls.sectorSizeBytes, 4096);
  await ls.write(Buffer.alloc(4096, 0x5a), ls.sizeBytes - 4096);
  await t.throwsAsync(ls.write(Buffer.alloc(4096), ls.sizeBytes), { message: /beyond end/ });
  // Nothing else was touched: the image still validates.
  const info = await readClusterImage(img);
  t.is(info.config.clusterName, 'ls');
  t.is(info.header.sectorSizeBytes, 4096);
  await t.throwsAsync(openRegion(img, 'containers'), { message: /no region 'containers'/ });
});

test('cluster init: output, refusals (exists, bad values, in use), o2cb preset and custom timing', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  const r = await runSanbox(t, ['cluster', 'init', img, '--nodes', '3', '--name', 'prod', '--timing', 'o2cb', '--json']);
  t.is(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { timing: { deadMs: number; selfFenceMs: number }; regions: { name: string }[] };
  t.is(j.timing.deadMs, 62_000);
  t.is(j.timing.selfFenceMs, 60_000);
  t.deepEqual(j.regions.map((x) => x.name), ['config', 'heartbeat', 'nodes', 'reservations', 'lockspace', 'devices']);
  const again = await runSanbox(t, ['cluster', 'init', img, '--nodes', '3', '--name', 'prod']);
  t.is(again.code, 1);
  t.regex(again.stderr, /already exists/);
  t.is((await runSanbox(t, ['cluster', 'init', img, '--nodes', '0', '--name', 'x', '--force'])).code, 2);
  t.is((await runSanbox(t, ['cluster', 'init', img, '--nodes', '300', '--name', 'x', '--force'])).code, 2);
  t.is((await runSanbox(t, ['cluster', 'init', img, '--nodes', '3', '--name', 'x', '--interval', '100', '--dead-threshold', '2', '--force'])).code, 2);
  const custom = await runSanbox(t, ['cluster', 'init', img, '--nodes', '3', '--name', 'x', '--interval', '50', '--dead-threshold', '20', '--io-timeout', '300', '--force', '--json', '--run-dir', path.join(dir, 'run')]);
  t.is(custom.code, 0, custom.stderr);
  t.like(JSON.parse(custom.stdout), { timing: { preset: 'custom', intervalMs: 50, deadMs: 1000 } });
  // A running node holds the image: init --force refuses and writes nothing.
  const node = spawnChild(t, process.execPath, [SANBOX_BIN, 'node', '--cluster', img, '--node', '0']);
  const io = collect(node);
  await waitFor(() => /ready/.test(io.out()), 10_000, 'node ready');
  const before = fs.readFileSync(img);
  const busy = await runSanbox(t, ['cluster', 'init', img, '--nodes', '3', '--name', 'y', '--force']);
  t.is(busy.code, 1);
  t.regex(busy.stderr, /busy/);
  const after = fs.readFileSync(img);
  t.true(before.subarray(0, 8192).equals(after.subarray(0, 8192)), 'header and config untouched');
  // status on something that is not a cluster image: one clear line.
  const junk = path.join(dir, 'junk.img');
  fs.writeFileSync(junk, Buffer.alloc(8192, 7));
  const st = await runSanbox(t, ['cluster', 'status', junk]);
  t.is(st.code, 1);
  t.regex(st.stderr, /^sanbox: .*junk\.img is not a sanbox cluster image: no signature sanbox knows \(first bytes 0707070707070707\) at offset 0\n$/);
});
