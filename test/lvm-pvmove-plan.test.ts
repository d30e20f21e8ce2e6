// pvmove's planning, as pure functions over the VG model (src/volume/pvmove.ts): which extent
// moves next and where, and the LV's segments after the switch. Fuzzed over seeded random VGs
// (fragmented by creating and removing LVs): moving chunk after chunk, every LE keeps its data
// (a simulated disk copies each chunk), nothing of the moved LVs stays on the source, segments
// tile each LV and never overlap. Bad requests are refused by name.

import test from 'ava';
import { SanboxError } from '../src/errors.js';
import { newVgModel, type LvModel, type VgModel } from '../src/format/lvm/vg-model.js';
import { allocateSegments, checkNoOverlap } from '../src/volume/allocator.js';
import { moveTag, movesOf, nextChunk, remapExtent, type MoveRecord } from '../src/volume/pvmove.js';
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

function addLv(vg: VgModel, name: string, extents: number): LvModel {
  const lv: LvModel = { name, id: name.padEnd(32, 'y'), status: ['READ', 'WRITE', 'VISIBLE'], flags: [], tags: [], creationTime: 0, creationHost: 'h', lockArgs: undefined, readAhead: undefined, segments: [], extra: [] };
  lv.segments = allocateSegments(vg, lv, extents, {});
  vg.lvs.push(lv);
  return lv;
}

/** LE → "pv:pe" of every LV. */
function where(vg: VgModel): Map<string, string> {
  const out = new Map<string, string>();
  for (const lv of vg.lvs) for (const s of lv.segments) for (let i = 0; i < s.extentCount; i++) out.set(`${lv.name}:${s.startExtent + i}`, `${s.stripes[0]!.pv}:${s.stripes[0]!.firstPe + i}`);
  return out;
}

test('fuzz: moving chunk after chunk keeps every LE\'s data, empties the source of the moved LVs, and leaves segments that tile and never overlap', (t) => {
  const rnd = prng(fuzzSeed(t));
  const int = (n: number): number => Math.floor(rnd() * n);
  for (let round = 0; round < 200; round++) {
    const vg = vgModel(Array.from({ length: 2 + int(2) }, () => 10 + int(30)));
    // Fragment: create LVs, remove some, create more.
    for (let k = 0; k < 6; k++) {
      const free = vg.pvs.reduce((n, p) => n + p.peCount, 0) - vg.lvs.reduce((n, l) => n + l.segments.reduce((m, s) => m + s.extentCount, 0), 0);
      if (free < 2) break;
      addLv(vg, `lv${k}`, 1 + int(Math.min(free - 1, 12)));
      if (rnd() < 0.3) vg.lvs.splice(int(vg.lvs.length), 1);
    }
    if (vg.lvs.length === 0) continue;
    // The simulated disk: each PE holds the LE it was written for.
    const disk = new Map<string, string>();
    for (const [le, at] of where(vg)) disk.set(at, le);
    const src = vg.pvs[int(vg.pvs.length)]!;
    const only = rnd() < 0.5 ? vg.lvs[int(vg.lvs.length)]!.name : undefined;
    const r: MoveRecord = { vg: vg.name, srcPvId: src.id, dstPvId: undefined, lv: only };
    let moved = 0;
    for (;;) {
      let c;
      try {
        c = nextChunk(vg, r);
      } catch (err) {
        t.true(err instanceof SanboxError && err.code === 'ENOSPC', String(err));
        break;
      }
      if (c === undefined) break;
      t.not(c.dstKey, c.srcKey);
      t.is(disk.get(`${c.dstKey}:${c.dstPe}`), undefined, 'the destination PE is free');
      disk.set(`${c.dstKey}:${c.dstPe}`, disk.get(`${c.srcKey}:${c.srcPe}`)!);
      disk.delete(`${c.srcKey}:${c.srcPe}`);
      c.lv.segments = remapExtent(c.lv, c.le, c.dstKey, c.dstPe);
      checkNoOverlap(vg);
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
    const left = vg.lvs.filter((l) => only === undefined || l.name === only).flatMap((l) => l.segments.filter((s) => s.stripes[0]!.pv === src.key));
    if (nextChunkOrFull(vg, r)) t.deepEqual(left, [], 'nothing moved is left on the source');
  }
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

test('bad moves are refused by name: a striped segment on the source, no room on the destination, an unknown LV or PV', (t) => {
  const vg = vgModel([10, 10, 3]);
  const lv = addLv(vg, 'lin', 4);
  const str: LvModel = { ...lv, name: 'str', id: 'str'.padEnd(32, 'y'), segments: [{ startExtent: 0, extentCount: 4, type: 'striped', stripeCount: 2, stripeSizeSectors: 128, stripes: [{ pv: 'pv0', firstPe: 4 }, { pv: 'pv1', firstPe: 0 }], tags: [], extra: [] }] };
  vg.lvs.push(str);
  const base: MoveRecord = { vg: 'vgp', srcPvId: vg.pvs[0]!.id, dstPvId: vg.pvs[2]!.id, lv: 'str' };
  t.throws(() => nextChunk(vg, base), { message: /vgp\/str: its 2-stripe segment at LE 0 is on the source PV; sanbox's pvmove moves linear segments only/ });
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
