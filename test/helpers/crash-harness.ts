// The crash tests' driver (test/journal-crash.test.ts and `npm run soak:journal`; docs/journal.md
// "Crash tests"). For a script of file operations it
//   1. runs the script once without a crash, in this process, through a recording device: the
//      I/O sequence (every write and flush, and the operation it belongs to) and the tree after
//      each acknowledged operation; the blocks some operation changes are those that differ
//      between the images at two successive acknowledgements;
//   2. for a crash point, copies the template volume, runs the script in a separate process
//      (crash-child.ts) that SIGKILLs itself at that I/O, recovers the volume with `sanbox
//      recover` (another process), and checks: the tree (and the allocators' bitmaps and counts)
//      are the reference run's after the acknowledged operations or after one more (the one in
//      flight: whole or absent, never half); no block
//      outside the allowed set differs from the template; the journal is clean and the slot
//      free; the REAL fsck.ocfs2 -fn is clean;
//   3. for a crash point inside a recovery, kills `sanbox recover` itself there, runs it again,
//      and checks the same, plus: the result equals an uninterrupted recovery's byte for byte.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BlockDevice } from '../../src/disk/device.js';
import { CRASH_AT_ENV, formatCrashPoint, type CrashPoint } from '../../src/disk/crash-point.js';
import { openDevice } from '../../src/disk/open.js';
import { openJournal } from '../../src/fs/journal-reader.js';
import { Ocfs2Volume } from '../../src/fs/ocfs2-volume.js';
import { readSlotMap } from '../../src/fs/slot-map-reader.js';
import { slotFileName } from '../../src/format/ocfs2/constants.js';
import { applyOp, mountAndRun, readTree, stateKey, treeKey, type ScriptOp, type Tree } from './crash-script.js';
import { fsckOk, realMkfs } from './ocfs2-oracle.js';
import { SANBOX_BIN } from './tmp.js';
import { copyImage } from './image-copy.js';
import { runCliInProcess } from './cli-inprocess.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'crash-child.js');
/** The crash volume: small, so a copy per point is cheap; 2 slots, 4K blocks and clusters, the smallest journal mkfs.ocfs2 takes (4 MiB). */
const VOLUME_BYTES = 24 * 1024 * 1024;
export const CRASH_BLOCK_BYTES = 4096;
export const CRASH_SLOT = 0;
export const CRASH_NODE = 1;
/** Bound on one child or `sanbox recover` run (each takes well under a second on an idle machine). */
const PROCESS_BOUND_MS = 60_000;

export interface Template {
  dir: string;
  img: string;
  /** The tree mkfs.ocfs2 leaves (lost+found). */
  tree0: Tree;
}

/** A template volume by the REAL mkfs.ocfs2 (features sanbox writes), copied for every point. */
export async function makeTemplate(dir: string): Promise<Template> {
  const img = path.join(dir, 'template.img');
  await realMkfs(img, VOLUME_BYTES, ['-q', '-F', '-N', '2', '-b', '4096', '-C', '4096', '-J', 'size=4M', '-L', 'crash', '--cluster-stack=o2cb', '--cluster-name=crash',
    '--fs-feature-level=max-compat', '--fs-features=sparse,inline-data,extended-slotmap,unwritten']);
  return { dir, img, tree0: await withDevice(img, readTree, true) };
}

export async function withDevice<T>(img: string, fn: (dev: BlockDevice) => Promise<T>, readOnly = false): Promise<T> {
  const dev = await openDevice(img, { readOnly, guard: 'none' });
  try {
    return await fn(dev);
  } finally {
    await dev.close();
  }
}

export interface IoRecord {
  kind: 'write' | 'flush';
  /** The operation it belongs to: -1 the mount, ops.length the umount. */
  op: number;
}

export interface Reference {
  ops: ScriptOp[];
  scriptFile: string;
  /** states[i]: the tree after the first i operations were acknowledged (the model). */
  states: Tree[];
  /** keys[i]: the reference run's tree and allocators (stateKey) at acknowledgement i (0: mounted). */
  keys: string[];
  ios: IoRecord[];
  /** Blocks some operation (or the mount, umount, recovery) may change. */
  allowed: Set<number>;
}

/** A device that records every write and flush (and counts them against the current operation). */
function recording(dev: BlockDevice, ios: IoRecord[], op: () => number): BlockDevice {
  return {
    name: dev.name, sizeBytes: dev.sizeBytes, sectorSizeBytes: dev.sectorSizeBytes, readOnly: dev.readOnly,
    read: (b, o) => dev.read(b, o),
    write: (b, o) => {
      ios.push({ kind: 'write', op: op() });
      return dev.write(b, o);
    },
    flush: () => {
      ios.push({ kind: 'flush', op: op() });
      return dev.flush();
    },
    discard: (o, l) => dev.discard(o, l),
    close: () => dev.close(),
  };
}

function diffBlocks(a: Buffer, b: Buffer): number[] {
  const out: number[] = [];
  for (let off = 0; off < a.length; off += CRASH_BLOCK_BYTES) {
    if (!a.subarray(off, off + CRASH_BLOCK_BYTES).equals(b.subarray(off, off + CRASH_BLOCK_BYTES))) out.push(off / CRASH_BLOCK_BYTES);
  }
  return out;
}

/** Every block of a system file of the volume (its inode and its extents). */
async function systemFileBlocks(vol: Ocfs2Volume, name: string): Promise<number[]> {
  const ino = await vol.systemInode(name);
  const out = [ino.blkno];
  const bpc = vol.geometry.blocksPerCluster;
  for (const e of await vol.extents(ino)) for (let b = 0; b < e.clusters * bpc; b++) out.push(e.blkno + b);
  return out;
}

/** Runs the script without a crash (same library path as the child): the I/O sequence, the trees, the allowed blocks. */
export async function reference(tpl: Template, ops: ScriptOp[], name = 'reference'): Promise<Reference & { img: string }> {
  const img = path.join(tpl.dir, `${name}.img`);
  const scriptFile = path.join(tpl.dir, `${name}.json`);
  fs.writeFileSync(scriptFile, JSON.stringify(ops));
  copyImage(tpl.img, img);
  const ios: IoRecord[] = [];
  const states: Tree[] = [tpl.tree0];
  for (const op of ops) states.push(applyOp(states.at(-1)!, op));
  const allowed = new Set<number>();
  let prev = fs.readFileSync(img);
  const snapshot = (): void => {
    const now = fs.readFileSync(img);
    for (const b of diffBlocks(prev, now)) allowed.add(b);
    prev = now;
  };
  let current = -1;
  const keys: string[] = [];
  await withDevice(img, async (dev) => {
    const at = async (i: number): Promise<void> => {
      snapshot();
      current = i;
      keys.push(await stateKey(dev));
    };
    await mountAndRun(recording(dev, ios, () => current), CRASH_SLOT, CRASH_NODE, ops, (i) => at(i + 1), () => at(0));
    // The blocks a recovery may write beyond the operations': the slot's journal (log and
    // superblock), its inode, the slot map, the slot's local alloc and truncate log.
    const vol = await Ocfs2Volume.open(dev);
    // (Local alloc and truncate log keep their bitmap and records in the inode block itself.)
    for (const b of [...await systemFileBlocks(vol, slotFileName('journal', CRASH_SLOT)), ...await systemFileBlocks(vol, 'slot_map')]) allowed.add(b);
    for (const f of ['local_alloc', 'truncate_log'] as const) allowed.add((await vol.systemInode(slotFileName(f, CRASH_SLOT))).blkno);
  });
  snapshot();
  // The reference run's trees are the model's (keys[i] starts with treeKey of states[i]).
  const wrong = keys.findIndex((k, i) => !k.startsWith(`${treeKey(states[i]!)} |`));
  if (wrong >= 0 || keys.length !== states.length) throw new Error(`the reference run's state ${wrong} is not the model's: ${keys[wrong]} vs ${treeKey(states[wrong] ?? new Map())}`);
  return { ops, scriptFile, states, keys, ios, allowed, img };
}

/** Children of the harness still running: killed by killAll (a test's teardown, the soak's exit). */
const live = new Set<ChildProcess>();

export function killAll(): void {
  for (const c of live) c.kill('SIGKILL');
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `node ARGS` bounded; resolves once it exited and its output is drained. */
function run(args: string[], env: NodeJS.ProcessEnv): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SANBOX_DEVICESFILE: '', ...env } });
    live.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), PROCESS_BOUND_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      live.delete(child);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * `sanbox recover IMG --slot 0 --observe-ms 0` (offline recovery of the dead writer's slot). With a
 * crash point it is a process of its own, killed there; without one it runs to its end in this
 * process (tools/cli.ts main, the same command): a node process start costs ≈ 0.3 s of CPU, and
 * the enumerations run hundreds of these.
 */
async function recover(img: string, crashAt?: CrashPoint): Promise<Exit> {
  const args = ['recover', img, '--slot', String(CRASH_SLOT), '--observe-ms', '0'];
  if (crashAt !== undefined) return run([SANBOX_BIN, ...args], { [CRASH_AT_ENV]: formatCrashPoint(crashAt) });
  const r = await runCliInProcess(args, { SANBOX_DEVICESFILE: '', [CRASH_AT_ENV]: undefined });
  return { code: r.code, signal: null, stdout: r.stdout, stderr: r.stderr };
}

export interface PointResult {
  what: string;
  /** Operations acknowledged before the kill. */
  acks: number;
  /** The process died at the crash point (false: it finished first). */
  killed: boolean;
  violations: string[];
}

/** The checks after a recovery: tree, untouched blocks, journal clean and slot free, fsck. */
export async function check(ref: Reference, img: string, acks: number, finished: boolean, templateBytes: Buffer): Promise<string[]> {
  const v: string[] = [];
  // Tree and allocators both as after `acks` operations or after one more: never a mix.
  const state = await withDevice(img, stateKey, true);
  const ok = finished ? [ref.keys.length - 1] : [acks, acks + 1].filter((i) => i < ref.keys.length);
  if (!ok.some((i) => ref.keys[i] === state)) {
    v.push(`tree and allocators after ${acks} acknowledged operation(s)${finished ? ' (the writer finished)' : ''} are neither state ${ok.join(' nor state ')}: ${state}`);
  }
  const bad = diffBlocks(templateBytes, fs.readFileSync(img)).filter((b) => !ref.allowed.has(b));
  if (bad.length > 0) v.push(`blocks outside the allowed set changed: ${bad.slice(0, 8).join(', ')}${bad.length > 8 ? ` (+${bad.length - 8})` : ''}`);
  await withDevice(img, async (dev) => {
    const vol = await Ocfs2Volume.open(dev);
    if ((await openJournal(vol, CRASH_SLOT)).dirty) v.push(`journal:000${CRASH_SLOT} still DIRTY after recovery`);
    const holder = (await readSlotMap(vol)).slots[CRASH_SLOT]?.nodeNum;
    if (holder !== undefined) v.push(`slot ${CRASH_SLOT} still names node ${holder} after recovery`);
  }, true);
  const fsck = await fsckOk(img);
  if (!fsck.ok) v.push(`fsck.ocfs2 -fn: ${fsck.out.trim().split('\n').slice(-4).join(' | ')}`);
  return v;
}

/** Runs the writer up to `point`, returns the crashed image's path (not yet recovered) and what the writer said. */
async function crashWriter(tpl: Template, ref: Reference, point: CrashPoint, img: string): Promise<{ acks: number; killed: boolean; violations: string[] }> {
  copyImage(tpl.img, img);
  const r = await run([CHILD, img, String(CRASH_SLOT), String(CRASH_NODE), ref.scriptFile], { [CRASH_AT_ENV]: formatCrashPoint(point) });
  const violations: string[] = [];
  const acked = [...r.stdout.matchAll(/^ack (\d+)$/gm)].map((m) => Number(m[1]));
  if (!acked.every((n, i) => n === i)) violations.push(`acknowledgements out of order: ${acked.join(',')}`);
  const killed = r.signal === 'SIGKILL';
  if (!killed && r.code !== 0) violations.push(`the writer failed (exit ${r.code}, signal ${r.signal}): ${r.stderr.trim()}`);
  return { acks: acked.length, killed, violations };
}

/** One crash point of the writer, then `sanbox recover`, then the checks. */
export async function runPoint(tpl: Template, ref: Reference, point: CrashPoint, templateBytes: Buffer): Promise<PointResult> {
  const img = path.join(tpl.dir, `w-${formatCrashPoint(point).replace(/[^a-z0-9-]/g, '_')}.img`);
  try {
    const w = await crashWriter(tpl, ref, point, img);
    const what = `writer ${formatCrashPoint(point)}`;
    if (w.violations.length > 0) return { what, acks: w.acks, killed: w.killed, violations: w.violations };
    const rec = await recover(img);
    if (rec.code !== 0) return { what, acks: w.acks, killed: w.killed, violations: [`sanbox recover failed (exit ${rec.code}): ${rec.stderr.trim()}`] };
    return { what, acks: w.acks, killed: w.killed, violations: await check(ref, img, w.acks, !w.killed, templateBytes) };
  } finally {
    fs.rmSync(img, { force: true });
  }
}

/**
 * Crash points inside a recovery: the writer killed at `writerPoint` (a point that leaves a log to
 * replay), then `sanbox recover` killed before each of its own I/Os in turn (and after, with `afterToo`), then
 * run again to the end. Every result must pass the checks and equal an uninterrupted recovery.
 */
export async function runRecoveryPoints(tpl: Template, ref: Reference, writerPoint: CrashPoint, templateBytes: Buffer, onResult: (r: PointResult) => void, afterToo = false): Promise<void> {
  const crashed = path.join(tpl.dir, `r-${formatCrashPoint(writerPoint).replace(/[^a-z0-9-]/g, '_')}.img`);
  const whole = `${crashed}.whole`;
  const work = `${crashed}.work`;
  try {
    const w = await crashWriter(tpl, ref, writerPoint, crashed);
    if (!w.killed || w.violations.length > 0) throw new Error(`writer point ${formatCrashPoint(writerPoint)} did not crash the writer: ${w.violations.join('; ')}`);
    copyImage(crashed, whole);
    const full = await recover(whole);
    if (full.code !== 0) throw new Error(`uninterrupted sanbox recover failed: ${full.stderr}`);
    const wholeBytes = fs.readFileSync(whole);
    for (let k = 1; ; k++) {
      let finished = false;
      // After I/O k leaves the disk as before I/O k+1; `afterToo` kills in both process states.
      for (const side of afterToo ? (['before', 'after'] as const) : (['before'] as const)) {
        const point: CrashPoint = { side, op: 'io', index: k };
        copyImage(crashed, work);
        const first = await recover(work, point);
        const what = `writer ${formatCrashPoint(writerPoint)}, recoverer ${formatCrashPoint(point)}`;
        const killed = first.signal === 'SIGKILL';
        if (!killed) {
          finished = true;
          if (first.code !== 0) onResult({ what, acks: w.acks, killed, violations: [`sanbox recover failed (exit ${first.code}): ${first.stderr.trim()}`] });
          break;
        }
        const second = await recover(work);
        const violations = second.code === 0 ? await check(ref, work, w.acks, false, templateBytes) : [`second sanbox recover failed (exit ${second.code}): ${second.stderr.trim()}`];
        if (!fs.readFileSync(work).equals(wholeBytes)) violations.push('the recovery interrupted and run again differs from an uninterrupted one');
        onResult({ what, acks: w.acks, killed, violations });
      }
      if (finished) break;
    }
  } finally {
    for (const f of [crashed, whole, work]) fs.rmSync(f, { force: true });
  }
}

/** Runs `fn` over `items` with at most `limit` at a time. */
export async function forEachLimit<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/**
 * The writer's crash points of a reference run: before every I/O (every distinct on-disk state
 * the writer can leave) and one past the end (the writer finishes); after the last flush of each
 * operation (durable, its acknowledgement not yet printed); with `afterEveryFlush`, after every
 * flush (the soak).
 */
export function writerPoints(ref: Reference, afterEveryFlush = false): CrashPoint[] {
  const out: CrashPoint[] = [];
  ref.ios.forEach((io, i) => {
    out.push({ side: 'before', op: 'io', index: i + 1 });
    const lastOfOp = ref.ios.slice(i + 1).every((x) => x.op !== io.op || x.kind !== 'flush');
    if (io.kind === 'flush' && (afterEveryFlush || lastOfOp)) out.push({ side: 'after', op: 'io', index: i + 1 });
  });
  out.push({ side: 'before', op: 'io', index: ref.ios.length + 1 });
  return out;
}
