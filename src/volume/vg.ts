// Volume groups over a set of scanned PVs: finding a VG's newest metadata, mapping its PVs to
// devices, and committing a change. `commitVg` is the ONE function through which every metadata
// change goes, so the cluster lock of later work (lvm2.md §7) can wrap it.
//
// Commit order (lvm2.md §4.3), on every in-use mda of every PV in the VG:
//   1. write the new text into the circular buffer after the committed copy (headers untouched),
//      on all mdas, and flush;
//   2. commit: header with raw_locn[0] = new, raw_locn[1] zero — one 512-byte sector write per mda.
// A crash before step 2 leaves raw_locn[0] on the previous version, intact (never overwritten).
// A crash in the middle of step 2 leaves some mdas one seqno behind; readers take the highest
// seqno (as lvm2 does) and the next commit rewrites every mda.

import { pauseAt } from '../disk/pause-point.js';
import type { BlockDevice } from '../disk/index.js';
import { assert, FormatError, SanboxError } from '../errors.js';
import { LABEL_SECTOR_BYTES, PV_EXT_USED } from '../format/lvm/label.js';
import { decodeMdaHeader, EMPTY_LOCN, encodeMdaHeader, MDA_HEADER_BYTES, planTextWrite, RAW_LOCN_IGNORED, type MdaHeader, type RawLocn } from '../format/lvm/mda-header.js';
import { dashId } from '../format/lvm/uuid.js';
import { LVM_SECTOR_BYTES, type PvModel, type TextTrailer, type VgModel } from '../format/lvm/vg-model.js';
import { vgFindings } from '../format/lvm/vg-check.js';
import { writeVgText } from '../format/lvm/vg-text.js';
import { pvDataEndBytes, pvDataStartBytes, readPv, setPvUsed, type PvState } from './pv.js';

export interface ScannedDevice {
  dev: BlockDevice;
  pv: PvState | undefined;
}

/** Reads every device's label and metadata. Devices stay open; the caller closes them. */
export async function scanDevices(devs: BlockDevice[]): Promise<ScannedDevice[]> {
  const out: ScannedDevice[] = [];
  for (const dev of devs) {
    const pv = await readPv(dev);
    // Two devices with one PV uuid (a copied image, or one file named twice through a link):
    // writing metadata to either could corrupt the other, so refuse, naming both.
    const twin = pv && out.find((o) => o.pv?.label.pvId === pv.label.pvId);
    if (twin) {
      throw new SanboxError('EEXIST', `${dev.name}: duplicate PV ${dashId(pv.label.pvId)}, also on ${twin.dev.name} (label at offset ${pv.label.sector * LABEL_SECTOR_BYTES}); name only one of them`, {
        device: dev.name,
        offsetBytes: pv.label.sector * LABEL_SECTOR_BYTES,
      });
    }
    out.push({ dev, pv });
  }
  return out;
}

export interface VgHandle {
  vg: VgModel;
  /** PV key (`pv0`) -> the PV's device state, for the PVs that are present. */
  pvByKey: Map<string, PvState>;
  /** Devices whose mdas carried an older seqno (lvm2 would warn "Inconsistent metadata"). */
  staleDevices: string[];
  /** PVs of the VG not found on any device: the VG is partial (lvm2's 'p' attribute). */
  missing: PvModel[];
  /** What lvm2's vgck would fail on (vg-check.ts). */
  defects: string[];
  /** What lvm2 accepts but sanbox will not change or map (vg-check.ts), and PVs that do not fit their devices. */
  cautions: string[];
  /** Where the metadata was read from, for messages. */
  source: { device: string; offsetBytes: number };
}

/** The VG text with the highest seqno for each VG name found on the scanned PVs. */
function newestTexts(scan: ScannedDevice[]): Map<string, { vg: VgModel; device: string; textOffsetBytes: number }> {
  const best = new Map<string, { vg: VgModel; device: string; textOffsetBytes: number }>();
  for (const s of scan) {
    for (const m of s.pv?.mdas ?? []) {
      if (!m.committed || m.header.locns[0].flags & RAW_LOCN_IGNORED) continue;
      const vg = m.committed.parsed.vg;
      const cur = best.get(vg.name);
      if (cur && cur.vg.id !== vg.id) {
        throw new SanboxError('EINVAL', `two different volume groups are named ${vg.name} (on ${cur.device} and ${s.dev.name}); name only one with --devices`, { device: s.dev.name });
      }
      if (!cur || vg.seqno > cur.vg.seqno) best.set(vg.name, { vg, device: s.dev.name, textOffsetBytes: m.area.offsetBytes + m.committed.locn.offsetBytes });
    }
  }
  return best;
}

/** The newest model of every VG seen on the scan, without requiring all its PVs. */
export function vgModels(scan: ScannedDevice[]): Map<string, VgModel> {
  return new Map([...newestTexts(scan)].map(([k, v]) => [k, v.vg]));
}

export function vgNames(scan: ScannedDevice[]): string[] {
  return [...newestTexts(scan).keys()].sort();
}

/** The VG named `name` with its present PVs mapped to devices; a missing PV makes it partial. */
export function findVg(scan: ScannedDevice[], name: string): VgHandle {
  const found = newestTexts(scan).get(name);
  if (!found) {
    throw new SanboxError('ENOENT', `volume group "${name}" not found on ${scan.length ? scan.map((s) => s.dev.name).join(', ') : 'any device (name the PVs with --devices or SANBOX_DEVICES)'}`);
  }
  const vg = found.vg;
  const pvByKey = new Map<string, PvState>();
  const missing: PvModel[] = [];
  const { defects, cautions } = vgFindings(vg);
  for (const p of vg.pvs) {
    const s = scan.find((x) => x.pv?.label.pvId === p.id);
    if (!s?.pv) {
      missing.push(p);
      continue;
    }
    const misfit = pvMisfit(s.pv, p, vg);
    if (misfit) cautions.push(misfit);
    if (!pvByKey.has(p.key)) pvByKey.set(p.key, s.pv);
  }
  const staleDevices: string[] = [];
  for (const pv of pvByKey.values()) {
    for (const m of pv.mdas) {
      if (m.header.locns[0].flags & RAW_LOCN_IGNORED) continue;
      if (!m.committed || m.committed.parsed.vg.seqno !== vg.seqno) staleDevices.push(pv.dev.name);
    }
  }
  return { vg, pvByKey, staleDevices, missing, defects, cautions, source: { device: found.device, offsetBytes: found.textOffsetBytes } };
}

/**
 * Refuses to change a VG (or open its LVs) when lvm2 would not, or when sanbox cannot be sure
 * what it would overwrite: a missing PV (lvm2 needs --partial, and then only repairs), or any
 * defect. Nothing has been written when this throws.
 */
export function assertChangeable(h: VgHandle, what = 'change'): void {
  const at = `metadata read from ${h.source.device} at offset ${h.source.offsetBytes}`;
  if (h.missing.length) {
    const m = h.missing[0]!;
    throw new SanboxError('ENOENT', `volume group ${h.vg.name} is partial: PV ${dashId(m.id)} (last seen on ${m.device ?? 'an unknown device'}) is missing; name all its PVs with --devices; sanbox does not ${what} a partial VG (${at})`, {
      device: h.source.device,
      offsetBytes: h.source.offsetBytes,
    });
  }
  const problems = [...h.defects, ...h.cautions];
  if (problems.length) {
    const why = h.defects.length ? "lvm2's vgck rejects this metadata" : 'sanbox cannot tell which extents this metadata uses';
    throw new FormatError(`${h.source.device}: volume group ${h.vg.name}: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}; ${why}, so sanbox does not ${what} it (${at})`, {
      device: h.source.device,
      offsetBytes: h.source.offsetBytes,
    });
  }
}

/** Where the text's view of a PV does not fit the device its label is on (lvm2 reads it anyway). */
function pvMisfit(pv: PvState, p: PvModel, vg: VgModel): string | undefined {
  const peStartBytes = p.peStartSectors * LVM_SECTOR_BYTES;
  const end = peStartBytes + p.peCount * vg.extentSizeSectors * LVM_SECTOR_BYTES;
  if (end > pv.dev.sizeBytes) return `${pv.dev.name}: ${p.key} has ${p.peCount} extents from sector ${p.peStartSectors}, beyond the device end (${pv.dev.sizeBytes} bytes) at offset ${end}`;
  const labelStart = pv.label.dataAreas[0]?.offsetBytes;
  if (labelStart !== undefined && peStartBytes < labelStart) {
    return `${pv.dev.name}: ${p.key} has pe_start at offset ${peStartBytes}, before the data area the PV label gives (offset ${labelStart}): extents would overwrite metadata`;
  }
  return undefined;
}

/** Who is writing, for the text trailer. */
export interface CommitContext {
  description: string;
  creationHost: string;
  creationHostUname: string;
  nowMs: number;
}

export function makeTrailer(ctx: CommitContext): TextTrailer {
  return {
    description: ctx.description,
    creationHost: ctx.creationHost,
    creationHostUname: ctx.creationHostUname,
    creationTimeSec: Math.floor(ctx.nowMs / 1000),
    ctime: ctime(new Date(ctx.nowMs)),
    generator: 'sanbox 0.1.0',
  };
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
/** ctime(3) format in UTC, e.g. "Sat Nov 21 13:39:40 2026". */
export function ctime(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

export interface CommitPlan {
  /** The new VG; its seqno must be the old one + 1 (or 1 for a new VG). */
  next: VgModel;
  /** Every PV of `next`, by key. */
  pvByKey: Map<string, PvState>;
  /** PVs that were in the VG and are not in `next` (vgreduce): become orphans after the commit. */
  leaving?: PvState[];
  /** Seqno of the committed VG this change is based on (0 for vgcreate). */
  baseSeqno: number;
}

/**
 * Commits a VG change on every metadata copy (see the file comment). Returns the text written.
 * The only function that writes VG metadata.
 */
export async function commitVg(plan: CommitPlan, ctx: CommitContext): Promise<string> {
  const { next, pvByKey } = plan;
  assert(next.seqno === plan.baseSeqno + 1, `commit of seqno ${next.seqno} over ${plan.baseSeqno}`);
  assert(next.pvs.every((p) => pvByKey.has(p.key)), 'every PV of the new VG is mapped to a device');
  const text = writeVgText(next, makeTrailer(ctx));
  const bytes = Buffer.concat([Buffer.from(text, 'latin1'), Buffer.alloc(1)]);
  const pvs = [...new Set(pvByKey.values())];
  const targets: { pv: PvState; index: number; locn: RawLocn; writes: { relBytes: number; data: Buffer }[] }[] = [];

  // Plan every copy first: a text too big for any mda fails before anything is written.
  for (const pv of pvs) {
    for (const [index, m] of pv.mdas.entries()) {
      if (m.header.locns[0].flags & RAW_LOCN_IGNORED) continue;
      const w = planTextWrite(m.area.sizeBytes, m.header.locns[0], bytes, { device: pv.dev.name, startBytes: m.area.offsetBytes });
      targets.push({ pv, index, locn: w.locn, writes: w.writes });
    }
  }
  if (targets.length === 0) throw new SanboxError('EINVAL', `volume group ${next.name} would have no metadata area in use; add a PV with metadata copies`);

  // Another writer (no shared lock: two hosts, or two lock directories) may have committed since
  // this one read the VG; writing now would lose its change. lvm2 re-reads under its lock and
  // compares (reference/lvm2.md §7.6); this is the last line of defence, before any write.
  await checkNoCompetingCommit(next.name, targets);

  const before = `nothing was committed: volume group ${next.name} is still at seqno ${plan.baseSeqno}`;
  try {
    // PVs joining the VG are marked used before any of them can point at the new metadata.
    for (const pv of pvs) if (!(pv.label.extFlags & PV_EXT_USED)) await setPvUsed(pv, true);
    // 1. The new text, in every in-use mda (nothing in the headers changes yet).
    for (const t of targets) {
      const m = t.pv.mdas[t.index]!;
      for (const piece of t.writes) await t.pv.dev.write(piece.data, m.area.offsetBytes + piece.relBytes);
    }
    for (const pv of pvs) await pv.dev.flush();
    // Checked again just before the commit point: the text writes took time.
    await checkNoCompetingCommit(next.name, targets);
  } catch (err) {
    throw new SanboxError(err instanceof SanboxError ? err.code : 'EIO', `${(err as Error).message}; ${before}`, { cause: err, device: (err as SanboxError).device, offsetBytes: (err as SanboxError).offsetBytes });
  }

  pauseAt('vg-commit', `before the commit point of volume group ${next.name} seqno ${next.seqno}`);

  // 2. commit: raw_locn[0] switches to the new copy, one sector write per mda. lvm2 passes
  // through a precommit slot (raw_locn[1]) first; sanbox does not, so a crash at any point leaves
  // headers that pvck finds clean ("precommit not empty" is a CHECK). Once one header points at
  // the new text, the new seqno is the VG (readers take the highest), and the outcome says so.
  const failed: string[] = [];
  let committed = 0;
  for (const t of targets) {
    const m = t.pv.mdas[t.index]!;
    const header: MdaHeader = { ...m.header, locns: [t.locn, EMPTY_LOCN] };
    try {
      await t.pv.dev.write(encodeMdaHeader(header), m.area.offsetBytes);
      m.header = header;
      committed++;
    } catch (err) {
      // Stop at the first failure: the fewer copies disagree, the smaller the repair.
      failed.push(`${t.pv.dev.name} at offset ${m.area.offsetBytes} (${(err as Error).message})`);
      for (const rest of targets.slice(targets.indexOf(t) + 1)) failed.push(`${rest.pv.dev.name} at offset ${rest.pv.mdas[rest.index]!.area.offsetBytes} (not attempted)`);
      break;
    }
  }
  for (const pv of pvs) {
    try {
      await pv.dev.flush();
    } catch (err) {
      failed.push(`${pv.dev.name}: flush failed (${(err as Error).message})`);
    }
  }
  if (committed === 0) throw new SanboxError('EIO', `metadata header write failed: ${failed.join('; ')}; ${before}`, { device: targets[0]!.pv.dev.name });
  if (failed.length) {
    throw new SanboxError(
      'EIO',
      `volume group ${next.name} committed as seqno ${next.seqno} on ${committed} of ${targets.length} metadata copies; not updated: ${failed.join('; ')}; readers use seqno ${next.seqno}, and the next change rewrites the others`,
      { device: targets[0]!.pv.dev.name },
    );
  }
  for (const t of targets) {
    const m = t.pv.mdas[t.index]!;
    m.committed = { locn: t.locn, text, parsed: { vg: next, description: ctx.description, creationHost: ctx.creationHost, creationTimeSec: Math.floor(ctx.nowMs / 1000) } };
  }

  // PVs that left become orphans: empty slots, PV_EXT_USED cleared.
  for (const pv of plan.leaving ?? []) await orphanPv(pv);
  return text;
}

/** Throws if any target mda header on disk differs from the one this commit was planned from. */
async function checkNoCompetingCommit(vgName: string, targets: { pv: PvState; index: number }[]): Promise<void> {
  for (const t of targets) {
    const m = t.pv.mdas[t.index]!;
    const buf = Buffer.alloc(MDA_HEADER_BYTES);
    await t.pv.dev.read(buf, m.area.offsetBytes);
    const now = decodeMdaHeader(buf, m.area.offsetBytes, m.area.sizeBytes, { device: t.pv.dev.name });
    const same = (x: RawLocn, y: RawLocn): boolean => x.offsetBytes === y.offsetBytes && x.sizeBytes === y.sizeBytes && x.checksum === y.checksum && x.flags === y.flags;
    if (!same(now.locns[0], m.header.locns[0]) || !same(now.locns[1], m.header.locns[1])) {
      throw new SanboxError(
        'EAGAIN',
        `${t.pv.dev.name}: volume group ${vgName} was changed by another writer since this command read it (metadata header at offset ${m.area.offsetBytes} now points at ${now.locns[0].sizeBytes} bytes at ${now.locns[0].offsetBytes}, was ${m.header.locns[0].sizeBytes} at ${m.header.locns[0].offsetBytes}); nothing was written by this command: run it again`,
        { device: t.pv.dev.name, offsetBytes: m.area.offsetBytes },
      );
    }
  }
}

/** Makes a PV an orphan: both raw_locn slots of every mda zeroed (text left in place), flag cleared. */
export async function orphanPv(pv: PvState): Promise<void> {
  for (const m of pv.mdas) {
    const header: MdaHeader = { ...m.header, locns: [{ ...EMPTY_LOCN, flags: m.header.locns[0].flags & RAW_LOCN_IGNORED }, EMPTY_LOCN] };
    await pv.dev.write(encodeMdaHeader(header), m.area.offsetBytes);
    m.header = header;
    m.committed = undefined;
  }
  await pv.dev.flush();
  await setPvUsed(pv, false);
}

/** The PV entry a new member of a VG gets in the text. */
export function pvEntry(pv: PvState, key: string, extentSizeSectors: number): PvModel {
  const startBytes = pvDataStartBytes(pv);
  const endBytes = pvDataEndBytes(pv);
  const extentBytes = extentSizeSectors * LVM_SECTOR_BYTES;
  const peCount = Math.floor((endBytes - startBytes) / extentBytes);
  if (peCount < 1) {
    throw new SanboxError('EINVAL', `${pv.dev.name}: data area ${startBytes}..${endBytes} holds no ${extentBytes}-byte extent`, { device: pv.dev.name, offsetBytes: startBytes });
  }
  return {
    key,
    id: pv.label.pvId,
    device: pv.dev.name,
    status: ['ALLOCATABLE'],
    flags: [],
    tags: [],
    devSizeSectors: Math.floor(pv.dev.sizeBytes / LVM_SECTOR_BYTES),
    peStartSectors: startBytes / LVM_SECTOR_BYTES,
    peCount,
    baStartSectors: undefined,
    baSizeSectors: undefined,
    extra: [],
  };
}

/** True when a PV belongs to some VG (by its flag or by committed metadata). */
export function pvInUse(pv: PvState): string | undefined {
  for (const m of pv.mdas) if (m.committed && !(m.header.locns[0].flags & RAW_LOCN_IGNORED)) return m.committed.parsed.vg.name;
  return pv.label.extFlags & PV_EXT_USED ? '(unknown VG)' : undefined;
}
