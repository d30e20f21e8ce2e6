// Differential test (issue 15): well over 100 crafted, CRC-valid VG metadata variants, each judged
// by the real lvm2 (2.03.16 `vgs` and `vgck`, through loop devices) and by sanbox's reader and
// writer. sanbox must read exactly the VGs lvm2's `vgs` lists; call a VG sound exactly when
// `vgck` passes it; and never write (lvcreate) metadata that lvm2 rejects — the images of a
// refused variant are byte-for-byte unchanged. What sanbox writes, lvm2 still accepts.
//
// Speed: every variant's PVs are attached at once and one `vgs` judges them all; `vgck` runs once
// per listed VG on that VG's loop devices only.

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { FormatError } from '../src/errors.js';
import { lvCreate, commitContext, withSession } from '../src/volume/manager.js';
import { findVg, vgModels } from '../src/volume/vg.js';
import { prng } from './helpers/fuzz.js';
import { commitRawText, makeOrphanPv, randomId } from './helpers/lvm-craft.js';
import { attachLoop, lvm } from './helpers/lvm-real.js';
import { variants, VARIANT_PV_BYTES } from './helpers/lvm-variants.js';
import { ownLockDir, tempDir } from './helpers/tmp.js';

ownLockDir(test);

const SEED = 15;

interface Case {
  index: number;
  name: string;
  vg: string;
  images: string[];
  loops: string[];
  lvm: 'reject' | 'listed' | 'sound';
  partial: boolean;
}

const sha = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

function jsonRows(stdout: string): Record<string, string>[] {
  // lvm2 interleaves "Retrying metadata scan." lines with the JSON on stdout when metadata is bad.
  const text = stdout.split('\n').filter((l) => !/^\s*Retrying/.test(l)).join('\n');
  const parsed = JSON.parse(text) as { report: { vg: Record<string, string>[] }[] };
  return parsed.report[0]!.vg;
}

test('sanbox accepts exactly the VG metadata lvm2 accepts, and writes none it rejects', async (t) => {
  t.timeout(120_000);
  const dir = tempDir(t);
  const rand = prng(SEED);
  const all = variants();
  t.true(all.length >= 100, `${all.length} variants`);
  const cases: Case[] = [];
  for (const [index, v] of all.entries()) {
    const ids = Array.from({ length: v.images + 1 }, () => randomId(rand));
    const lvIds = Array.from({ length: 8 }, () => randomId(rand));
    const images: string[] = [];
    for (let k = 0; k < v.images; k++) {
      const img = path.join(dir, `v${index}-${k}.img`);
      await makeOrphanPv(img, VARIANT_PV_BYTES, ids[k]);
      images.push(img);
    }
    const vg = `dv${index}`;
    const text = v.text(vg, ids, lvIds);
    for (const [k, img] of images.entries()) if (!v.textOn || v.textOn.includes(k)) await commitRawText(img, text);
    const present = images.filter((_, k) => !(v.absent ?? []).includes(k));
    cases.push({ index, name: v.name, vg, images: present, loops: [], lvm: 'reject', partial: false });
  }

  // lvm2's verdicts.
  for (const c of cases) for (const img of c.images) c.loops.push(await attachLoop(t, img));
  const listed = await lvm('vgs', cases.flatMap((c) => c.loops), ['--reportformat', 'json', '-o', 'vg_name,vg_attr']);
  const rows = new Map(jsonRows(listed.stdout).map((r) => [r.vg_name!, r.vg_attr!]));
  for (const c of cases) {
    const attr = rows.get(c.vg);
    if (attr === undefined) continue;
    c.partial = attr[3] === 'p';
    const ck = await lvm('vgck', c.loops, [c.vg]);
    c.lvm = ck.code === 0 ? 'sound' : 'listed';
  }
  const counts = { reject: 0, listed: 0, sound: 0 };
  for (const c of cases) counts[c.lvm]++;
  t.log(`${cases.length} variants: lvm2 rejects ${counts.reject}, lists but vgck fails ${counts.listed}, accepts ${counts.sound}`);
  t.true(counts.reject >= 20 && counts.sound >= 20 && counts.listed >= 5, 'the variants cover every verdict');

  // sanbox's reader: the same verdicts.
  const mismatches: string[] = [];
  for (const c of cases) {
    let verdict: Case['lvm'] = 'reject';
    let partial = false;
    try {
      await withSession(c.images, { readOnly: true, guard: 'none' }, async (s) => {
        if (!vgModels(s.scan).has(c.vg)) return;
        const h = findVg(s.scan, c.vg);
        partial = h.missing.length > 0;
        verdict = h.missing.length === 0 && h.defects.length === 0 ? 'sound' : 'listed';
      });
    } catch (err) {
      if (!(err instanceof FormatError)) throw err;
      t.regex(err.message, /offset \d+/, `${c.name}: the error names an offset`);
    }
    if (verdict !== c.lvm || partial !== c.partial) mismatches.push(`#${c.index} ${c.name}: lvm2 ${c.lvm}${c.partial ? ' (partial)' : ''}, sanbox ${verdict}${partial ? ' (partial)' : ''}`);
  }
  t.deepEqual(mismatches, [], 'reader verdicts differ from lvm2');

  // sanbox's writer: lvcreate of one extent. Refused (images unchanged) unless lvm2 found the VG sound.
  const written: Case[] = [];
  const ctx = commitContext('sanbox lvcreate (differential test)');
  for (const c of cases) {
    const before = c.images.map(sha);
    let ok = true;
    try {
      await lvCreate(c.images, c.vg, 'added', { size: { kind: 'extents', sign: '', extents: 1 } }, ctx);
    } catch (err) {
      ok = false;
      t.true(err instanceof Error && !/invariant|undefined|TypeError/.test(err.message), `${c.name}: ${String(err)}`);
    }
    if (ok) {
      t.is(c.lvm, 'sound', `${c.name}: sanbox wrote metadata lvm2 does not accept`);
      written.push(c);
    } else {
      t.deepEqual(c.images.map(sha), before, `${c.name}: a refused change wrote to the images`);
    }
  }
  t.log(`sanbox lvcreate committed on ${written.length} variants, refused ${cases.length - written.length}`);
  t.true(written.length >= 15, 'the writer was exercised');

  // What sanbox wrote, lvm2 still accepts.
  for (const c of written) {
    const ck = await lvm('vgck', c.loops, [c.vg]);
    t.is(ck.code, 0, `${c.name}: vgck after sanbox's lvcreate: ${ck.stderr}`);
  }
});
