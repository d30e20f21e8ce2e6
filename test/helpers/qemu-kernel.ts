// The real Linux kernel as a judge: boots Debian's kernel under QEMU (TCG) with image files
// attached as virtio disks, runs a shell script given by the test inside the guest, and returns
// what the guest printed on its serial console. docs/kernel-tests.md describes the harness.
//
// - test/kernel/prepare.sh fetches the kernel package (apt-get download, dpkg-deb -x) and builds
//   the initramfs (busybox + the ocfs2/o2cb/jbd2 modules) once into a cache dir.
// - The guest's init (test/kernel/init) loads the modules and sources the script from /dev/vda (a
//   small disk made here); the images follow as /dev/vdb, /dev/vdc, ... attached cache=none, so
//   the guest's writes reach the image file (O_DIRECT) and flushes are fdatasyncs.
// - Every boot is bounded: QEMU is SIGKILLed at the bound and at test teardown.

import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { openDevice } from '../../src/disk/index.js';
import { uuidHex } from '../../src/format/ocfs2/superblock.js';
import { heartbeatRegion, Ocfs2Volume } from '../../src/fs/index.js';
import { runToolWith } from './run-tool.js';
import { hasTool } from './ocfs2-oracle.js';
import { REPO_ROOT, runSanbox, spawnChild, tempDir } from './tmp.js';

/** Bound on fetching the kernel package and building the initramfs (a 70 MB download). */
const PREPARE_TIMEOUT_MS = 300_000;
/**
 * Default bound on one boot. Under TCG a mount-write-umount run takes ≈ 20 s on an idle machine
 * (boot to init ≈ 2.5 s, o2hb start ≈ 10 s guest time) and ≈ 45 s with the whole suite sharing
 * two cores; the bound leaves room for a loaded CI machine.
 */
const BOOT_TIMEOUT_MS_DEFAULT = 180_000;
/** The script disk's granularity: a virtio disk's size is a whole number of sectors. */
const SCRIPT_DISK_ALIGN_BYTES = 4096;
/** Guest memory: the kernel, busybox and the page cache of small test volumes. */
const GUEST_MEMORY_MB = 512;

export interface KernelFiles {
  vmlinuz: string;
  initramfs: string;
  version: string;
}

let prepared: Promise<KernelFiles> | undefined;

/** The cached kernel and initramfs, fetched and built on first use (once per process). */
export function kernelFiles(): Promise<KernelFiles> {
  prepared ??= (async () => {
    const script = path.join(REPO_ROOT, 'test/kernel/prepare.sh');
    const r = await runToolWith('bash', [script], { timeoutMs: PREPARE_TIMEOUT_MS, maxBufferBytes: 16 * 1024 * 1024, killSignal: 'SIGKILL', noExitCode: -1 });
    if (r.code !== 0) throw new Error(`test/kernel/prepare.sh failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    const dir = r.stdout.trim().split('\n').pop()!;
    return {
      vmlinuz: path.join(dir, 'vmlinuz'),
      initramfs: path.join(dir, 'initramfs.cpio.gz'),
      version: fs.readFileSync(path.join(dir, 'kernel-version'), 'utf8').trim(),
    };
  })();
  return prepared;
}

export function hasQemu(): boolean {
  return ['/usr/bin/qemu-system-x86_64', '/usr/local/bin/qemu-system-x86_64'].some((p) => fs.existsSync(p));
}

export interface BootOptions {
  /** Image files attached as /dev/vdb, /dev/vdc, ... (cache=none). */
  disks: string[];
  /** Shell script sourced by the guest's init (busybox sh); helpers: o2cb_node, o2hb_start. */
  script: string;
  timeoutMs?: number;
}

export interface KernelRun {
  /** Everything on the serial console (kernel messages included). */
  console: string;
  /** The script's status from "SANBOX-EXIT N"; undefined when the guest never got there (crash, sysrq). */
  scriptExit?: number;
  /** "SANBOX-ERROR ..." lines: a guest step that failed. */
  errors: string[];
  /** Lines "SANBOX-OUT KEY VALUE..." as KEY → VALUE (later lines win). */
  out: Map<string, string>;
  elapsedMs: number;
}

/** Boots the kernel with the disks attached and runs the script; resolves when QEMU exits. */
export async function bootKernel(t: ExecutionContext, opts: BootOptions): Promise<KernelRun> {
  const k = await kernelFiles();
  const timeoutMs = opts.timeoutMs ?? BOOT_TIMEOUT_MS_DEFAULT;
  const scriptDisk = path.join(path.dirname(opts.disks[0] ?? fs.mkdtempSync('/tmp/sanbox-kernel-')), `script-${process.pid}-${Date.now()}.disk`);
  fs.writeFileSync(scriptDisk, scriptDiskBytes(opts.script));
  t.teardown(() => fs.rmSync(scriptDisk, { force: true }));
  const drive = (file: string): string[] => ['-drive', `file=${file},format=raw,if=virtio,cache=none`];
  const args = [
    '-accel', 'tcg', '-m', String(GUEST_MEMORY_MB), '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-net', 'none', '-no-reboot',
    '-kernel', k.vmlinuz, '-initrd', k.initramfs,
    // panic=-1: a panic reboots at once, which -no-reboot turns into QEMU's exit.
    // no_timer_check: under TCG on a loaded host the IO-APIC timer check can miss its ticks and
    // panic the boot ("IO-APIC + timer doesn't work"); the check proves nothing about ocfs2.
    '-append', 'console=ttyS0 panic=-1 quiet no_timer_check',
    ...drive(scriptDisk), ...opts.disks.flatMap(drive),
  ];
  const started = Date.now();
  const child = spawnChild(t, 'qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout!.on('data', (d: Buffer) => (text += d.toString('latin1')));
  child.stderr!.on('data', (d: Buffer) => (text += d.toString('latin1')));
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    new Promise<boolean>((resolve) => child.once('close', () => resolve(false))),
    new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs))),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    child.kill('SIGKILL');
    throw new Error(`kernel guest did not power off within ${timeoutMs} ms; console tail:\n${tail(text)}`);
  }
  return parseConsole(text.replace(/\r/g, ''), Date.now() - started);
}

/**
 * A kernel message printed while the script was in the middle of a line lands inside that line
 * ("SANBOX-OUT crash[    3.684433] virtio_blk ...\ning"): the kernel does not know where the tty's
 * cursor is. Such messages (printk time stamp, not at a line start) are cut out before the
 * script's lines are parsed, which joins the split line again.
 */
const MID_LINE_KERNEL_MESSAGE = /(?<=[^\n])\[\s*\d+\.\d{6}\] [^\n]*\n/g;

function parseConsole(text: string, elapsedMs: number): KernelRun {
  const out = new Map<string, string>();
  const errors: string[] = [];
  let scriptExit: number | undefined;
  for (const line of text.replace(MID_LINE_KERNEL_MESSAGE, '').split('\n')) {
    let m = /SANBOX-OUT (\S+) ?(.*)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!.trim());
    m = /SANBOX-ERROR (.*)$/.exec(line);
    if (m) errors.push(m[1]!.trim());
    m = /SANBOX-EXIT (\d+)/.exec(line);
    if (m) scriptExit = Number(m[1]);
  }
  return { console: text, scriptExit, errors, out, elapsedMs };
}

/** The script padded with newlines to whole sectors: sh reads the device to its end. */
function scriptDiskBytes(script: string): Buffer {
  const body = Buffer.from(`${script}\n`, 'utf8');
  const size = Math.ceil(body.length / SCRIPT_DISK_ALIGN_BYTES) * SCRIPT_DISK_ALIGN_BYTES;
  const b = Buffer.alloc(size, '\n');
  body.copy(b);
  return b;
}

export function tail(text: string, lines = 40): string {
  return text.replace(/\r/g, '').split('\n').slice(-lines).join('\n');
}

/**
 * The shell lines that make the guest node NODE of the volume's o2cb cluster, start local
 * heartbeat on the volume's region (geometry from the volume, as ocfs2_hb_ctl computes it) and
 * mount it at MOUNT. `dev` is the guest's name of the image (/dev/vdb for the first).
 */
export async function o2cbMountScript(image: string, opts: { node: number; dev?: string; mount?: string; mountOptions?: string }): Promise<string> {
  const d = await openDevice(image, { readOnly: true });
  try {
    const vol = await Ocfs2Volume.open(d);
    const sb = vol.sb;
    const hb = await heartbeatRegion(d);
    const cluster = sb.clusterName;
    if (!cluster) throw new Error(`${image}: the volume names no o2cb cluster (mkfs --cluster-stack o2cb --cluster-name NAME)`);
    const dev = opts.dev ?? '/dev/vdb';
    const mnt = opts.mount ?? '/mnt/v';
    const uuid = uuidHex(sb.uuid);
    return [
      `o2cb_node ${cluster} ${opts.node} || echo "SANBOX-ERROR o2cb node ${opts.node}"`,
      `o2hb_start ${cluster} ${uuid} ${dev} ${hb.offsetBytes / hb.blockSizeBytes} ${hb.blockSizeBytes} ${hb.blockCount} || echo "SANBOX-ERROR o2hb start"`,
      `mkdir -p ${mnt}`,
      `mount -t ocfs2 -o heartbeat=local${opts.mountOptions ? `,${opts.mountOptions}` : ''} ${dev} ${mnt} || echo "SANBOX-ERROR mount ${dev}"`,
    ].join('\n');
  } finally {
    await d.close();
  }
}

/**
 * The kernel tests' volume: checks that QEMU and fsck.ocfs2 are there (a kernel test that cannot
 * run its judges fails), then `sanbox mkfs` a 256 MiB image in a temp dir as o2cb cluster `kern`:
 * 4 slots, 4K blocks and clusters, 8M journals.
 */
export async function kernelTestVolume(t: ExecutionContext): Promise<{ dir: string; img: string }> {
  t.true(hasQemu(), 'qemu-system-x86_64 is needed (apt-get install qemu-system-x86)');
  t.true(hasTool('fsck.ocfs2'), 'fsck.ocfs2 is needed (ocfs2-tools)');
  const dir = tempDir(t);
  const img = path.join(dir, 'vol.img');
  const made = await runSanbox(t, ['disk', 'create', img, '--size', '256M']);
  t.is(made.code, 0, made.stderr);
  const mk = await runSanbox(t, ['mkfs', img, '--slots', '4', '--journal-size', '8M', '--block-size', '4K', '--cluster-size', '4K', '--cluster-stack', 'o2cb', '--cluster-name', 'kern']);
  t.is(mk.code, 0, mk.stderr);
  return { dir, img };
}
