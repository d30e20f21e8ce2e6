// Commands that take an image take an nbd:// URI too (issue 10, item 2). Each command runs as a
// user would run it, against a real nbdkit on 127.0.0.1. The real tools then judge the file nbdkit
// served: fsck.ocfs2 for `sanbox mkfs`, and pvck and pvs (through a loop device) for
// `sanbox pvcreate`.

import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { attachLoop } from './helpers/lvm-real.js';
import { startNbdkit } from './helpers/nbdkit.js';
import { ownLockDir, runSanbox, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const MiB = 1024 * 1024;

function sparse(dir: string, name: string, sizeBytes: number): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, '');
  fs.truncateSync(p, sizeBytes);
  return p;
}

test('sanbox mkfs over nbd:// writes a volume that fsck.ocfs2 accepts; fsinfo reads it back over nbd://', async (t) => {
  const dir = tempDir(t);
  const file = sparse(dir, 'vol.img', 256 * MiB);
  const srv = await startNbdkit({ dir });
  t.teardown(() => srv.stop('SIGKILL'));
  const uri = srv.uri('vol.img');
  const mkfs = await runSanbox(t, ['mkfs', uri, '--slots', '2'], { timeoutMs: 60_000 });
  t.is(mkfs.code, 0, mkfs.stderr);
  t.regex(mkfs.stdout, /Formatted nbd:\/\/127\.0\.0\.1:\d+\/vol\.img as ocfs2: 2 slots/);
  const uuid = /UUID ([0-9A-F]{32})/.exec(mkfs.stdout)?.[1];
  t.truthy(uuid);
  const fsck = execFileSync('fsck.ocfs2', ['-fn', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });
  t.regex(fsck, /All passes succeeded/);
  const info = await runSanbox(t, ['fsinfo', uri]);
  t.is(info.code, 0, info.stderr);
  t.regex(info.stdout, new RegExp(`UUID:\\s+${uuid}`));
});

test('sanbox pvcreate over nbd:// writes a PV that the real pvck and pvs accept', async (t) => {
  const dir = tempDir(t);
  const file = sparse(dir, 'pv.img', 64 * MiB);
  const srv = await startNbdkit({ dir });
  t.teardown(() => srv.stop('SIGKILL'));
  const uri = srv.uri('pv.img');
  const pv = await runSanbox(t, ['pvcreate', uri]);
  t.is(pv.code, 0, pv.stderr);
  const pvs = await runSanbox(t, ['pvs', uri, '--json']);
  t.is(pvs.code, 0, pvs.stderr);
  t.regex(pvs.stdout, /pv\.img/);
  // The real LVM tools read block devices: attach the served file to a loop device.
  const loop = await attachLoop(t, file);
  const lvmConfig = ['--devicesfile', '', '--config', 'devices { obtain_device_list_from_udev=0 } activation { udev_sync=0 udev_rules=0 }'];
  const env = { ...process.env, LVM_SUPPRESS_FD_WARNINGS: '1' };
  const pvck = execFileSync('pvck', [...lvmConfig, loop], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.regex(pvck, /Found label on .*sector 1, type=LVM2 001/);
  // pvs only this test's loop device: other tests attach loop devices holding deliberately broken
  // VGs, and a full scan would report their errors here. (pvck reads just the device it is given.)
  const realPvs = execFileSync('pvs', ['--devices', loop, ...lvmConfig.slice(2), '--noheadings', '-o', 'pv_name,pv_fmt,pv_size', '--units', 'm', loop], {
    encoding: 'utf8',
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.regex(realPvs, new RegExp(`${loop}\\s+lvm2\\s+64\\.00m`));
});

// Issue 14 item 7: `disk create` and `cluster init` write through the export. An export's size is
// the server's: create checks that the asked size fits, refuses an export that holds data unless
// --force, and zeroes it. The served file is then read directly to see what landed.

test('sanbox disk create nbd:// checks the size and existing data, then zeroes the whole export', async (t) => {
  const dir = tempDir(t);
  const file = sparse(dir, 'disk.img', 8 * MiB);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from('old data'), 0, 8, 512 * 1024);
  fs.writeSync(fd, Buffer.from('tail'), 0, 4, 8 * MiB - 512);
  fs.closeSync(fd);
  const srv = await startNbdkit({ dir });
  t.teardown(() => srv.stop('SIGKILL'));
  const uri = srv.uri('disk.img');

  const grow = await runSanbox(t, ['disk', 'create', uri, '--size', '16M']);
  t.is(grow.code, 1);
  t.regex(grow.stderr, /the export is 8388608 bytes, smaller than the 16777216 bytes needed; sanbox cannot grow an NBD export/);
  t.is(grow.stderr.trim().split('\n').length, 1, 'a one-line error');

  const sector = await runSanbox(t, ['disk', 'create', uri, '--size', '8M', '--sector-size', '4096']);
  t.is(sector.code, 1);
  t.regex(sector.stderr, /the export's sector size is 512 .* a 4096-byte sector size cannot be used on it over NBD/);

  const busy = await runSanbox(t, ['disk', 'create', uri, '--size', '8M']);
  t.is(busy.code, 1);
  t.regex(busy.stderr, /the export holds data at byte 524288; it may be in use \(use --force to zero it\)/);
  t.is(fs.readFileSync(file).subarray(512 * 1024, 512 * 1024 + 8).toString(), 'old data', 'a refused create writes nothing');

  const made = await runSanbox(t, ['disk', 'create', uri, '--size', '4M', '--force', '--json']);
  t.is(made.code, 0, made.stderr);
  t.deepEqual(JSON.parse(made.stdout), { device: uri, sizeBytes: 8 * MiB, sectorSizeBytes: 512, zeroedBytes: 8 * MiB });
  const after = fs.readFileSync(file);
  t.is(after.length, 8 * MiB, 'the export keeps its size');
  t.true(after.equals(Buffer.alloc(8 * MiB)), 'the whole export reads as zeros, the tail beyond --size too');

  // Now empty: a second create needs no --force.
  const again = await runSanbox(t, ['disk', 'create', uri, '--size', '8M']);
  t.is(again.code, 0, again.stderr);
  t.regex(again.stdout, /Disk "nbd:\/\/127\.0\.0\.1:\d+\/disk\.img" created: 8\.00m \(8388608 bytes\), 512-byte sectors, zeroed/);
});

test('sanbox cluster init nbd:// writes the cluster image through the export; status reads it over nbd:// and from the file', async (t) => {
  const dir = tempDir(t);
  const file = sparse(dir, 'cluster.img', 32 * MiB);
  const small = sparse(dir, 'small.img', 1 * MiB);
  const srv = await startNbdkit({ dir });
  t.teardown(() => srv.stop('SIGKILL'));
  const uri = srv.uri('cluster.img');

  const tooSmall = await runSanbox(t, ['cluster', 'init', srv.uri('small.img'), '--nodes', '3', '--name', 'lab']);
  t.is(tooSmall.code, 1);
  t.regex(tooSmall.stderr, /small\.img: the export is 1048576 bytes, smaller than the \d+ bytes needed; sanbox cannot grow an NBD export/);
  t.true(fs.readFileSync(small).equals(Buffer.alloc(MiB)), 'nothing written to the small export');

  const init = await runSanbox(t, ['cluster', 'init', uri, '--nodes', '3', '--name', 'nbdlab', '--json']);
  t.is(init.code, 0, init.stderr);
  const made = JSON.parse(init.stdout) as { uuid: string; imageSizeBytes: number; nodes: number };
  t.is(made.nodes, 3);
  t.true(made.imageSizeBytes <= 32 * MiB);
  t.is(fs.statSync(file).size, 32 * MiB, 'the export keeps its size');

  for (const target of [uri, file]) {
    const status = await runSanbox(t, ['cluster', 'status', target, '--json']);
    t.is(status.code, 0, status.stderr);
    const s = JSON.parse(status.stdout) as { cluster?: string; slots: unknown[] };
    t.is(s.slots.length, 3, `${target}: three slots`);
    t.regex(status.stdout, /nbdlab/);
  }

  const twice = await runSanbox(t, ['cluster', 'init', uri, '--nodes', '2', '--name', 'other']);
  t.is(twice.code, 1);
  t.regex(twice.stderr, /cluster\.img: the export holds a sanbox cluster image at byte 0; it may be in use \(use --force to zero it\)/);
  const forced = await runSanbox(t, ['cluster', 'init', uri, '--nodes', '2', '--name', 'other', '--force', '--json']);
  t.is(forced.code, 0, forced.stderr);
  t.not((JSON.parse(forced.stdout) as { uuid: string }).uuid, made.uuid);
});
