// Device I/O through a running node (src/node/remote-device.ts), as an LVM command run as that node
// does it: a separate `sanbox node` process opens the device with its provider and does every read
// and write itself. Checked: bytes written in pieces (a write larger than one request) read back,
// through the node and from the file; the node's status lists the device with its gate and
// counters (its I/O, not the client's); its fault rules apply to that I/O (the error keeps its
// code); the cluster image is the node's own device, not opened twice; bad requests are one-line
// error answers and the node stays up; a closed connection closes the devices it opened, also one
// whose open was in flight when it closed; the image named through a symlinked directory is still
// the node's own device; relative paths of a command in another directory reach the node resolved;
// a lock on the connection is released only after the writes the client sent before it went; one
// PV opened through two paths is one device to the node's key count (its file identity); the
// cluster's device list (which clients write) is no proof a device is LVM's, only the PV uuid the
// device carries, and a volume the node mounts is never a client's (review 5, H1); an exclusive
// open is exclusive inside the node too (M1); pvcreate and pvremove through a node drop the
// device's stale list entry; a process another node records as its client is refused (L3).

import test from 'ava';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { connectNode } from '../src/node/ctl.js';
import { controlSocketPath } from '../src/node/control.js';
import { readClusterImage } from '../src/heartbeat/cluster-image.js';
import { DEV_READ_BYTES_MAX, DEV_WRITE_BYTES_MAX, NodeDevices } from '../src/node/remote-device.js';
import { isSanboxError } from '../src/errors.js';
import { clusterInit, isEvent, spawnNode } from './helpers/heartbeat-nodes.js';
import { readFileAt, runSanbox, spawnChild, tempDir, waitForAsync } from './helpers/tmp.js';
import { probeInUse } from '../src/disk/in-use-guard.js';
import { PersistentReservations, PR_TYPES, sidecarStoreSpec } from '../src/disk/reservations.js';
import { selfIdentity } from '../src/disk/power-fence.js';
import { readClusterDevices, updateClusterDevices } from '../src/volume/cluster-devices.js';
import { openDevice } from '../src/disk/open.js';
import { readPv } from '../src/volume/pv.js';
import { mkfs } from './helpers/mounted-volume.js';

/** Bound on the nodes joining: generous, since the file's tests start their nodes all at once on shared CPUs. */
const UP_MS = 30_000;
/** Bound on the node closing a device after its client's connection went. */
const CLOSED_MS = 5000;

interface Status {
  state: string;
  key: string;
  devices: { name: string; gate: string; io: { reads: number; writes: number; errors: number } }[];
}

async function status(t: import('ava').ExecutionContext, img: string): Promise<Status> {
  const r = await runSanbox(t, ['ctl', img, '0', 'status', '--json']);
  t.is(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Status;
}

/**
 * A cluster image, image files of 16 MiB named `pvNames` beside it (`pvcreate`d with `labelled`:
 * LVM's then, so the node opens them for a client without `exclusive`), and its nodes
 * 0..nodeCount-1 running, all up.
 */
async function nodesUp(t: import('ava').ExecutionContext, pvNames: string[], nodeCount: 1 | 2 = 1, labelled = false): Promise<{ dir: string; img: string; pvs: string[] }> {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  const pvs = pvNames.map((n) => path.join(dir, n));
  await clusterInit(t, [img, '--nodes', '2', '--name', 'remote']);
  for (const p of pvs) t.is((await runSanbox(t, ['disk', 'create', p, '--size', '16M'])).code, 0);
  if (labelled && pvs.length > 0) t.is((await runSanbox(t, ['pvcreate', ...pvs])).code, 0);
  const nodes = Array.from({ length: nodeCount }, (_, n) => spawnNode(t, img, n));
  if (nodeCount === 1) await nodes[0]!.waitLine((l) => /joined cluster/.test(l.msg ?? '') || isEvent('up', 0)(l), UP_MS, 'node 0 joined');
  else {
    await nodes[0]!.waitLine(isEvent('up', 1), UP_MS, 'node 1 up');
    await nodes[1]!.waitLine(isEvent('up', 0), UP_MS, 'node 0 up');
  }
  return { dir, img, pvs };
}

test('a client reads and writes a device through a running node: the node\'s provider does the I/O (gate, counters, fault rules); bad requests are one-line errors; the connection\'s devices close with it', async (t) => {
  const { img, pvs: [pv] } = await nodesUp(t, ['pv.img'], 1, true);

  const io = new NodeDevices(await connectNode(img, 0));
  t.teardown(() => io.close());
  const dev = await io.open(pv);
  t.is(dev.sizeBytes, 16 * 1024 * 1024);
  // Larger than one request in both directions: split into pieces on the way.
  const data = crypto.randomBytes(DEV_READ_BYTES_MAX + 3 * DEV_WRITE_BYTES_MAX);
  await dev.write(data, 4096);
  await dev.flush();
  const back = Buffer.alloc(data.length);
  await dev.read(back, 4096);
  t.true(back.equals(data), 'read back through the node');
  t.true(readFileAt(pv, 4096, data.length).equals(data), 'on the file');

  const s = await status(t, img);
  const entry = s.devices.find((d) => d.name === pv);
  t.truthy(entry, `the node lists the device: ${s.devices.map((d) => d.name).join(', ')}`);
  t.is(entry!.gate, 'open');
  t.true(entry!.io.writes >= Math.ceil(data.length / DEV_WRITE_BYTES_MAX), `the node did the writes (${entry!.io.writes})`);
  // The cluster image is the node's own device of it, not a second open (one entry, one key registration).
  await (await io.open(img)).close();
  t.is((await status(t, img)).devices.filter((d) => d.name === img).length, 1);

  // The node's fault rules apply to the I/O it does for the client; the code comes back.
  t.is((await runSanbox(t, ['ctl', img, '0', 'fault', 'set', '--action', 'eio', '--op', 'write', '--device', 'pv.img', '--id', 'x'])).code, 0);
  const err = await t.throwsAsync(dev.write(Buffer.alloc(512), 0));
  t.true(isSanboxError(err) && err.code === 'EIO', `EIO from the node's fault rule: ${err?.message}`);
  t.is((await runSanbox(t, ['ctl', img, '0', 'fault', 'clear'])).code, 0);

  // Bad requests: one-line error answers, the node stays up.
  const raw = await connectNode(img, 0);
  t.teardown(() => raw.close());
  for (const [req, re] of [
    [{ cmd: 'dev-write', handle: 99, offsetBytes: 0, data: '' }, /no device open as handle 99 on this connection/],
    [{ cmd: 'dev-open', spec: 'vg/lv' }, /dev-open opens a disk or image file, not a logical volume/],
    [{ cmd: 'dev-open', spec: '' }, /"spec" must be a non-empty string/],
    [{ cmd: 'dev-open', spec: 'pv.img' }, /dev-open takes an absolute path/],
    // Handle 1 is the other connection's device: handles are per connection.
    [{ cmd: 'dev-read', handle: 1, offsetBytes: 0, lengthBytes: 512 }, /no device open as handle 1 on this connection/],
    [{ cmd: 'dev-write', handle: 'x', offsetBytes: 0, data: '' }, /"handle" must be a positive integer/],
  ] as const) {
    const e = await t.throwsAsync(raw.request(req));
    t.regex(e?.message ?? '', re);
    t.false((e?.message ?? '').includes('\n'), 'one line');
  }
  const h = (await raw.request({ cmd: 'dev-open', spec: pv })).handle;
  const tooBig = await t.throwsAsync(raw.request({ cmd: 'dev-write', handle: h, offsetBytes: 0, data: Buffer.alloc(DEV_WRITE_BYTES_MAX + 3).toString('base64') }));
  t.regex(tooBig?.message ?? '', /"data" is \d+ bytes, more than/);
  const longRead = await t.throwsAsync(raw.request({ cmd: 'dev-read', handle: h, offsetBytes: 0, lengthBytes: DEV_READ_BYTES_MAX + 1 }));
  t.regex(longRead?.message ?? '', /"lengthBytes" must be an integer from 0 to/);
  const past = await t.throwsAsync(raw.request({ cmd: 'dev-write', handle: h, offsetBytes: 16 * 1024 * 1024, data: Buffer.alloc(512).toString('base64') }));
  t.regex(past?.message ?? '', /beyond end of device/);
  // dev-preempt: only a fenced incarnation's key (node 1 never ran: nothing of it is fenced), on a device of this connection.
  for (const [req, re] of [
    [{ cmd: 'dev-preempt', handle: h, victimNode: 1, victimKey: '1234' }, /node 1's key 0x1234 is not recorded fenced in the cluster image: node 0 preempts only a fenced incarnation's key/],
    [{ cmd: 'dev-preempt', handle: h, victimNode: 300, victimKey: '1234' }, /"victimNode" must be a node number 0\.\.254/],
    [{ cmd: 'dev-preempt', handle: h, victimNode: 1, victimKey: 'xyz' }, /"victimKey" must be 1 to 16 hex digits/],
    [{ cmd: 'dev-preempt', handle: 77, victimNode: 1, victimKey: '1234' }, /no device open as handle 77 on this connection/],
    // client-register: a process that runs here with that start time, once per connection.
    [{ cmd: 'client-register', pid: process.pid, startTicks: '1' }, new RegExp(`node 0 does not record its client: pid ${process.pid} \\(start time 1\\) is not running on this machine`)],
    [{ cmd: 'client-register', pid: 0, startTicks: '1' }, /"pid" must be a positive integer/],
    [{ cmd: 'client-register', pid: process.pid, startTicks: 'x' }, /"startTicks" must be a decimal string/],
  ] as const) {
    const e = await t.throwsAsync(raw.request(req));
    t.regex(e?.message ?? '', re);
  }
  await raw.request({ cmd: 'client-register', pid: process.pid, startTicks: selfIdentity().startTicks.toString() });
  t.regex((await t.throwsAsync(raw.request({ cmd: 'client-register', pid: process.pid, startTicks: selfIdentity().startTicks.toString() })))?.message ?? '', new RegExp(`this connection registered pid ${process.pid} already`));
  t.is((await status(t, img)).state, 'up');

  // Closing the connections closes their devices in the node.
  raw.close();
  io.close();
  await waitForAsync(async () => !(await status(t, img)).devices.some((d) => d.name === pv), CLOSED_MS, 'the node to close the device');
  t.pass();
  fs.rmSync(pv, { force: true });
});

test('pvcreate and pvremove as a running node write through it (its fault rule fails them), and refuse a device another process has open', async (t) => {
  const { img, pvs: [pvA, pvB] } = await nodesUp(t, ['a.img', 'b.img']);
  // A fault rule of node 0 on a.img's writes: the command's writes are node 0's, so they fail.
  t.is((await runSanbox(t, ['ctl', img, '0', 'fault', 'set', '--action', 'eio', '--op', 'write', '--device', 'a.img', '--id', 'x'])).code, 0);
  const failed = await runSanbox(t, ['ctl', img, '0', 'lvm', 'pvcreate', pvA]);
  t.is(failed.code, 1, failed.stderr);
  t.regex(failed.stderr, /injected|EIO|I\/O error/i);
  t.is((await runSanbox(t, ['ctl', img, '0', 'fault', 'clear'])).code, 0);
  const made = await runSanbox(t, ['ctl', img, '0', 'lvm', 'pvcreate', pvA]);
  t.is(made.code, 0, made.stderr);
  t.is((await runSanbox(t, ['pvs', pvA, '--noheadings', '-o', 'pv_name'])).stdout.trim(), pvA);
  // Another process holds b.img (a shared flock, as every sanbox opener does): refused, nothing written.
  const holder = spawnChild(t, 'flock', ['-s', pvB, 'sleep', '60']);
  await waitForAsync(async () => probeInUse(pvB).inUse, CLOSED_MS, 'flock to hold b.img');
  const busy = await runSanbox(t, ['ctl', img, '0', 'lvm', 'pvcreate', pvB]);
  t.is(busy.code, 1);
  t.regex(busy.stderr, /b\.img.*busy/);
  t.true(readFileAt(pvB, 0, 4096).equals(Buffer.alloc(4096)), 'b.img untouched');
  holder.kill('SIGKILL');
  const removed = await runSanbox(t, ['ctl', img, '0', 'lvm', 'pvremove', pvA]);
  t.is(removed.code, 0, removed.stderr);
  t.not((await runSanbox(t, ['pvs', pvA])).code, 0, 'no PV left on a.img');
});

test('a client that goes while its dev-open is in flight leaves nothing open in the node (the PV is not busy after)', async (t) => {
  const { img, pvs: [pv, other] } = await nodesUp(t, ['a.img', 'b.img'], 1, true);

  // The request reaches the node, then the socket goes at once: the node's open is still in flight
  // when the connection's closers run.
  const info = await readClusterImage(img);
  const sock = net.createConnection(controlSocketPath(info.config.runDir, 0));
  t.teardown(() => sock.destroy());
  await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  await new Promise<void>((resolve, reject) => sock.write(JSON.stringify({ cmd: 'dev-open', spec: pv }) + '\n', (err) => (err ? reject(err) : resolve())));
  sock.destroy();
  // The node opens devices one at a time: once another open through it has finished, a.img's has too.
  const io = new NodeDevices(await connectNode(img, 0));
  t.teardown(() => io.close());
  await (await io.open(other)).close();
  io.close();
  await waitForAsync(async () => !(await status(t, img)).devices.some((d) => d.name === pv || d.name === other), CLOSED_MS, 'the node to hold no device of the gone clients');
  // pvremove needs the device to itself.
  const removed = await runSanbox(t, ['pvremove', pv!]);
  t.is(removed.code, 0, `a.img is not held by the node: ${removed.stderr}`);
  t.notRegex(removed.stderr, /busy/);
});

test('the cluster image named through a symlinked directory is the node\'s own device, not a second open', async (t) => {
  const { dir, img } = await nodesUp(t, []);
  const via = path.join(dir, 'via');
  fs.symlinkSync(dir, via);
  const before = (await status(t, img)).devices.length;
  const raw = await connectNode(img, 0);
  t.teardown(() => raw.close());
  const ans = await raw.request({ cmd: 'dev-open', spec: path.join(via, 'c.img') });
  t.is(ans.name, img, 'the node\'s device of the image answered');
  t.is((await status(t, img)).devices.length, before, 'no second device of the image in the node');
  await raw.request({ cmd: 'dev-close', handle: ans.handle });
  t.is((await status(t, img)).state, 'up');
  t.true((await status(t, img)).devices.some((d) => d.name === img), 'dev-close left the node\'s own device open');
});

test('ctl lvm from another directory with relative paths: the client sends them resolved against its own cwd', async (t) => {
  // The node's cwd is the test's (the repo), not sub/.
  const { dir, pvs: [pv] } = await nodesUp(t, ['a.img']);
  const sub = path.join(dir, 'sub');
  fs.mkdirSync(sub);
  const made = await runSanbox(t, ['ctl', '../c.img', '0', 'lvm', 'pvcreate', '../a.img'], { cwd: sub });
  t.is(made.code, 0, made.stderr);
  const pvs = await runSanbox(t, ['ctl', '../c.img', '0', 'lvm', 'pvs', '../a.img', '--noheadings', '-o', 'pv_name'], { cwd: sub });
  t.is(pvs.code, 0, pvs.stderr);
  t.is(pvs.stdout.trim(), pv);
});

test('a client that goes with a write in flight: the node releases its connection\'s lock only after that write has landed', async (t) => {
  const { img, pvs: [pv] } = await nodesUp(t, ['a.img'], 2, true);

  // As an LVM command through node 0 does it (lvm-node.ts): its lock and its device I/O on one connection.
  const io = new NodeDevices(await connectNode(img, 0));
  t.teardown(() => io.close());
  await io.connection.request({ cmd: 'lock', resource: 'res1', mode: 'EX', scope: 'connection' });
  const dev = await io.open(pv);
  // Only a.img's writes stall (not the heartbeat's): the write waits inside node 0 as long as needed.
  t.is((await runSanbox(t, ['ctl', img, '0', 'fault', 'set', '--action', 'stall', '--op', 'write', '--device', 'a.img', '--id', 'hold'])).code, 0);
  const data = crypto.randomBytes(4096);
  const offsetBytes = 8 * 1024 * 1024;
  void dev.write(data, offsetBytes).catch(() => undefined);
  await waitForAsync(async () => ((await status(t, img)).devices.find((d) => d.name === pv)?.io.writes ?? 0) > 0, CLOSED_MS, 'node 0 to take the write');
  io.close();
  // The client is gone, its write is not done: the lock is still node 0's.
  const busy = await runSanbox(t, ['ctl', img, '1', 'lock', 'res1', '--mode', 'EX', '--timeout', '300ms']);
  t.is(busy.code, 1, 'node 1 is not granted res1 while the gone client\'s write is in flight');
  t.true(readFileAt(pv!, offsetBytes, data.length).equals(Buffer.alloc(data.length)), 'the write has not landed yet');
  // Node 1 asks again and waits; a command run under the lock reads the bytes the moment node 1 is
  // granted it. Only then is the write released: granted before the write landed, it reads zeros.
  const granted = runSanbox(t, ['lock', img, '--node', '1', 'res1', '--mode', 'EX', '--timeout', `${4 * CLOSED_MS}ms`, '--', 'sh', '-c', `dd if=${pv} bs=4096 skip=${offsetBytes / 4096} count=1 status=none | sha256sum`]);
  await waitForAsync(async () => {
    const r = await runSanbox(t, ['ctl', img, '1', 'status', '--json']);
    return (JSON.parse(r.stdout) as { locks: { resource: string; state: string }[] }).locks.some((l) => l.resource === 'res1' && l.state === 'waiting');
  }, 2 * CLOSED_MS, 'node 1 to wait for res1');
  t.is((await runSanbox(t, ['ctl', img, '0', 'fault', 'clear', '--id', 'hold'])).code, 0);
  const got = await granted;
  t.is(got.code, 0, got.stderr);
  t.is(got.stdout.split(' ')[0], crypto.createHash('sha256').update(data).digest('hex'), 'the write had landed when node 1 was granted res1');
});

test('one PV opened through two paths (a symlinked directory) on two connections: closing one keeps the node\'s key registered; closing both releases it', async (t) => {
  const { dir, img, pvs: [pv] } = await nodesUp(t, ['a.img'], 1, true);
  fs.symlinkSync(dir, path.join(dir, 'via'));
  const key = BigInt(`0x${(await status(t, img)).key}`);
  const c1 = new NodeDevices(await connectNode(img, 0));
  const c2 = new NodeDevices(await connectNode(img, 0));
  t.teardown(() => {
    c1.close();
    c2.close();
  });
  const d1 = await c1.open(pv);
  const d2 = await c2.open(path.join(dir, 'via', 'a.img'));
  const state = (): { registered: bigint | undefined; type: number } => {
    const pr = new PersistentReservations(sidecarStoreSpec(pv!));
    try {
      const s = pr.readState();
      return { registered: s.registered[0], type: s.reservationType };
    } finally {
      pr.close();
    }
  };
  t.deepEqual(state(), { registered: key, type: PR_TYPES.writeExclusiveRegistrantsOnly }, 'both open: registered, WERO');
  await d2.close();
  t.deepEqual(state(), { registered: key, type: PR_TYPES.writeExclusiveRegistrantsOnly }, 'the other path still open: the key stays (one file, one count)');
  await d1.write(Buffer.alloc(512, 7), 8 * 1024 * 1024);
  await d1.close();
  t.not(state().registered, key, 'both closed: the key is unregistered');
});

test('the node does not trust its client: the image it hands out is writable only in the device list; an unlisted blank file opens only exclusively (checked by the node); fence state never', async (t) => {
  // Node 1 is not running: its slots stay as they are, so a write that slipped through would show.
  const { dir, img, pvs: [blank, held] } = await nodesUp(t, ['blank.img', 'held.img']);
  const info = await readClusterImage(img);
  const s = info.header.sectorSizeBytes;
  const payload = (name: string): number => info.regions.get(name)!.payloadOffsetBytes;
  const raw = await connectNode(img, 0);
  t.teardown(() => raw.close());
  const h = (await raw.request({ cmd: 'dev-open', spec: img })).handle;
  for (const [what, offsetBytes] of [
    ['the header', 0],
    ['the reservation state', payload('reservations')],
    // Row 0 of the lock area: node 1's cell follows node 0's (format/lockspace.ts lockspaceLayout).
    ["node 1's lock cell", payload('lockspace') + s * (1 + info.config.nodeCount) + s],
    ["node 1's heartbeat slot", payload('heartbeat') + s],
    ['the config', payload('config')],
  ] as const) {
    const before = readFileAt(img, offsetBytes, s);
    const e = await t.throwsAsync(raw.request({ cmd: 'dev-write', handle: h, offsetBytes, data: Buffer.alloc(s, 0xa5).toString('base64') }), undefined, what);
    t.regex(e?.message ?? '', /refused: a client of node 0 writes this device only in the cluster's device-list region/, what);
    t.false((e?.message ?? '').includes('\n'), 'one line');
    t.true(readFileAt(img, offsetBytes, s).equals(before), `${what}: unchanged`);
  }
  // The device list itself is the client's to write (an LVM command keeps it): the same bytes back.
  const list = Buffer.from((await raw.request({ cmd: 'dev-read', handle: h, offsetBytes: payload('devices'), lengthBytes: s })).data as string, 'base64');
  await raw.request({ cmd: 'dev-write', handle: h, offsetBytes: payload('devices'), data: list.toString('base64') });

  // A blank file on no list: refused unless opened exclusively (the node reads no file for a client
  // that is neither LVM's nor listed); the exclusive open is the node's check.
  const unlisted = await t.throwsAsync(raw.request({ cmd: 'dev-open', spec: blank }));
  t.regex(unlisted?.message ?? '', /blank\.img: refused: not an LVM physical volume \(no LVM2 label in sectors 0-3\), and neither node 0's --devices list nor the cluster's device list names it/);
  const ex = (await raw.request({ cmd: 'dev-open', spec: blank, exclusive: true })).handle;
  await raw.request({ cmd: 'dev-close', handle: ex });
  const holder = spawnChild(t, 'flock', ['-s', held!, 'sleep', '60']);
  await waitForAsync(async () => probeInUse(held!).inUse, CLOSED_MS, 'flock to hold held.img');
  const busy = await t.throwsAsync(raw.request({ cmd: 'dev-open', spec: held, exclusive: true }));
  t.regex(busy?.message ?? '', /held\.img: device busy/);
  holder.kill('SIGKILL');
  // A device's fence state (its reservations beside it), also through a symlinked directory: never.
  const ex2 = (await raw.request({ cmd: 'dev-open', spec: blank, exclusive: true })).handle;
  await raw.request({ cmd: 'dev-close', handle: ex2 });
  fs.symlinkSync(dir, path.join(dir, 'via'));
  for (const spec of [sidecarStoreSpec(blank!).statePath, path.join(dir, 'via', 'blank.img.fence', 'reservations')]) {
    for (const exclusive of [false, true]) {
      const e = await t.throwsAsync(raw.request({ cmd: 'dev-open', spec, exclusive }));
      t.regex(e?.message ?? '', /refused: it is fence state of a device/, spec);
    }
  }
  t.is((await status(t, img)).state, 'up');
});

test('vgcreate and vgextend through a running node: a pvcreated PV outside the cluster list is opened (LVM2 label), and the commit lists it', async (t) => {
  const { img, pvs: [a, b] } = await nodesUp(t, ['a.img', 'b.img']);
  const vg = `dt${process.pid % 100000}`;
  for (const args of [['pvcreate', a!, b!], ['vgcreate', vg, a!], ['vgextend', vg, b!]]) {
    const r = await runSanbox(t, ['ctl', img, '0', 'lvm', ...args]);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  const listed = ((await readClusterDevices(img)) ?? []).map((e) => [e.device, e.vg]);
  t.deepEqual(listed.sort(), [[a, vg], [b, vg]], "both PVs in the cluster's device list");
  const r = await runSanbox(t, ['vgs', vg, '--devices', `${a},${b}`, '--noheadings', '-o', 'pv_count']);
  t.is(r.stdout.trim(), '2', r.stderr);
});

/** The PV uuid on `pv`'s label, read from the file. */
async function pvIdOn(pv: string): Promise<string> {
  const dev = await openDevice(pv, { readOnly: true, guard: 'none' });
  try {
    const id = (await readPv(dev, { withoutText: true }))?.label.pvId;
    if (id === undefined) throw new Error(`${pv}: no PV label`);
    return id;
  } finally {
    await dev.close();
  }
}

test('listing a device in the cluster list gets a client nothing (review 5, H1): a held blank file opens read-only and stays unchanged; a listed PV is writable only with the uuid the list gives it; pvremove and pvcreate through the node drop a stale entry', async (t) => {
  const { img, pvs: [victim, pv, stale] } = await nodesUp(t, ['victim.img', 'pv.img', 'stale.img']);
  const holder = spawnChild(t, 'flock', ['-s', victim!, 'sleep', '60']);
  await waitForAsync(async () => probeInUse(victim!).inUse, CLOSED_MS, 'flock to hold victim.img');
  const io = new NodeDevices(await connectNode(img, 0));
  t.teardown(() => io.close());
  const image = await io.open(img);
  const madeUp = 'abcdefghijklmnopqrstuvwxyz012345';
  // The reviewer's bypass: the client lists the held blank file through the image's write window, then opens it.
  await updateClusterDevices(image, (es) => [...es, { device: victim!, pvUuid: madeUp, vg: '' }]);
  const readOnly = await io.open(victim!);
  t.true(readOnly.readOnly, 'opened read-only: a scan may read it, nothing writes it');
  const refused = await t.throwsAsync(readOnly.write(Buffer.alloc(512, 0xa5), 0));
  t.regex(refused?.message ?? '', /victim\.img: not an LVM physical volume \(no LVM2 label in sectors 0-3\); opened read-only/);
  t.false((refused?.message ?? '').includes('\n'), 'one line');
  await readOnly.close();
  t.true(readFileAt(victim!, 0, 1024 * 1024).equals(Buffer.alloc(1024 * 1024)), 'victim.img unchanged');
  holder.kill('SIGKILL');

  // A PV pvcreated without the node, listed under another PV's uuid: refused; under its own: opened.
  t.is((await runSanbox(t, ['pvcreate', pv!])).code, 0);
  const uuid = await pvIdOn(pv!);
  await updateClusterDevices(image, (es) => [...es, { device: pv!, pvUuid: madeUp, vg: '' }]);
  const wrongDev = await io.open(pv!);
  t.true(wrongDev.readOnly, 'a PV under another uuid opens read-only');
  const wrong = await t.throwsAsync(wrongDev.write(Buffer.alloc(512), 0));
  t.regex(wrong?.message ?? '', new RegExp(`pv\\.img: the cluster's device list names it as PV ${madeUp}, but it carries PV ${uuid}; opened read-only`));
  await wrongDev.close();
  await updateClusterDevices(image, (es) => es.map((e) => (e.device === pv ? { ...e, pvUuid: uuid } : e)));
  const dev = await io.open(pv!);
  await dev.close();
  await image.close();

  // pvremove through the node drops the PV's entry (else the list would name a device with no PV,
  // which every later command would scan and pass over); pvcreate drops a stale one (stale.img's).
  const removed = await runSanbox(t, ['ctl', img, '0', 'lvm', 'pvremove', pv!]);
  t.is(removed.code, 0, removed.stderr);
  t.deepEqual(((await readClusterDevices(img)) ?? []).map((e) => e.device), [victim]);
  await updateClusterDevices(img, (es) => [...es, { device: stale!, pvUuid: madeUp, vg: '' }]);
  const made = await runSanbox(t, ['ctl', img, '0', 'lvm', 'pvcreate', stale!]);
  t.is(made.code, 0, made.stderr);
  t.deepEqual(((await readClusterDevices(img)) ?? []).map((e) => e.device), [victim]);
  const listed = await runSanbox(t, ['ctl', img, '0', 'lvm', 'pvs', stale!, '--noheadings', '-o', 'pv_name']);
  t.is(listed.code, 0, listed.stderr);
  t.is(listed.stdout.trim(), stale);
  // victim.img is still listed, with no PV on it (as a device wiped without the cluster would be):
  // a command through the node scans it read-only and passes over it, as lvm2 passes over a device
  // without a label, instead of failing.
  const all = await runSanbox(t, ['ctl', img, '0', 'lvm', 'pvs', '--noheadings', '-o', 'pv_name']);
  t.is(all.code, 0, all.stderr);
  t.false(all.stdout.includes('victim.img'), 'no PV on victim.img');
  t.true(readFileAt(victim!, 0, 1024 * 1024).equals(Buffer.alloc(1024 * 1024)), 'victim.img still unchanged');
});

test('a volume the node mounts is never opened for a client (review 5, H1), even on the node\'s own --devices list', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '2', '--name', 'remote']);
  const vol = await mkfs(dir, 'remote', 2);
  const node = spawnNode(t, img, 0, ['--mount', vol, '--devices', vol]);
  await node.waitLine((l) => /^mounted .* in slot 0$/.test(l.msg ?? ''), UP_MS, 'node 0 mounted');
  const raw = await connectNode(img, 0);
  t.teardown(() => raw.close());
  const before = fs.readFileSync(vol).subarray(0, 64 * 1024);
  for (const exclusive of [false, true]) {
    const e = await t.throwsAsync(raw.request({ cmd: 'dev-open', spec: vol, exclusive }));
    t.regex(e?.message ?? '', exclusive ? /v\.img: device busy/ : /v\.img: device busy: node 0 has it open for its own use/, `exclusive: ${exclusive}`);
  }
  t.true(fs.readFileSync(vol).subarray(0, 64 * 1024).equals(before), 'the volume\'s first 64 KiB unchanged');
  t.is((await status(t, img)).state, 'up');
});

test('an exclusive open is exclusive inside the node too (review 5, M1): other connections cannot open the device until it closes; a device open on another connection is not opened exclusively', async (t) => {
  const { img, pvs: [pv] } = await nodesUp(t, ['pv.img'], 1, true);
  const a = await connectNode(img, 0);
  const b = await connectNode(img, 0);
  t.teardown(() => {
    a.close();
    b.close();
  });
  const ex = (await a.request({ cmd: 'dev-open', spec: pv, exclusive: true })).handle;
  const shared = await t.throwsAsync(b.request({ cmd: 'dev-open', spec: pv }));
  t.regex(shared?.message ?? '', /pv\.img: device busy: node 0 has it open exclusively for a client/);
  const second = await t.throwsAsync(b.request({ cmd: 'dev-open', spec: pv, exclusive: true }));
  t.regex(second?.message ?? '', /pv\.img: device busy/);
  await a.request({ cmd: 'dev-close', handle: ex });
  const h = (await b.request({ cmd: 'dev-open', spec: pv })).handle;
  const late = await t.throwsAsync(a.request({ cmd: 'dev-open', spec: pv, exclusive: true }));
  t.regex(late?.message ?? '', /pv\.img: device busy/);
  await b.request({ cmd: 'dev-close', handle: h });
  const again = (await a.request({ cmd: 'dev-open', spec: pv, exclusive: true })).handle;
  await a.request({ cmd: 'dev-close', handle: again });
});

test('one process is the client of one node (review 5, L3): a pid another node records as its client is refused until that node lets it go', async (t) => {
  const { img } = await nodesUp(t, [], 2);
  const self = { pid: process.pid, startTicks: selfIdentity().startTicks.toString() };
  const a = await connectNode(img, 0);
  const b = await connectNode(img, 1);
  t.teardown(() => {
    a.close();
    b.close();
  });
  await a.request({ cmd: 'client-register', ...self });
  const twice = await t.throwsAsync(b.request({ cmd: 'client-register', ...self }));
  t.regex(twice?.message ?? '', new RegExp(`node 1 does not record its client: pid ${process.pid} is recorded as a client of node 0 \\(one process acts as one node\\)`));
  t.false((twice?.message ?? '').includes('\n'), 'one line');
  // Node 0 drops the entry as the connection closes (its record is rewritten then).
  a.close();
  let registered = false;
  await waitForAsync(async () => (registered ||= await b.request({ cmd: 'client-register', ...self }).then(() => true, () => false)), CLOSED_MS, "node 0's record to let the pid go");
  t.true(registered);
});
