// sanbox mkfs on a logical volume (VG/LV over a sanbox PV image): the LV's byte range of the PV,
// attached as a loop device with that offset, passes the real fsck.ocfs2 -fn and blkid; and the
// readers open the same VG/LV.

import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { attachLoop } from './helpers/lvm-real.js';
import { fsckOk, parseBlkid, runTool } from './helpers/ocfs2-oracle.js';
import { ownLockDir, runSanbox, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const MiB = 2 ** 20;

test('mkfs VG/LV: fsck.ocfs2 and blkid accept the LV range; fsinfo and slotmap read it by name', async (t) => {
  const dir = tempDir(t);
  const pv = path.join(dir, 'pv1.img');
  for (const args of [['disk', 'create', pv, '--size', '1G'], ['pvcreate', pv], ['vgcreate', 'vgo', pv], ['lvcreate', 'vgo', '-n', 'lvo', '-L', '512M', '--devices', pv]]) {
    const r = await runSanbox(t, args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  const mk = await runSanbox(t, ['mkfs', 'vgo/lvo', '--slots', '3', '--block-size', '4K', '--label', 'onlv', '--devices', pv, '--json']);
  t.is(mk.code, 0, mk.stderr);
  const res = JSON.parse(mk.stdout) as { uuid: string; clusterCount: number };
  t.is(res.clusterCount, (512 * MiB) / 4096);

  // The PV label survives, and the volume sits inside the LV: find its superblock in the PV image.
  const head = Buffer.alloc(16 * MiB);
  const fd = fs.openSync(pv, 'r');
  fs.readSync(fd, head, 0, head.length, 0);
  fs.closeSync(fd);
  t.is(head.toString('latin1', 512, 520), 'LABELONE', 'the PV label in sector 1 is untouched');
  let sbOffset = -1;
  for (let off = 8192; off < head.length; off += 4096) if (head.toString('latin1', off, off + 6) === 'OCFSV2') {
    sbOffset = off;
    break;
  }
  t.true(sbOffset > 0, 'superblock found inside the PV data area');
  const lvOffset = sbOffset - 8192;

  const devPath = await attachLoop(t, pv, ['-r', '-o', String(lvOffset), '--sizelimit', String(512 * MiB)]);
  const fsck = await fsckOk(devPath);
  t.true(fsck.ok, fsck.out);
  const blk = parseBlkid((await runTool('blkid', ['-p', devPath], { timeoutMs: 10_000 })).stdout);
  t.is(blk.get('TYPE'), 'ocfs2');
  t.is(blk.get('LABEL'), 'onlv');

  const info = await runSanbox(t, ['fsinfo', 'vgo/lvo', '--devices', pv, '--json']);
  t.is(info.code, 0, info.stderr);
  t.is((JSON.parse(info.stdout) as { uuid: string }).uuid, res.uuid);
  const sm = await runSanbox(t, ['slotmap', 'vgo/lvo', '--devices', pv, '--all', '--json']);
  t.is(sm.code, 0, sm.stderr);
  t.is((JSON.parse(sm.stdout) as { slots: unknown[] }).slots.length, 3);
});

test('mkfs VG/LV is refused with "device busy" while another process has the LV open, and writes nothing', async (t) => {
  const { openTarget } = await import('../src/volume/resolve.js');
  const crypto = await import('node:crypto');
  const dir = tempDir(t);
  const pv = path.join(dir, 'pv2.img');
  for (const args of [['disk', 'create', pv, '--size', '256M'], ['pvcreate', pv], ['vgcreate', 'vgbusy', pv], ['lvcreate', 'vgbusy', '-n', 'lvb', '-L', '64M', '--devices', pv]]) {
    const r = await runSanbox(t, args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  const user = await openTarget('vgbusy/lvb', { devices: [pv] }); // this test process is the LV's user
  const hash = (): string => crypto.createHash('sha256').update(fs.readFileSync(pv)).digest('hex');
  const before = hash();
  const busy = await runSanbox(t, ['mkfs', 'vgbusy/lvb', '--slots', '2', '--devices', pv]);
  t.is(busy.code, 1);
  t.regex(busy.stderr, /vgbusy\/lvb: device busy: logical volume in use by another process/);
  t.is(hash(), before, 'nothing written');
  await user.close();
  const ok = await runSanbox(t, ['mkfs', 'vgbusy/lvb', '--slots', '2', '--devices', pv]);
  t.is(ok.code, 0, ok.stderr);
});
