// A lab for the lock-out and pvmove tests: a cluster image, PV images with a VG, lv-writer
// processes (test/helpers/lv-writer.ts) and the checks on what they wrote.

import type { ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openLv, withSession } from '../../src/volume/manager.js';
import { clusterInit } from './heartbeat-nodes.js';
import { decodeLvBlock, hasWriterMagic, LV_BLOCK_BYTES } from './lv-blocks.js';
import { attachLoop, lvm, sanboxCli, warnings } from './lvm-real.js';
import { exited, spawnChild, tempDir } from './tmp.js';

export const MiB = 1024 * 1024;
const WRITER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'lv-writer.js');
/** Bound on a writer becoming ready (joining the cluster, taking the locks) and on it leaving. */
export const WRITER_READY_MS = 20_000;
const WRITER_EXIT_MS = 20_000;
/** Between a writer's rounds of 4 writes: ~100 rounds/s, enough to be writing whenever a change comes, without taking a loaded machine's CPU. */
const WRITER_PAUSE_MS = 10;

export interface WriterEvent {
  ev: 'listening' | 'ready' | 'ok' | 'err' | 'swept' | 'done';
  seq?: number;
  off?: number;
  gen?: number;
  size?: number;
  t?: number;
  /** Wall-clock ms (Date.now()) of an ok/err: comparable with the test's own clock. */
  at?: number;
  code?: string;
  msg?: string;
  pauses?: { pausedMs: number; fromGeneration: number; toGeneration: number }[];
}

/** A running lv-writer and the events it printed so far. */
export class Writer {
  events: WriterEvent[] = [];
  stderr = '';
  private buf = '';
  constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let nl;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        this.events.push(JSON.parse(this.buf.slice(0, nl)) as WriterEvent);
        this.buf = this.buf.slice(nl + 1);
      }
    });
    child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
  }
  count(ev: WriterEvent['ev']): number {
    return this.events.filter((e) => e.ev === ev).length;
  }
  /** SIGTERM, then its exit status must be 0 (drained, closed, left). */
  async stop(t: ExecutionContext): Promise<void> {
    this.child.kill('SIGTERM');
    const r = await exited(this.child, WRITER_EXIT_MS);
    t.is(r.code, 0, `writer exit: ${this.stderr.slice(-2000)}`);
  }
  get pauses(): NonNullable<WriterEvent['pauses']> {
    return this.events.find((e) => e.ev === 'done')?.pauses ?? [];
  }
}

/**
 * The local preset with 5 s to death instead of 2 s: a node process that copies and commits (each
 * an fsync in its event loop) on a machine the whole suite loads can miss 1.7 s of heartbeats and
 * fence itself; 4.7 s it does not miss. A killed node is still declared dead within 5 s.
 */
const LAB_TIMING = ['--dead-threshold', '50'];

export interface Lab {
  dir: string;
  cluster: string;
  pvs: string[];
  vg: string;
}

/**
 * A cluster image of `nodes` nodes and `pvCount` PVs of `pvMiB` each in a VG with 1 MiB extents; `lvs` are lvcreate argument lists.
 * `deadThreshold`: heartbeat intervals (100 ms) to death instead of LAB_TIMING's 50, for a test that acts between a kill and the fence.
 */
export async function makeLab(t: ExecutionContext, pvCount: number, pvMiB: number, lvs: string[][], nodes = 4, deadThreshold?: number): Promise<Lab> {
  const dir = tempDir(t);
  const pvs = Array.from({ length: pvCount }, (_, i) => path.join(dir, `pv${i}.img`));
  // Unique per test on this host (the real tools see every loop device), short enough for lock names.
  const l: Lab = { dir, cluster: path.join(dir, 'c.img'), pvs, vg: `lk${process.pid % 100000}${Math.floor(Math.random() * 1000)}` };
  await clusterInit(t, [l.cluster, '--nodes', String(nodes), '--name', 'lockout', ...(deadThreshold === undefined ? LAB_TIMING : ['--dead-threshold', String(deadThreshold)])]);
  const steps = [...pvs.map((p) => ['disk', 'create', p, '--size', `${pvMiB}M`]), ['pvcreate', ...pvs], ['vgcreate', '-s', '1m', l.vg, ...pvs], ...lvs.map((a) => ['lvcreate', ...a, l.vg, '--devices', pvs.join(',')])];
  for (const args of steps) {
    const r = await sanboxCli(t, args);
    t.is(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  }
  return l;
}

/**
 * lv-writer as node `node` on `lv`, writing [fromBytes, toBytes): under its own LV lock (PR), or
 * (`activated`) through the device of an activation made through the writer node's control channel.
 */
export function startWriter(t: ExecutionContext, l: Lab, node: number, lv: string, tag: string, fromBytes: number, toBytes: number, order: 'random' | 'sweep' = 'random', mode: 'pr' | 'activated' = 'pr'): Writer {
  const child = spawnChild(t, process.execPath, [WRITER, l.cluster, String(node), `${l.vg}/${lv}`, l.pvs.join(','), tag, String(fromBytes), String(toBytes), mode, '4', String(WRITER_PAUSE_MS), order], {
    env: { ...process.env, SANBOX_DEVICESFILE: '' },
  });
  return new Writer(child);
}

export async function vgSeqno(l: Lab): Promise<number> {
  return withSession(l.pvs, { readOnly: true, guard: 'none' }, async (s) => s.vg(l.vg).vg.seqno);
}

/** LV `lv`'s bytes (read through sanbox's LV mapping over the PV files, no locks). */
export async function readLv(l: Lab, lv: string): Promise<Buffer> {
  const dev = await openLv(l.pvs, l.vg, lv, { readOnly: true, guard: 'none' });
  try {
    const buf = Buffer.alloc(dev.sizeBytes);
    await dev.read(buf, 0);
    return buf;
  } finally {
    await dev.close();
  }
}

export async function lvSizeBytes(l: Lab, lv: string): Promise<number> {
  const dev = await openLv(l.pvs, l.vg, lv, { readOnly: true, guard: 'none' });
  const n = dev.sizeBytes;
  await dev.close();
  return n;
}

/**
 * The real pvck (every PV) and vgck are clean; returns the loop devices (detached at teardown).
 * `vgck: false` for a shared container, which lvm2's vgck refuses without lvmlockd.
 */
export async function realToolsClean(t: ExecutionContext, l: Lab, loops?: string[], opts: { vgck?: boolean } = {}): Promise<string[]> {
  const devs = loops ?? (await Promise.all(l.pvs.map((p) => attachLoop(t, p))));
  for (const loop of devs) {
    const p = await lvm('pvck', devs, [loop]);
    t.is(p.code, 0, `pvck ${loop}: ${p.stderr}`);
    t.deepEqual(warnings(p.stderr), [], `pvck ${loop} warnings`);
  }
  if (opts.vgck === false) return devs;
  const v = await lvm('vgck', devs, [l.vg]);
  t.is(v.code, 0, `vgck: ${v.stderr}`);
  t.deepEqual(warnings(v.stderr), [], 'vgck warnings');
  return devs;
}

/** No block (and no 512-byte-aligned piece of one) of writer `tag` anywhere in LV `lv`. */
export async function noBlockOf(t: ExecutionContext, l: Lab, lv: string, tag: string): Promise<void> {
  const bytes = await readLv(l, lv);
  const found: number[] = [];
  for (let off = 0; off < bytes.length; off += LV_BLOCK_BYTES) if (hasWriterMagic(bytes.subarray(off, off + LV_BLOCK_BYTES), tag)) found.push(off);
  t.deepEqual(found, [], `blocks of ${tag} in ${lv}`);
}

/** Every write `w` acknowledged inside [0, keptBytes) of `lv` is on disk (the last one of each offset). */
export async function ackedWritesKept(t: ExecutionContext, l: Lab, lv: string, w: Writer, tag: string, keptBytes: number): Promise<void> {
  const last = new Map<number, number>();
  for (const e of w.events) if (e.ev === 'ok' && e.off! < keptBytes) last.set(e.off!, Math.max(last.get(e.off!) ?? 0, e.seq!));
  const bytes = await readLv(l, lv);
  const lost: string[] = [];
  for (const [off, seq] of last) {
    const b = decodeLvBlock(bytes.subarray(off, off + LV_BLOCK_BYTES));
    if (b === undefined || b.tag !== tag || b.seq !== seq || b.offsetBytes !== off) lost.push(`offset ${off}: acknowledged seq ${seq}, on disk ${b ? `${b.tag} seq ${b.seq}` : 'no block'}`);
  }
  t.true(last.size > 0, `${tag} acknowledged writes inside the kept range`);
  t.deepEqual(lost, [], 'acknowledged writes lost');
}
