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
  const realPvs = execFileSync('pvs', [...lvmConfig, '--noheadings', '-o', 'pv_name,pv_fmt,pv_size', '--units', 'm', loop], {
    encoding: 'utf8',
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.regex(realPvs, new RegExp(`${loop}\\s+lvm2\\s+64\\.00m`));
});
