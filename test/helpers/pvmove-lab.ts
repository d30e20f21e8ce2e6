// pvmove runs for the multi-process pvmove tests (test/lvm-pvmove*.test.ts) over an lv-lab: the
// mover as a separate `sanbox pvmove` process (to its end, or SIGKILLed after a chunk), where each
// stripe row of an LV lives, an LV's blocks written and checked without locks, and the real lvs
// reading the segments as sanbox does.

import type { ExecutionContext } from 'ava';
import path from 'node:path';
import { openLv, withSession } from '../../src/volume/manager.js';
import { decodeLvBlock, encodeLvBlock, LV_BLOCK_BYTES } from './lv-blocks.js';
import type { Lab, Writer } from './lv-lab.js';
import { runCliInProcess } from './cli-inprocess.js';
import { lvmReport } from './lvm-real.js';
import { exited, runSanbox, SANBOX_BIN, spawnChild, waitFor } from './tmp.js';

/** Bound on a mover run, and on the writer getting going again after a mover's death (death ~2 s, then the fence). */
export const MOVE_MS = 120_000;
export const RESUME_MS = 60_000;

/**
 * Where each stripe row of `lv` lives — per row, its areas' PV image base names joined by '+' (a
 * linear LV's row is one LE on one PV) — and the VG's tags (a recorded move is one). Reads the
 * images `pvs` without locks.
 */
export async function placement(pvs: string[], vg: string, lv: string): Promise<{ les: string[]; segments: number; tags: string[] }> {
  return withSession(pvs, { readOnly: true, guard: 'none' }, async (s) => {
    const h = s.vg(vg);
    const les: string[] = [];
    const segments = h.vg.lvs.find((x) => x.name === lv)!.segments;
    for (const seg of segments) {
      const row = seg.stripes.map((st) => path.basename(h.pvByKey.get(st.pv)!.dev.name)).join('+');
      for (let i = 0; i < seg.extentCount / seg.stripeCount; i++) les.push(row);
    }
    return { les, segments: segments.length, tags: h.vg.tags };
  });
}

export function moveRecorded(tags: string[]): boolean {
  return tags.some((x) => x.startsWith('sanbox_pvmove:'));
}

/** `sanbox …` (a pvmove) to its end, bounded by MOVE_MS: a loaded machine makes chunks slow. */
export async function mover(t: ExecutionContext, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await runSanbox(t, args, { timeoutMs: MOVE_MS });
  return { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Chunks a mover's output reports moved. */
export function moved(out: string): number {
  return (out.match(/: Moved: /g) ?? []).length;
}

/** Waits (RESUME_MS at most) for `n` more acknowledged writes of `w`. */
export async function moreWrites(w: Writer, n: number, what: string): Promise<void> {
  const at = w.count('ok');
  await waitFor(() => w.count('ok') >= at + n || w.child.exitCode !== null, RESUME_MS, `${n} more writes ${what} (${w.stderr.slice(-800)})`);
}

/** Runs `sanbox pvmove ARGS` as `node` of `l`'s cluster and SIGKILLs it `delayMs` after its `afterChunks`-th chunk; returns the chunks it reported. */
export async function killMoverAt(t: ExecutionContext, l: Lab, args: string[], node: number, afterChunks: number, delayMs: number): Promise<number> {
  const child = spawnChild(t, process.execPath, [SANBOX_BIN, 'pvmove', ...args, '--cluster', l.cluster, '--node', String(node), '--devices', l.pvs.join(',')], {
    env: { ...process.env, SANBOX_DEVICESFILE: '' },
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  await waitFor(() => moved(out) >= afterChunks || child.exitCode !== null, MOVE_MS, `chunk ${afterChunks} of the mover (${err})`);
  t.is(child.exitCode, null, `the mover was still running at chunk ${afterChunks}: ${out} ${err}`);
  if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
  child.kill('SIGKILL');
  await exited(child, 5000);
  return moved(out);
}

/** Segment fields the real `lvs --segments` and sanbox's must agree on. */
const SEGMENT_FIELDS = ['lv_name', 'segtype', 'stripes', 'stripe_size', 'seg_start_pe', 'seg_size_pe', 'seg_pe_ranges'];

/**
 * The real `lvs --segments -o …,seg_pe_ranges` of VG `vg` on `loops` (attached from `pvs`, in
 * that order) lists the same segments as `sanbox lvs --segments` — lvm2 reads the segments sanbox
 * wrote (split, merged) as sanbox does. Returns lvm2's rows.
 */
export async function realSegmentsAgree(t: ExecutionContext, pvs: string[], vg: string, loops: string[], what: string): Promise<string[][]> {
  const loopToImg = new Map(loops.map((x, i) => [x, pvs[i]!]));
  const real = (await lvmReport(t, 'lvs', loops, SEGMENT_FIELDS, ['--segments', vg])).map((r) => SEGMENT_FIELDS.map((f) => (f === 'seg_pe_ranges' ? r[f]!.replace(/\/dev\/loop\d+/g, (x) => loopToImg.get(x) ?? x) : r[f]!)));
  // In the test's process (the same tools/cli.ts main as `sanbox lvs`): this runs at every crash point of an enumeration.
  const r = await runCliInProcess(['lvs', '--segments', '--json', vg, '--devices', pvs.join(',')], { SANBOX_DEVICESFILE: '' });
  t.is(r.code, 0, `${what}: sanbox lvs: ${r.stderr}`);
  const ours = (JSON.parse(r.stdout) as { seg: Record<string, unknown>[] }).seg.map((o) => SEGMENT_FIELDS.map((f) => String(o[f])));
  const order = (a: string[], b: string[]): number => a[0]!.localeCompare(b[0]!) || Number(a[4]) - Number(b[4]);
  t.deepEqual(ours.sort(order), [...real].sort(order), `${what}: lvm2's lvs --segments reads sanbox's segments`);
  return real;
}

/** The block `fillLv` writes at `offsetBytes`. */
function filledBlock(offsetBytes: number): Buffer {
  return encodeLvBlock({ tag: 'P', nodeId: 0, seq: offsetBytes / LV_BLOCK_BYTES + 1, offsetBytes });
}

/** Writes a checksummed block naming its offset all over LV `vg`/`lv` (through sanbox's mapping, no locks). */
export async function fillLv(pvs: string[], vg: string, lv: string): Promise<void> {
  const dev = await openLv(pvs, vg, lv, { guard: 'none' });
  try {
    for (let off = 0; off < dev.sizeBytes; off += LV_BLOCK_BYTES) await dev.write(filledBlock(off), off);
    await dev.flush();
  } finally {
    await dev.close();
  }
}

/** Offsets of the blocks of `vg`/`lv` that do not read back as `fillLv` wrote them. */
export async function badBlocks(pvs: string[], vg: string, lv: string): Promise<number[]> {
  const dev = await openLv(pvs, vg, lv, { readOnly: true, guard: 'none' });
  try {
    const buf = Buffer.alloc(dev.sizeBytes);
    await dev.read(buf, 0);
    const bad: number[] = [];
    for (let off = 0; off < buf.length; off += LV_BLOCK_BYTES) {
      const b = decodeLvBlock(buf.subarray(off, off + LV_BLOCK_BYTES));
      if (b === undefined || b.tag !== 'P' || b.offsetBytes !== off || b.seq !== off / LV_BLOCK_BYTES + 1) bad.push(off);
    }
    return bad;
  } finally {
    await dev.close();
  }
}
