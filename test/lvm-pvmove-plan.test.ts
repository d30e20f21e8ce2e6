// pvmove's planning, as pure functions over the VG model (src/volume/pvmove.ts): which extent
// moves next and where, and the LV's segments after the switch. Fuzzed over seeded random VGs
// (fragmented by creating and removing linear and striped LVs): moving chunk after chunk, every
// LE keeps its data (a simulated disk copies each chunk; a striped row's area is one PE), nothing
// of the moved LVs stays on the source, segments tile each LV and never overlap, no two stripes of
// a segment share a PV, and contiguous segments are merged. Bad requests are refused by name.

import test from 'ava';
import { SanboxError } from '../src/errors.js';
import { newVgModel, type LvModel, type VgModel } from '../src/format/lvm/vg-model.js';
import { allocateSegments, checkNoOverlap, mergeSegments } from '../src/volume/allocator.js';
import { checkMove, moveTag, movesOf, nextChunk, remapExtent, type MoveRecord } from '../src/volume/pvmove.js';
import { fuzzSeed, prng } from './helpers/fuzz.js';

function pvModel(i: number, peCount: number): VgModel['pvs'][number] {
  return {
    key: `pv${i}`,
    id: `PV${i}`.padEnd(32, 'x'),
    device: undefined,
    status: ['ALLOCATABLE'],
    flags: [],
    tags: [],
    devSizeSectors: undefined,
    peStartSectors: 2048,
    peCount,
    baStartSectors: undefined,
    baSizeSectors: undefined,
    extra: [],
  };
}

function vgModel(peCounts: number[]): VgModel {
  return newVgModel({ name: 'vgp', id: 'VG'.padEnd(32, 'x'), extentSizeSectors: 2048, pvs: peCounts.map((n, i) => pvModel(i, n)) });
}

function addLv(vg: VgModel, name: string, extents: number, stripes = 1): LvModel {
  const lv: LvModel = { name, id: name.padEnd(32, 'y'), status: ['READ', 'WRITE', 'VISIBLE'], flags: [], tags: [], creationTime: 0, creationHost: 'h', lockArgs: undefined, readAhead: undefined, segments: [], extra: [] };
  lv.segments = allocateSegments(vg, lv, extents, { stripes });
  vg.lvs.push(lv);
  return lv;
}

/**
 * "LV:LE:area" → "pv:pe" of every LV's every PE: LE is the first LE of the stripe row (a row is
 * one LE of a linear segment, k of a k-stripe one), and stays the row's name however the segment
 * is split at row boundaries or merged.
 */
function where(vg: VgModel): Map<string, string> {
  const out = new Map<string, string>();
  for (const lv of vg.lvs) {
    for (const s of lv.segments) {
      const k = s.stripeCount;
      for (let row = 0; row < s.extentCount / k; row++) for (const [j, st] of s.stripes.entries()) out.set(`${lv.name}:${s.startExtent + row * k}:${j}`, `${st.pv}:${st.firstPe + row}`);
    }
  }
  return out;
}

test('fuzz: moving chunk after chunk keeps every LE\'s data, empties the source of the moved LVs, and leaves segments that tile and never overlap', (t) => {
  const rnd = prng(fuzzSeed(t));
  const int = (n: number): number => Math.floor(rnd() * n);
  let stripedChunks = 0;
  for (let round = 0; round < 200; round++) {
    const vg = vgModel(Array.from({ length: 2 + int(2) }, () => 10 + int(30)));
    // Fragment: create LVs, remove some, create more.
    for (let k = 0; k < 6; k++) {
      const free = vg.pvs.reduce((n, p) => n + p.peCount, 0) - vg.lvs.reduce((n, l) => n + l.segments.reduce((m, s) => m + s.extentCount, 0), 0);
      if (free < 2) break;
      const stripes = rnd() < 0.4 ? 2 + int(vg.pvs.length - 1) : 1;
      try {
        addLv(vg, `lv${k}`, stripes * (1 + int(Math.min(free - 1, 12) / stripes)), stripes);
      } catch {
        // No room for those stripes: the VG stays as it is.
      }
      if (rnd() < 0.3) vg.lvs.splice(int(vg.lvs.length), 1);
    }
    if (vg.lvs.length === 0) continue;
    // The simulated disk: each PE holds the LE it was written for.
    const disk = new Map<string, string>();
    for (const [le, at] of where(vg)) disk.set(at, le);
    const src = vg.pvs[int(vg.pvs.length)]!;
    const only = rnd() < 0.5 ? vg.lvs[int(vg.lvs.length)]!.name : undefined;
    const r: MoveRecord = { vg: vg.name, srcPvId: src.id, dstPvId: undefined, lv: only };
    try {
      checkMove(vg, r);
    } catch (err) {
      // Refused as a whole (pvMove writes nothing then): only when a stripe has nowhere to go.
      t.regex(String(err), /has no PV to move to: every other allocatable PV of the VG holds another stripe of the same segment/);
      continue;
    }
    let moved = 0;
    for (;;) {
      let c;
      try {
        c = nextChunk(vg, r);
      } catch (err) {
        t.true(err instanceof SanboxError && err.code === 'ENOSPC' && /no free extent/.test(err.message), String(err));
        break;
      }
      if (c === undefined) break;
      t.not(c.dstKey, c.srcKey);
      t.is(disk.get(`${c.dstKey}:${c.dstPe}`), undefined, 'the destination PE is free');
      disk.set(`${c.dstKey}:${c.dstPe}`, disk.get(`${c.srcKey}:${c.srcPe}`)!);
      disk.delete(`${c.srcKey}:${c.srcPe}`);
      if (c.lv.segments.find((s) => s.startExtent === c.le)!.stripeCount > 1) stripedChunks++;
      c.lv.segments = remapExtent(c.lv, c.le, c.dstKey, c.dstPe, c.area);
      checkNoOverlap(vg);
      for (const s of c.lv.segments) t.is(new Set(s.stripes.map((st) => st.pv)).size, s.stripeCount, `${c.lv.name}: no two stripes of a segment on one PV`);
      t.deepEqual(mergeSegments(c.lv.segments), c.lv.segments, 'contiguous segments are merged');
      moved++;
      t.true(moved < 1000);
    }
    for (const lv of vg.lvs) {
      let next = 0;
      for (const s of lv.segments) {
        t.is(s.startExtent, next, `${lv.name} tiles`);
        next += s.extentCount;
      }
    }
    for (const [le, at] of where(vg)) t.is(disk.get(at), le, `${le} kept its data`);
    const left = vg.lvs.filter((l) => only === undefined || l.name === only).flatMap((l) => l.segments.filter((s) => s.stripes.some((st) => st.pv === src.key)));
    if (nextChunkOrFull(vg, r)) t.deepEqual(left, [], 'nothing moved is left on the source');
  }
  // 200 rounds, 40% of the LVs striped: a seed without a moved stripe would not test them.
  t.true(stripedChunks > 0, 'stripes were moved');
  t.log(`${stripedChunks} striped rows moved`);
});

/** True when the move finished (not stopped by a full destination). */
function nextChunkOrFull(vg: VgModel, r: MoveRecord): boolean {
  try {
    return nextChunk(vg, r) === undefined;
  } catch {
    return false;
  }
}

test('the move record round-trips through its VG tag; a malformed one is refused by name', (t) => {
  const vg = vgModel([10, 10]);
  const r: MoveRecord = { vg: 'vgp', srcPvId: vg.pvs[0]!.id, dstPvId: vg.pvs[1]!.id, lv: 'lv0' };
  vg.tags = ['other', moveTag(r), moveTag({ ...r, dstPvId: undefined, lv: undefined })];
  t.deepEqual(movesOf(vg), [r, { ...r, dstPvId: undefined, lv: undefined }]);
  t.regex(moveTag(r), /^[A-Za-z0-9_+.\-/=!:&#]+$/, "only lvm2's tag characters");
  vg.tags = ['sanbox_pvmove:onlysrc'];
  t.throws(() => movesOf(vg), { message: /VG vgp: malformed pvmove record tag 'sanbox_pvmove:onlysrc'/ });
});

/** A 2-stripe segment of `extents` LEs over `a` and `b`. */
function stripedLv(vg: VgModel, name: string, extents: number, a: [string, number], b: [string, number]): LvModel {
  const lv: LvModel = { ...vg.lvs[0]!, name, id: name.padEnd(32, 'y'), segments: [{ startExtent: 0, extentCount: extents, type: 'striped', stripeCount: 2, stripeSizeSectors: 128, stripes: [{ pv: a[0], firstPe: a[1] }, { pv: b[0], firstPe: b[1] }], tags: [], extra: [] }] };
  vg.lvs.push(lv);
  return lv;
}

/** [startExtent, extentCount, 'pv:pe' of each area] of each segment. */
function segs(lv: LvModel): [number, number, ...string[]][] {
  return lv.segments.map((s) => [s.startExtent, s.extentCount, ...s.stripes.map((st) => `${st.pv}:${st.firstPe}`)]);
}

test('a stripe moves row by row: the segment splits at a stripe-row boundary, the moved rows merge back into one segment; a destination holding another stripe of the segment is refused by name', (t) => {
  const vg = vgModel([10, 10, 5]);
  addLv(vg, 'lin', 4);
  const str = stripedLv(vg, 'str', 6, ['pv0', 4], ['pv1', 0]);
  const toPv1: MoveRecord = { vg: 'vgp', srcPvId: vg.pvs[0]!.id, dstPvId: vg.pvs[1]!.id, lv: 'str' };
  const refusal = /^vgp\/str: stripe 0 of its 2-stripe segment at LE 0 cannot move to pv1 \(PV1x+\): that PV holds stripe 1 of the same segment, and two stripes of a segment never share a PV; name another destination$/;
  t.throws(() => checkMove(vg, toPv1), { message: refusal });
  t.throws(() => nextChunk(vg, toPv1), { message: refusal });
  t.throws(() => checkMove(vg, toPv1, (key) => `/img/${key}.img`), { message: /cannot move to \/img\/pv1\.img: that PV holds stripe 1/ });
  // No destination named: pv1 holds the other stripe, so pv2.
  const any: MoveRecord = { ...toPv1, dstPvId: undefined };
  t.notThrows(() => checkMove(vg, any));
  const c = nextChunk(vg, any)!;
  t.deepEqual([c.le, c.area, c.srcKey, c.srcPe, c.dstKey, c.dstPe, c.left], [0, 0, 'pv0', 4, 'pv2', 0, 3]);
  str.segments = remapExtent(str, c.le, c.dstKey, c.dstPe, c.area);
  t.deepEqual(segs(str), [[0, 2, 'pv2:0', 'pv1:0'], [2, 4, 'pv0:5', 'pv1:1']], 'row 0 split off, its stripe 0 on pv2; the rest advanced by one row');
  const c2 = nextChunk(vg, any)!;
  t.deepEqual([c2.le, c2.area, c2.srcPe, c2.dstKey, c2.dstPe, c2.left], [2, 0, 5, 'pv2', 1, 2], 'the next row goes right after the previous one');
  str.segments = remapExtent(str, c2.le, c2.dstKey, c2.dstPe, c2.area);
  t.deepEqual(segs(str), [[0, 4, 'pv2:0', 'pv1:0'], [4, 2, 'pv0:6', 'pv1:2']], 'moved rows merged');
  const c3 = nextChunk(vg, any)!;
  str.segments = remapExtent(str, c3.le, c3.dstKey, c3.dstPe, c3.area);
  t.deepEqual(segs(str), [[0, 6, 'pv2:0', 'pv1:0']], 'one segment again, as lvm2 leaves a finished move');
  t.is(nextChunk(vg, any), undefined);
  // Stripe 1 off pv1: pv2 holds stripe 0 now, so pv0 (or nothing, when only pv2 is named).
  const off1: MoveRecord = { vg: 'vgp', srcPvId: vg.pvs[1]!.id, dstPvId: vg.pvs[2]!.id, lv: 'str' };
  t.throws(() => checkMove(vg, off1), { message: /stripe 1 of its 2-stripe segment at LE 0 cannot move to pv2 .*holds stripe 0/ });
  const c4 = nextChunk(vg, { ...off1, dstPvId: undefined })!;
  t.deepEqual([c4.area, c4.dstKey], [1, 'pv0']);
  // Only two PVs: stripe 0 has nowhere to go.
  const two = vgModel([10, 10]);
  addLv(two, 'lin', 1);
  stripedLv(two, 's2', 2, ['pv0', 1], ['pv1', 0]);
  t.throws(() => checkMove(two, { vg: 'vgp', srcPvId: two.pvs[0]!.id, dstPvId: undefined, lv: 's2' }), { message: /^vgp\/s2: stripe 0 of its 2-stripe segment at LE 0 has no PV to move to: every other allocatable PV of the VG holds another stripe of the same segment$/ });
  t.throws(() => remapExtent(str, 1, 'pv0', 9, 0), { message: /str: LE 1 is not at a stripe-row boundary of its 2-stripe segment at LE 0/ });
  t.throws(() => remapExtent(str, 0, 'pv0', 9, 2), { message: /str: the segment at LE 0 has no stripe 2/ });
});

test('bad moves are refused by name: a segment type sanbox does not move, no room on the destination, an unknown LV or PV', (t) => {
  const vg = vgModel([10, 10, 3]);
  const lv = addLv(vg, 'lin', 4);
  const mirror: LvModel = { ...lv, name: 'mir', id: 'mir'.padEnd(32, 'y'), segments: [{ startExtent: 0, extentCount: 2, type: 'mirror', stripeCount: 1, stripeSizeSectors: undefined, stripes: [], tags: [], extra: [{ key: 'mirrors', value: ['pv0', 4, 'pv1', 0] }] }] };
  vg.lvs.push(mirror);
  const base: MoveRecord = { vg: 'vgp', srcPvId: vg.pvs[0]!.id, dstPvId: vg.pvs[2]!.id, lv: 'mir' };
  t.throws(() => nextChunk(vg, base), { message: /vgp\/mir: its mirror segment at LE 0 is on the source PV; sanbox's pvmove moves linear and striped segments only/ });
  t.throws(() => checkMove(vg, base), { message: /its mirror segment at LE 0/ });
  const full = { ...base, lv: 'lin' };
  const c = nextChunk(vg, full)!;
  t.deepEqual([c.le, c.srcKey, c.dstKey, c.dstPe, c.left], [0, 'pv0', 'pv2', 0, 4]);
  for (let i = 0; i < 3; i++) {
    const k = nextChunk(vg, full)!;
    k.lv.segments = remapExtent(k.lv, k.le, k.dstKey, k.dstPe);
  }
  t.deepEqual(lv.segments.map((s) => [s.startExtent, s.extentCount, s.stripes[0]!.pv, s.stripes[0]!.firstPe]), [[0, 3, 'pv2', 0], [3, 1, 'pv0', 3]], 'moved extents merged into one segment');
  t.throws(() => nextChunk(vg, full), { message: /no free extent on destination PV/ });
  t.throws(() => nextChunk(vg, { ...full, lv: 'nope' }), { message: /logical volume vgp\/nope not found/ });
  t.throws(() => nextChunk(vg, { ...full, srcPvId: 'gone'.padEnd(32, 'z') }), { message: /the source PV gone/ });
  t.throws(() => nextChunk(vg, { ...full, dstPvId: vg.pvs[0]!.id }), { message: /source and destination are the same PV/ });
});
