// Issue 18, review finding (MEDIUM): lvreduce/lvremove refuse an LV whose ocfs2 is mounted, and
// that check must be atomic with the change with respect to a mount starting at the same moment.
// Separate OS processes racing on the same images: node 1 (a `sanbox node`) has the LV active
// (shared container, so its activation is a lock-out holder) and is told to mount the ocfs2 on it,
// while a `sanbox lvreduce --cluster C --node 0` (joined as node 0) shrinks the LV. The changer is
// stopped right after its check (SANBOX_PAUSE_AT=lockout-vetted: the slot map read empty, the VG
// lock EX held) and the mount is started then — the window the finding names. Checked:
//   - the mount does not get its slot while the changer sits between its check and its commit
//     (it waits for the volume's superblock lock, which the check holds PR);
//   - the change completes, and the mount then fails (it reads the shortened device, which its
//     superblock says is too short) — never both: no slot entry of a node on a cut volume;
//   - the other order still refuses: mounted first, the reduce is refused naming node 1;
//   - the real pvck is clean (lvm2's vgck refuses a shared VG without lvmlockd).

import test, { type ExecutionContext } from 'ava';
import type { LockspaceView } from '../src/dlm/lockspace-view.js';
import type { NodeStatus } from '../src/node/node.js';
import { isEvent, spawnNode } from './helpers/heartbeat-nodes.js';
import { lvSizeBytes, makeLab, MiB, realToolsClean, type Lab } from './helpers/lv-lab.js';
import { sanboxCli } from './helpers/lvm-real.js';
import { errorLines, pausedCommand } from './helpers/paused-command.js';
import { exited, ownLockDir } from './helpers/tmp.js';

ownLockDir(test);

const UP_MS = 20_000;
/** How long the mount is given while the changer sits at its pause point: far longer than a mount takes here (~100 ms). */
const MOUNT_WINDOW_MS = 1500;
const EXIT_MS = 60_000;

async function ok(t: ExecutionContext, args: string[]): Promise<string> {
  const r = await sanboxCli(t, args);
  t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A shared container with LV fs (40 MiB) holding an ocfs2 of this cluster; node 1 running with it active (shared). */
async function lab(t: ExecutionContext): Promise<{ l: Lab; dev: string[] }> {
  const l = await makeLab(t, 1, 64, [['-n', 'fs', '-L', '40m']], 3);
  const dev = ['--devices', l.pvs.join(',')];
  await ok(t, ['vgchange', l.vg, '--container', 'shared', '--cluster', l.cluster, ...dev]);
  await ok(t, ['mkfs', `${l.vg}/fs`, '--slots', '2', '--cluster-stack', 'o2cb', '--cluster-name', 'lockout', ...dev]);
  const n1 = spawnNode(t, l.cluster, 1, dev);
  await n1.waitLine((x) => /joined cluster/.test(x.msg ?? '') || isEvent('up', 1)(x), UP_MS, 'node 1 joined');
  await ok(t, ['ctl', l.cluster, '1', 'lvm', 'lvchange', '-asy', `${l.vg}/fs`, ...dev]);
  return { l, dev };
}

async function mountsOf(t: ExecutionContext, l: Lab): Promise<string[]> {
  const s = JSON.parse(await ok(t, ['ctl', l.cluster, '1', 'status', '--json'])) as NodeStatus;
  return s.mounts.map((m) => m.volume);
}

test.serial('a mount racing an lvreduce past its mounted check waits for the change and then fails on the shortened LV; never both', async (t) => {
  const { l, dev } = await lab(t);
  const changer = await pausedCommand(t, ['lvreduce', '-y', '-L', '32m', `${l.vg}/fs`, ...dev, '--cluster', l.cluster, '--node', '0'], 'lockout-vetted');
  let mountDone = false;
  const mount = sanboxCli(t, ['ctl', l.cluster, '1', 'mount', `${l.vg}/fs`]).finally(() => (mountDone = true));
  await new Promise((r) => setTimeout(r, MOUNT_WINDOW_MS));
  t.false(mountDone, 'the mount did not get its slot between the check and the change');
  // Not merely slow: node 1's request for the volume's superblock lock is queued behind the changer's PR.
  const view = JSON.parse(await ok(t, ['dlm', 'ls', l.cluster, '--json'])) as LockspaceView;
  const superLock = view.resources.find((r) => /^[0-9A-F]{32}:S/.test(r.resource));
  t.truthy(superLock, `the superblock lock is in the lockspace: ${view.resources.map((r) => r.resource).join(', ')}`);
  t.true(superLock!.granted.some((g) => g.node === 0 && g.granted === 'PR'), `the changer (node 0) holds it PR: ${JSON.stringify(superLock)}`);
  t.true([...superLock!.waiting, ...superLock!.converting].some((w) => w.node === 1), `node 1's mount waits for it: ${JSON.stringify(superLock)}`);
  changer.child.kill('SIGCONT');
  const c = await exited(changer.child, EXIT_MS);
  const m = await mount;
  t.is(c.code, 0, `the reduce completed: ${changer.err()}`);
  t.deepEqual(errorLines(changer), [], 'the reduce printed no error');
  t.not(m.code, 0, `the mount failed after the reduce: ${m.stdout}`);
  t.regex(m.stderr, /shorter than the \d+ bytes its ocfs2 superblock says/, 'it read the shortened device');
  t.is(m.stderr.trim().split('\n').length, 1, `one line: ${m.stderr}`);
  t.deepEqual(await mountsOf(t, l), [], 'node 1 has nothing mounted');
  t.is(await lvSizeBytes(l, 'fs'), 32 * MiB);
  // pvck only: lvm2's vgck refuses a shared VG without lvmlockd.
  await realToolsClean(t, l, undefined, { vgck: false });
});

test.serial('mounted first: the lvreduce is refused naming the node, nothing changed', async (t) => {
  const { l, dev } = await lab(t);
  await ok(t, ['ctl', l.cluster, '1', 'mount', `${l.vg}/fs`]);
  const r = await sanboxCli(t, ['lvreduce', '-y', '-L', '32m', `${l.vg}/fs`, ...dev, '--cluster', l.cluster, '--node', '0']);
  t.is(r.code, 1);
  t.regex(r.stderr, /^sanbox: \S+\/fs is in use: the ocfs2 volume on it is mounted by node 1 \(slot \d\); umount it there before you reduce it\n$/);
  t.deepEqual(await mountsOf(t, l), [`${l.vg}/fs`]);
  t.is(await lvSizeBytes(l, 'fs'), 40 * MiB);
  await ok(t, ['ctl', l.cluster, '1', 'umount', `${l.vg}/fs`]);
  // pvck only: lvm2's vgck refuses a shared VG without lvmlockd.
  await realToolsClean(t, l, undefined, { vgck: false });
});
