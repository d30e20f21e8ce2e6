// Issue 15's "done when": hundreds of bad command lines and corrupted images (made by sanbox and
// by the real mkfs.ocfs2 / lvm2) thrown at every command. For every case: no crash or stack
// trace; a failure is exactly one line (besides lvm2-style WARNING lines) naming the device, the
// offset or the argument; a failed command wrote nothing to the images it was given (hashed
// before and after); a device another process holds is never written; and no sanbox command
// answers exit 0 on metadata the real lvm2 (vgs/vgck) or fsck.ocfs2 (exit 8) rejects.
//
// Most command lines run in-process (tools/cli.ts's main), which takes milliseconds; node, lock,
// ctl and demo run as processes.

import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { runCliInProcess, type CliResult } from './helpers/cli-inprocess.js';
import { fuzzRandom, type FuzzRandom } from './helpers/fuzz.js';
import { attachLoop, detachLoop, lvm, runTool } from './helpers/lvm-real.js';
import { realMkfs, runTool as runOcfs2Tool } from './helpers/ocfs2-oracle.js';
import { ownLockDir, REPO_ROOT, runSanbox, spawnChild, waitFor } from './helpers/tmp.js';
import { copyImage } from './helpers/image-copy.js';

ownLockDir(test);

const MiB = 1024 * 1024;
/**
 * Mutants per base image. Each is judged by the real tools first (losetup + vgs + vgck, or
 * fsck.ocfs2: 0.3-1 s each on a loaded 2-CPU machine), which is what bounds this file's time.
 */
const LVM_MUTANTS_PER_BASE = 20;
const OCFS2_MUTANTS_PER_BASE = 10;
/** Bytes hashed at the start of an image: every label, metadata area and superblock lives there. */
const HASHED_HEAD_BYTES = 2 * 1024 * 1024;

/**
 * What an image looks like now: size, modification time (any write moves it) and a hash of its
 * first 2 MiB (in case a write fell within the clock's granularity). Hashing whole images for
 * every one of hundreds of cases would cost minutes.
 */
function sha(f: string): string {
  if (!fs.existsSync(f) || !fs.statSync(f).isFile()) return 'none';
  const st = fs.statSync(f, { bigint: true });
  const fd = fs.openSync(f, 'r');
  try {
    const head = Buffer.alloc(Math.min(HASHED_HEAD_BYTES, Number(st.size)));
    fs.readSync(fd, head, 0, head.length, 0);
    return `${st.size}:${st.mtimeNs}:${crypto.createHash('sha256').update(head).digest('hex')}`;
  } finally {
    fs.closeSync(fd);
  }
}

interface Case {
  argv: string[];
  /** Existing image files the command is given: a failure must leave them byte-for-byte unchanged. */
  images: string[];
  /** 'fail': the command must not succeed; 'any': success is allowed (the other checks still apply). */
  expect: 'fail' | 'any';
  env?: Record<string, string>;
}

interface Tally {
  cases: number;
  failed: number;
  byKind: Map<string, number>;
}

const tally: Tally = { cases: 0, failed: 0, byKind: new Map() };
/** Every broken rule, collected so one run shows them all (assertions stop at the first). */
const problems: string[] = [];
function check(ok: boolean, msg: string): void {
  if (!ok) problems.push(msg);
}

function count(kind: string): void {
  tally.cases++;
  tally.byKind.set(kind, (tally.byKind.get(kind) ?? 0) + 1);
}

/** Words of the command line an error may name: arguments, their basenames, option names. */
function namable(argv: string[]): string[] {
  const out: string[] = [];
  for (const a of argv) {
    if (a === '') continue;
    out.push(a, path.basename(a));
    const m = /^--?([a-zA-Z-]+)/.exec(a);
    if (m) out.push(m[1]!);
  }
  return out.filter((s) => s.length > 0);
}

/** The checks every case gets; returns the result for further checks. */
async function judge(_t: ExecutionContext, kind: string, c: Case, r?: CliResult): Promise<CliResult> {
  const before = c.images.map(sha);
  const res = r ?? (await runCliInProcess(c.argv, c.env));
  count(kind);
  const what = `${kind}: sanbox ${c.argv.map((a) => JSON.stringify(a)).join(' ')}`;
  check([0, 1, 2, 126, 127].includes(res.code), `${what}: exit ${res.code}: ${res.stderr}`);
  check(!/CRASH|\n\s+at .+:\d+:\d+\)?\n|unexpected error/.test(res.stderr), `${what}: ${res.stderr}`);
  if (c.expect === 'fail') check(res.code !== 0, `${what} succeeded: ${res.stdout.slice(0, 200)}`);
  if (res.code !== 0) {
    tally.failed++;
    const lines = res.stderr.split('\n').filter((l) => l.trim() !== '' && !/^\s*WARNING:/.test(l));
    check(lines.length === 1, `${what}: not one line: ${res.stderr}`);
    const line = lines[0] ?? '';
    const names = namable(c.argv);
    // Named: an offset, a word of the command line, or a quoted value or argument name ('--size', "").
    const named = /offset \d+/.test(line) || /'[^']*'|"[^"]*"/.test(line) || names.some((n) => line.includes(n));
    check(named, `${what}: the error names no device, offset or argument: ${line}`);
    check(c.images.map(sha).join() === before.join(), `${what}: a failed command wrote to its images`);
  }
  return res;
}

interface Fixtures {
  dir: string;
  cluster: string;
  vol: string;
  realVol: string;
  pvA: string;
  pvB: string;
  pvS: string;
  realPv: string;
  blank: string;
  empty: string;
  tiny: string;
  text: string;
  fifo: string;
  loopLink: string;
  longName: string;
  missing: string;
}

async function must(t: ExecutionContext, argv: string[]): Promise<void> {
  const r = await runCliInProcess(argv);
  if (r.code !== 0) throw new Error(`fixture: sanbox ${argv.join(' ')}: ${r.stderr}`);
}

let built: Promise<Fixtures> | undefined;
/** The fixtures, built once for the whole file (real mkfs.ocfs2 and lvm2 runs are slow) and removed after it. */
function fixtures(t: ExecutionContext): Promise<Fixtures> {
  built ??= buildFixtures(t);
  return built;
}
test.after.always('remove the fixtures', async () => {
  if (built) fs.rmSync((await built).dir, { recursive: true, force: true });
});

async function buildFixtures(t: ExecutionContext): Promise<Fixtures> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sanbox-adversarial-'));
  const p = (n: string): string => path.join(dir, n);
  const f: Fixtures = {
    dir,
    cluster: p('cluster.img'),
    vol: p('vol.img'),
    realVol: p('realvol.img'),
    pvA: p('pvA.img'),
    pvB: p('pvB.img'),
    pvS: p('pvS.img'),
    realPv: p('realpv.img'),
    blank: p('blank.img'),
    empty: p('empty.img'),
    tiny: p('tiny.img'),
    text: p('notes.txt'),
    fifo: p('fifo'),
    loopLink: p('loop-link.img'),
    longName: p(`${'n'.repeat(300)}.img`),
    missing: p('missing.img'),
  };
  await must(t, ['cluster', 'init', f.cluster, '--nodes', '3', '--name', 'adv']);
  await must(t, ['disk', 'create', f.vol, '--size', '64M']);
  await must(t, ['mkfs', f.vol, '--slots', '2', '--journal-size', '4M']);
  await realMkfs(f.realVol, 64 * MiB, ['-N', '2', '-b', '4096', '-C', '4096', '-J', 'size=4M', '--fs-feature-level=default']);
  for (const img of [f.pvA, f.pvB, f.pvS, f.blank]) await must(t, ['disk', 'create', img, '--size', '16M']);
  await must(t, ['pvcreate', f.pvA, f.pvB, f.pvS]);
  await must(t, ['vgcreate', 'vg0', f.pvA, f.pvB]);
  await must(t, ['lvcreate', '-n', 'lv0', '-L', '4M', 'vg0', '--devices', `${f.pvA},${f.pvB}`]);
  await must(t, ['vgcreate', 'vgS', f.pvS]);
  await must(t, ['lvcreate', '-n', 'lvS', '-L', '4M', 'vgS', '--devices', f.pvS]);
  // A VG made by the real lvm2, through a loop device.
  fs.writeFileSync(f.realPv, '');
  fs.truncateSync(f.realPv, 16 * MiB);
  const loop = await attachLoop(t, f.realPv);
  for (const [cmd, args] of [
    ['pvcreate', [loop]],
    ['vgcreate', ['-s', '1m', 'vgR', loop]],
    ['lvcreate', ['--driverloaded', 'n', '-an', '-Zn', '-L', '4M', '-n', 'lvR', 'vgR']],
  ] as const) {
    const r = await lvm(cmd, [loop], [...args]);
    if (r.code !== 0) throw new Error(`fixture: ${cmd}: ${r.stderr}`);
  }
  await detachLoop(loop);
  fs.writeFileSync(f.empty, '');
  fs.writeFileSync(f.tiny, Buffer.alloc(100, 1));
  fs.writeFileSync(f.text, 'not a disk\n');
  execFileSync('mkfifo', [f.fifo]);
  fs.symlinkSync(f.loopLink, f.loopLink);
  return f;
}

/** Bad values for each kind of argument; `must` = every command must refuse it. */
function badImages(f: Fixtures): { value: string; must: boolean }[] {
  return [
    { value: f.missing, must: true },
    { value: f.dir, must: true },
    { value: f.fifo, must: true },
    { value: f.empty, must: false },
    { value: f.tiny, must: false },
    { value: f.text, must: false },
    { value: f.loopLink, must: true },
    { value: f.longName, must: true },
    { value: '', must: true },
    { value: 'nbd://127.0.0.1:1/none', must: true },
    { value: f.cluster, must: false },
    { value: f.vol, must: false },
    { value: f.pvA, must: false },
    { value: f.realVol, must: false },
  ];
}
const BAD_NAMES = ['', 'a/b', '-x', '.', '..', 'x'.repeat(200), 'ä', 'snapshot', 'lv_tmeta', 'a b'];
const BAD_SIZES = ['', '-1', '0', 'abc', '1Q', '1.5.5G', '99999999999P', '1e3', '+', '%'];
const BAD_INTS = ['', '-1', 'x', '1.5', '99999', '0x10', ' '];

test.serial('bad command lines: every command refuses bad images, names, sizes and numbers in one line, writing nothing', async (t) => {
  t.timeout(300_000);
  const f = await fixtures(t);
  const devs = `${f.pvA},${f.pvB}`;
  const scratch = (): string => {
    const s = path.join(f.dir, `scratch-${crypto.randomBytes(4).toString('hex')}.img`);
    copyImage(f.blank, s);
    return s;
  };
  const commandsOnImage: ((img: string) => string[])[] = [
    (i) => ['disk', 'info', i],
    (i) => ['disk', 'info', i, '--json'],
    (i) => ['pvcreate', i],
    (i) => ['pvremove', i],
    (i) => ['pvs', i],
    (i) => ['pvdisplay', i],
    (i) => ['vgcreate', 'vgnew', i],
    (i) => ['vgextend', 'vg0', i, '--devices', devs],
    (i) => ['vgreduce', 'vg0', i, '--devices', devs],
    (i) => ['vgs', '--devices', i],
    (i) => ['lvs', '--devices', i],
    (i) => ['lvcreate', '-n', 'new', '-L', '4M', 'vg0', '--devices', i],
    (i) => ['mkfs', i, '--slots', '2'],
    (i) => ['fsinfo', i],
    (i) => ['slotmap', i],
    (i) => ['hb', i],
    (i) => ['logdump', i, '0'],
    (i) => ['ls', i, '/'],
    (i) => ['cat', i, '/nothing'],
    (i) => ['recover', i],
    (i) => ['cluster', 'status', i],
    (i) => ['dlm', 'ls', i],
  ];
  for (const cmd of commandsOnImage) {
    for (const bad of badImages(f)) {
      const argv = cmd(bad.value);
      // A listing of a real PV or VG, or a read of a real volume, may succeed.
      const images = [bad.value, f.pvA, f.pvB].filter((x) => fs.existsSync(x) && x !== '' && fs.statSync(x).isFile());
      await judge(t, 'bad image', { argv, images, expect: bad.must ? 'fail' : 'any' });
    }
  }
  // Names (VG, LV, cluster) in every place one is taken.
  const nameCommands: ((n: string) => { argv: string[]; images: string[] })[] = [
    (n) => ({ argv: ['vgcreate', n, f.blank], images: [f.blank] }),
    (n) => ({ argv: ['lvcreate', '-n', n, '-L', '4M', 'vg0', '--devices', devs], images: [f.pvA, f.pvB] }),
    (n) => ({ argv: ['lvcreate', '-n', 'ok', '-L', '4M', n, '--devices', devs], images: [f.pvA, f.pvB] }),
    (n) => ({ argv: ['lvrename', 'vg0/lv0', n, '--devices', devs], images: [f.pvA, f.pvB] }),
    (n) => ({ argv: ['lvremove', `${n}/lv0`, '--devices', devs], images: [f.pvA, f.pvB] }),
    (n) => ({ argv: ['lvextend', `vg0/${n}`, '-L', '+4M', '--devices', devs], images: [f.pvA, f.pvB] }),
    (n) => ({ argv: ['vgremove', n, '--devices', devs], images: [f.pvA, f.pvB] }),
    (n) => ({ argv: ['vgs', n, '--devices', devs], images: [f.pvA, f.pvB] }),
    // (LVM's reserved names and '.', '-x' are fine cluster names: only the others are asked here.)
    (n) => ({ argv: ['cluster', 'init', path.join(f.dir, `c-${crypto.randomBytes(3).toString('hex')}.img`), '--nodes', '2', '--name', ['', 'a/b', 'ä', 'a b'].includes(n) || n.length > 64 ? n : 'a/b'], images: [] }),
    (n) => ({ argv: ['mkfs', 'vg0/nolv', '--slots', '2', '--label', n.repeat(3), '--devices', devs], images: [f.pvA, f.pvB] }),
  ];
  // A fault control file that does not exist yet holds no rules; one that is no regular file is refused.
  for (const bad of [f.dir, f.fifo, f.text, f.cluster, '']) await judge(t, 'bad image', { argv: ['fault', 'ls', bad], images: [], expect: 'fail' });
  await judge(t, 'misreport', { argv: ['fault', 'set', path.join(f.dir, 'faults.json'), '--action', 'latency'], images: [], expect: 'fail' });
  await judge(t, 'misreport', { argv: ['cluster', 'init', path.join(f.dir, 'names.img'), '--nodes', '2', '--name', 'x', '--node-names', 'a,a'], images: [], expect: 'fail' });
  for (const cmd of nameCommands) for (const n of BAD_NAMES) await judge(t, 'bad name', { ...cmd(n), expect: 'fail' });
  // Sizes and numbers.
  const sizeCommands: ((s: string) => { argv: string[]; images: string[] })[] = [
    (s) => ({ argv: ['disk', 'create', path.join(f.dir, 'never.img'), '--size', s], images: [] }),
    (s) => ({ argv: ['lvcreate', '-n', 'sz', '-L', s, 'vg0', '--devices', devs], images: [f.pvA, f.pvB] }),
    (s) => ({ argv: ['lvextend', 'vg0/lv0', '-L', `+${s}`, '--devices', devs], images: [f.pvA, f.pvB] }),
    (s) => ({ argv: ['lvreduce', 'vg0/lv0', '-L', `-${s}`, '--devices', devs], images: [f.pvA, f.pvB] }),
    (s) => ({ argv: ['vgcreate', 'vgsz', f.blank, '-s', s], images: [f.blank] }),
    (s) => {
      const img = scratch();
      return { argv: ['mkfs', img, '--slots', '2', '--block-size', s], images: [img] };
    },
    (s) => ({ argv: ['pvcreate', f.blank, '--metadatasize', s.startsWith('-') || s === '' ? s : s === '0' ? '99999T' : `${s}0000T`], images: [f.blank] }),
  ];
  for (const cmd of sizeCommands) for (const s of BAD_SIZES) await judge(t, 'bad size', { ...cmd(s), expect: 'fail' });
  const intCommands: ((n: string) => { argv: string[]; images: string[] })[] = [
    (n) => ({ argv: ['cluster', 'init', path.join(f.dir, 'never2.img'), '--nodes', n, '--name', 'x'], images: [] }),
    (n) => {
      const img = scratch();
      return { argv: ['mkfs', img, '--slots', n], images: [img] };
    },
    (n) => ({ argv: ['logdump', f.vol, n], images: [f.vol] }),
    (n) => ({ argv: ['lvcreate', '-n', 'st', '-l', '2', '-i', n, 'vg0', '--devices', devs], images: [f.pvA, f.pvB] }),
    (n) => ({ argv: ['pvcreate', f.blank, '--metadatacopies', n], images: [f.blank] }),
    (n) => ({ argv: ['disk', 'create', path.join(f.dir, 'never3.img'), '--size', '1M', '--sector-size', n], images: [] }),
  ];
  for (const cmd of intCommands) for (const n of BAD_INTS) await judge(t, 'bad number', { ...cmd(n), expect: 'fail' });
  // Unknown options and missing arguments, for every command.
  const every = [
    ['disk', 'create'], ['disk', 'info'], ['pvcreate'], ['pvremove'], ['pvs'], ['vgcreate'], ['vgextend'], ['vgreduce'], ['vgremove'], ['vgs'],
    ['vgdisplay'], ['pvdisplay'], ['lvdisplay'], ['lvcreate'], ['lvextend'], ['lvreduce'], ['lvrename'], ['lvremove'], ['lvs'], ['mkfs'], ['fsinfo'],
    ['slotmap'], ['hb'], ['logdump'], ['ls'], ['cat'], ['recover'], ['cluster', 'init'], ['cluster', 'status'], ['dlm', 'ls'], ['fault', 'set'],
    ['fault', 'clear'], ['fault', 'ls'], ['lvmdevices'], ['nosuchcommand'],
  ];
  for (const c of every) {
    await judge(t, 'unknown option', { argv: [...c, '--no-such-option-xyz'], images: [], expect: 'fail' });
    if (!['pvs', 'vgs', 'lvs', 'vgdisplay', 'pvdisplay', 'lvdisplay', 'lvmdevices'].includes(c[c.length - 1]!)) await judge(t, 'missing argument', { argv: c, images: [], expect: 'fail' });
  }
  // The small misreports of issue 15 item 9.
  await judge(t, 'misreport', { argv: ['lvrename', 'vg0/lv0', 'vgB/x', '--devices', devs], images: [f.pvA, f.pvB], expect: 'fail' });
  await judge(t, 'misreport', { argv: ['vgcreate', 'vgz', f.blank, '-s', '0'], images: [f.blank], expect: 'fail' });
  await judge(t, 'misreport', { argv: ['logdump', f.vol, ''], images: [f.vol], expect: 'fail' });
  // The same image twice, and through two paths.
  const link = path.join(f.dir, 'pvS-link.img');
  fs.symlinkSync(f.pvS, link);
  await judge(t, 'same disk twice', { argv: ['vgcreate', 'vgd', f.blank, f.blank], images: [f.blank], expect: 'fail' });
  await judge(t, 'same disk twice', { argv: ['vgs', '--devices', `${f.pvS},${link}`], images: [f.pvS], expect: 'fail' });
  await judge(t, 'same disk twice', { argv: ['pvcreate', f.blank, path.join(f.dir, '.', 'blank.img')], images: [f.blank], expect: 'any' });
  // sanbox's own formats are signatures: destructive commands refuse them without --force.
  for (const img of [f.cluster, f.vol, f.realVol, f.pvS, f.realPv]) {
    await judge(t, 'signature', { argv: ['pvcreate', img], images: [img], expect: 'fail' });
    await judge(t, 'signature', { argv: ['mkfs', img, '--slots', '2'], images: [img], expect: 'fail' });
  }
  const wrongKind = await runCliInProcess(['cluster', 'status', f.vol]);
  t.regex(wrongKind.stderr, /vol\.img is an ocfs2 volume \(signature at offset \d+\), not a sanbox cluster image/);
  const wrongKind2 = await runCliInProcess(['fsinfo', f.cluster]);
  t.regex(wrongKind2.stderr, /cluster\.img is a sanbox cluster image \(signature at offset 0\), not an ocfs2 volume/);
  t.log(`${tally.cases} command lines so far; ${tally.failed} refused; by kind: ${[...tally.byKind].map(([k, v]) => `${k} ${v}`).join(', ')}`);
  t.true(tally.cases >= 400, `${tally.cases} cases`);
  noProblems(t);
});

/** Random damage to a copy of `base`: flipped bytes or a zeroed sector in [from, to), or a truncation. */
function mutant(rand: FuzzRandom, base: string, out: string, from: number, to: number): string {
  copyImage(base, out);
  const size = fs.statSync(out).size;
  const kind = rand.int(10);
  if (kind === 0) {
    fs.truncateSync(out, [0, 512, 4096, Math.floor(size / 4), Math.floor(size / 2), size - 512][rand.int(6)]!);
    return 'truncated';
  }
  const fd = fs.openSync(out, 'r+');
  try {
    if (kind === 1) {
      fs.writeSync(fd, Buffer.alloc(512), 0, 512, Math.floor(rand.int(from, to) / 512) * 512);
      return 'zeroed sector';
    }
    const flips = 1 + rand.int(4);
    for (let i = 0; i < flips; i++) {
      const at = rand.int(from, to);
      const b = Buffer.alloc(1);
      fs.readSync(fd, b, 0, 1, at);
      b[0] = b[0]! ^ (1 << rand.int(8));
      fs.writeSync(fd, b, 0, 1, at);
    }
    return 'bit flips';
  } finally {
    fs.closeSync(fd);
  }
}

test.serial('corrupted images made by sanbox and by the real tools: no crash, one line, no write, no exit 0 where lvm2 or fsck.ocfs2 refuse', async (t) => {
  t.timeout(300_000);
  const f = await fixtures(t);
  const rand = fuzzRandom(t);
  const start = tally.cases;
  let lvmRejected = 0;
  let fsckRejected = 0;
  // LVM: single-PV VGs (sanbox's vgS, lvm2's vgR), damaged in the label and metadata area.
  for (const [base, vg] of [[f.pvS, 'vgS'], [f.realPv, 'vgR']] as const) {
    for (let i = 0; i < LVM_MUTANTS_PER_BASE; i++) {
      const m = path.join(f.dir, `lvm-mutant-${vg}-${i}.img`);
      mutant(rand, base, m, 0, 12 * 1024);
      // lvm2's verdict first, through a loop device.
      let lvmAccepts = false;
      if (fs.statSync(m).size >= 1 * MiB) {
        const loop = await attachLoop(t, m, ['-r']);
        const listed = await lvm('vgs', [loop], ['--noheadings', '-o', 'vg_name']);
        const ck = await lvm('vgck', [loop], [vg]);
        await detachLoop(loop);
        lvmAccepts = listed.stdout.includes(vg) && ck.code === 0;
      }
      if (!lvmAccepts) lvmRejected++;
      for (const argv of [['vgs', vg, '--devices', m], ['lvs', vg, '--devices', m], ['pvs', m], ['vgdisplay', vg, '--devices', m], ['lvcreate', '-n', 'x', '-l', '1', vg, '--devices', m]]) {
        const r = await judge(t, `lvm mutant (${vg})`, { argv, images: [m], expect: 'any' });
        if (argv[0] !== 'pvs') check(r.code !== 0 || lvmAccepts, `sanbox ${argv.join(' ')} exits 0 on metadata lvm2 rejects`);
      }
    }
  }
  // ocfs2: sanbox's and mkfs.ocfs2's volumes, damaged in the superblock and system area, or cut short.
  for (const base of [f.vol, f.realVol]) {
    for (let i = 0; i < OCFS2_MUTANTS_PER_BASE; i++) {
      const m = path.join(f.dir, `ocfs2-mutant-${path.basename(base)}-${i}.img`);
      mutant(rand, base, m, 0, 64 * 1024);
      const fsck = await runOcfs2Tool('fsck.ocfs2', ['-fn', m]);
      // Refused (exit 8) before its pass 1: damage in what every reader reads (superblock, system
      // directory and inodes, allocator chains, journals). Damage fsck finds only in pass 1 or
      // later lies in blocks the superblock readers do not read; it is not judged here.
      const fsckRefuses = fsck.code >= 8 && !/^Pass 1:/m.test(fsck.stdout + fsck.stderr);
      if (fsckRefuses) fsckRejected++;
      for (const argv of [['fsinfo', m], ['slotmap', m], ['hb', m], ['logdump', m, '0'], ['ls', m, '/']]) {
        const r = await judge(t, 'ocfs2 mutant', { argv, images: [m], expect: 'any' });
        if (argv[0] === 'fsinfo') check(r.code !== 0 || !fsckRefuses, `sanbox fsinfo exits 0 on a volume fsck.ocfs2 refuses (exit ${fsck.code}): ${(fsck.stdout + fsck.stderr).split('\n').filter((l) => /error|bad|invalid|fail|corrupt/i.test(l)).join(' | ').slice(0, 400)}`);
      }
    }
  }
  // The cluster image: header, region headers and config.
  for (let i = 0; i < 25; i++) {
    const m = path.join(f.dir, `cluster-mutant-${i}.img`);
    mutant(rand, f.cluster, m, 0, 16 * 1024);
    for (const argv of [['cluster', 'status', m], ['cluster', 'status', m, '--json'], ['dlm', 'ls', m]]) await judge(t, 'cluster mutant', { argv, images: [m], expect: 'any' });
  }
  noProblems(t);
  t.log(`${tally.cases - start} commands on corrupted images; lvm2 rejected ${lvmRejected} of ${2 * LVM_MUTANTS_PER_BASE} LVM mutants, fsck.ocfs2 refused (exit 8, before pass 1) ${fsckRejected} of ${2 * OCFS2_MUTANTS_PER_BASE} ocfs2 mutants`);
});

test.serial('devices another process holds are never written, by any path (image or loop device)', async (t) => {
  t.timeout(120_000);
  const f = await fixtures(t);
  const held = path.join(f.dir, 'held.img');
  copyImage(f.vol, held);
  const openModule = path.join(REPO_ROOT, 'dist/src/disk/open.js');
  const holder = spawnChild(t, process.execPath, [
    '--input-type=module',
    '-e',
    `const m = await import(${JSON.stringify(openModule)}); await m.openDevice(process.argv[1], { guard: 'shared' }); process.stdout.write('held\\n'); setInterval(() => {}, 1000);`,
    held,
  ]);
  let out = '';
  holder.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await waitFor(() => out.includes('held'), 20_000, 'the holder to open the image');
  const loop = await attachLoop(t, held);
  const destructive = (img: string): string[][] => [
    ['pvcreate', img],
    ['pvcreate', '-f', img],
    ['mkfs', img, '--slots', '2', '--force'],
    ['recover', img],
    ['pvremove', img],
  ];
  for (const argv of [...destructive(held), ...destructive(loop), ['disk', 'create', held, '--size', '16M', '--force'], ['cluster', 'init', held, '--nodes', '2', '--name', 'x', '--force']]) {
    const r = await judge(t, 'held device', { argv, images: [held], expect: 'fail' });
    t.regex(r.stderr, /busy|already holds|not an LVM physical volume|in use/, argv.join(' '));
  }
  noProblems(t);
});

test.serial('long-running commands (lock, node, ctl, demo) refuse bad input in one line, as processes', async (t) => {
  t.timeout(180_000);
  const f = await fixtures(t);
  const spawned: { argv: string[]; expectCode?: number }[] = [
    { argv: ['lock', '--cluster', f.cluster, '--node', '0', 'res', '--', '/nonexistent/command'], expectCode: 127 },
    { argv: ['lock', '--cluster', f.cluster, '--node', '0', 'res', '--', f.text], expectCode: 126 },
    { argv: ['lock', '--cluster', f.missing, '--node', '0', 'res', '--', 'true'] },
    { argv: ['lock', '--cluster', f.vol, '--node', '0', 'res', '--', 'true'] },
    { argv: ['lock', '--cluster', f.cluster, '--node', '99', 'res', '--', 'true'] },
    { argv: ['lock', '--cluster', f.cluster, '--node', '0', '--mode', 'XX', 'res', '--', 'true'] },
    { argv: ['node', '--cluster', f.missing, '--node', '0'] },
    { argv: ['node', '--cluster', f.vol, '--node', '0'] },
    { argv: ['node', '--cluster', f.cluster, '--node', '-1'] },
    { argv: ['node', '--cluster', f.cluster, '--node', '0', '--volume', f.cluster] },
    { argv: ['ctl', f.cluster, '0', 'status'] },
    { argv: ['ctl', f.missing, '0', 'status'] },
    { argv: ['demo', '--nodes', '0', '--dir', path.join(f.dir, 'demo')] },
  ];
  for (const s of spawned) {
    const r = await runSanbox(t, s.argv, { timeoutMs: 30_000 });
    const res = await judge(t, 'process', { argv: s.argv, images: [f.cluster, f.vol], expect: 'fail' }, { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr });
    if (s.expectCode !== undefined) t.is(res.code, s.expectCode, `${s.argv.join(' ')}: ${res.stderr}`);
  }
  noProblems(t);
});

function noProblems(t: ExecutionContext): void {
  const found = problems.splice(0);
  t.deepEqual(found.slice(0, 60), [], `${found.length} problems`);
}

test.after.always('counts', () => {
  // Printed for the closing note: how many cases the suite threw.
  process.stdout.write(`cli-adversarial: ${tally.cases} cases, ${tally.failed} refused; ${[...tally.byKind].map(([k, v]) => `${k}: ${v}`).join('; ')}\n`);
});
