// Test (a) of issue 17 item 5 as the issue states it: a `sanbox node` process mounted on a volume
// made by the REAL mkfs.ocfs2, writing files through `ctl fs`, is killed -9 MID-WRITE — at an exact
// I/O (SANBOX_CRASH_AT, src/disk/crash-point.ts): right after the commit of a put whose data are
// clusters, before its checkpoint, so its slot's journal is DIRTY with a committed transaction the
// home blocks lack. Then the REAL kernel (one QEMU boot, docs/kernel-tests.md) mounts the volume as
// another o2cb node and recovers that slot itself; `sanbox recover` recovers a copy. Judged: the
// kernel replayed the slot ("Begin replay journal (node 1, slot 0)"); every home block of sanbox's
// replay holds the same bytes in the kernel's image; every file sanbox acknowledged is there in the
// guest with its sha256, and the one in flight (committed, not acknowledged) whole in both;
// fsck.ocfs2 -fn clean on both images.

import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { CRASH_AT_ENV } from '../src/disk/crash-point.js';
import { clusterInit, spawnNode } from './helpers/heartbeat-nodes.js';
import { contentOf, sha256 } from './helpers/crash-script.js';
import { mkfs } from './helpers/mounted-volume.js';
import { fsckOk, hasTool } from './helpers/ocfs2-oracle.js';
import { bootKernel, hasQemu, o2cbMountScript, tail } from './helpers/qemu-kernel.js';
import { ownLockDir, readFileAt, runSanbox, SANBOX_BIN, tempDir } from './helpers/tmp.js';
import { execFileSync } from 'node:child_process';
import { copyImage } from './helpers/image-copy.js';

ownLockDir(test);

const BS = 4096;
/** A node's mount, as it reaches the volume's disk. */
const MOUNT_WAIT_MS = 30_000;

/**
 * The node's flushes on the volume (heartbeat writes never flush, so this count is exact): 2 in the
 * mount (slot map entry, DIRTY); 5 per inline change (log, log start, commit, checkpoint, log
 * emptied); 6 per put of clusters (its data first). Puts 1 and 2 are inline (flushes 3-7, 8-12);
 * put 3 takes clusters: data 13, log 14, log start 15, commit 16 — killed right after it.
 */
const PUTS: { path: string; sizeBytes: number; seed: number }[] = [
  { path: '/a.txt', sizeBytes: 200, seed: 11 },
  { path: '/b.txt', sizeBytes: 3_000, seed: 12 },
  { path: '/big.bin', sizeBytes: 40_000, seed: 13 },
  { path: '/never.txt', sizeBytes: 100, seed: 14 },
];
const CRASH_AT = 'after-flush:16@v.img';

interface RecoverJson {
  slot: number;
  dirty: boolean;
  replay?: { transactions: { sequence: number; homeBlocks: number[] }[] };
}

async function put(t: ExecutionContext, img: string, vol: string, dir: string, p: (typeof PUTS)[number]): Promise<boolean> {
  const local = path.join(dir, `local-${p.seed}`);
  fs.writeFileSync(local, contentOf(p));
  const r = await runSanbox(t, ['ctl', img, '1', 'fs', 'put', vol, p.path, local], { timeoutMs: 60_000 });
  return r.code === 0;
}

test('a sanbox node killed -9 right after a commit (mid-write): the kernel recovers its slot to the home blocks of `sanbox recover` on a copy, and every acknowledged file is there with its sha256', async (t) => {
  t.timeout(600_000);
  t.true(hasQemu(), 'qemu-system-x86_64 is needed (apt-get install qemu-system-x86)');
  t.true(hasTool('fsck.ocfs2'), 'fsck.ocfs2 is needed (ocfs2-tools)');
  const dir = tempDir(t);
  const img = path.join(dir, 'c.img');
  await clusterInit(t, [img, '--nodes', '3', '--name', 'kern']);
  const vol = await mkfs(dir, 'kern', 2);
  const node = spawnNode(t, img, 1, ['--mount', vol], { [CRASH_AT_ENV]: CRASH_AT });
  await node.waitLine((l) => /^mounted .* in slot 0$/.test(l.msg ?? ''), MOUNT_WAIT_MS, 'node 1 mounted in slot 0');

  const acked: (typeof PUTS)[number][] = [];
  for (const p of PUTS) {
    if (!(await put(t, img, vol, dir, p))) break;
    acked.push(p);
  }
  const died = await node.exited;
  t.is(died.signal, 'SIGKILL', `the node died at its crash point ${CRASH_AT}: ${node.stderr()}`);
  t.deepEqual(acked.map((p) => p.path), ['/a.txt', '/b.txt'], 'the two inline puts were acknowledged, the clustered one was not');
  const inFlight = PUTS[2]!;

  // The slot is DIRTY with the committed, never checkpointed transaction of the put in flight.
  const dump = await runSanbox(t, ['logdump', vol, '0', '--json']);
  t.is(dump.code, 0, dump.stderr);
  const log = JSON.parse(dump.stdout) as { dirty: boolean; scan: { transactions: unknown[] } };
  t.true(log.dirty, 'slot 0 is DIRTY');
  t.is(log.scan.transactions.length, 1, 'one committed transaction waits in the log');

  // sanbox recovers a copy (the node's heartbeat block no longer changes).
  const copy = path.join(dir, 'copy.img');
  copyImage(vol, copy);
  const rec = await runSanbox(t, ['recover', copy, '--json', '--observe-ms', '1000'], { timeoutMs: 60_000 });
  t.is(rec.code, 0, rec.stderr);
  const slot0 = (JSON.parse(rec.stdout) as RecoverJson[]).find((r) => r.slot === 0)!;
  t.true(slot0.dirty);
  const homes = [...new Set(slot0.replay!.transactions.flatMap((tx) => tx.homeBlocks))];
  t.true(homes.length >= 3, `the transaction logs the inode, the directory and allocator blocks (${homes.length})`);

  // The kernel, as node 2, mounts the original and recovers slot 0 itself. noatime: reading must not change the inodes compared.
  const files = [...acked, inFlight];
  const run = await bootKernel(t, { disks: [vol], script: [
    await o2cbMountScript(vol, { node: 2, dev: '/dev/vdb', mount: '/mnt/v', mountOptions: 'noatime' }),
    'echo "SANBOX-OUT ls $(ls -1 /mnt/v | tr "\\n" " ")"',
    ...files.map((p, i) => `echo "SANBOX-OUT sha${i} $(sha256sum /mnt/v${p.path} | cut -d" " -f1)"`),
    // The recovery thread runs after mount; umount waits for it.
    'umount /mnt/v || echo "SANBOX-ERROR umount"',
  ].join('\n') });
  t.log(`kernel boot: ${run.elapsedMs} ms`);
  t.deepEqual(run.errors, [], tail(run.console));
  t.is(run.scriptExit, 0, tail(run.console));
  t.regex(run.console, /Begin replay journal \(node 1, slot 0\)/, tail(run.console));
  t.is(run.out.get('ls'), 'a.txt b.txt big.bin lost+found', 'the kernel lists the acknowledged files and the committed one, nothing else');
  files.forEach((p, i) => t.is(run.out.get(`sha${i}`), sha256(contentOf(p)), `sha256 of ${p.path} in the kernel`));

  // Home blocks of the kernel's replay = sanbox's; sanbox reads the same files from its copy.
  const differ = homes.filter((h) => !readFileAt(vol, h * BS, BS).equals(readFileAt(copy, h * BS, BS)));
  t.deepEqual(differ, [], 'home blocks that differ between the kernel\'s and sanbox\'s recovery');
  for (const p of files) {
    const bytes = execFileSync(process.execPath, [SANBOX_BIN, 'cat', copy, p.path], { timeout: 30_000, maxBuffer: 16 * 1024 * 1024 });
    t.is(sha256(bytes), sha256(contentOf(p)), `sanbox cat ${p.path} after sanbox recover`);
  }
  for (const image of [vol, copy]) {
    const fsck = await fsckOk(image);
    t.true(fsck.ok, `${path.basename(image)}: ${fsck.out}`);
  }
});
