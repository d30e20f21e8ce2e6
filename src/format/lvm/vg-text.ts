// VG text metadata <-> VgModel (reference/lvm2.md §5). The parser accepts both the on-disk form
// (no indentation) and backup files (tabs, comments, header first); it checks every key LVM
// requires and the consistency of segments (tiling, stripe pairs, PV references, PE ranges).
// The writer produces the on-disk form lvm2 writes: the VG section first, no indentation, blank
// lines where lvm2 puts them, then the trailer (contents, version, description, creation_*).

import { FormatError } from '../../errors.js';
import {
  formatEntries,
  formatValue,
  parseConfig,
  quote,
  type ConfigEntry,
  type ConfigSection,
  type ConfigValue,
  type Where,
} from './config-text.js';
import { dashId, undashId } from './uuid.js';
import { formatFail } from '../where.js';
import { LV_STATUS_FLAGS, PV_STATUS_FLAGS, VG_STATUS_FLAGS } from './vg-check.js';
import type { LvModel, PvModel, SegmentModel, StripeArea, TextTrailer, VgModel } from './vg-model.js';

export const TEXT_CONTENTS = 'Text Format Volume Group';
export const TEXT_VERSION = 1;
/** Names: [A-Za-z0-9+_.-], not starting with '-', not '.'/'..', at most 127 chars (lvm-string.c). */
export const LVM_NAME_LEN_MAX = 127;

export function isValidLvmName(name: string): boolean {
  return name.length > 0 && name.length <= LVM_NAME_LEN_MAX && /^[A-Za-z0-9+_.-]+$/.test(name) && !name.startsWith('-') && name !== '.' && name !== '..';
}

export interface ParsedVgText {
  vg: VgModel;
  description: string | undefined;
  creationHost: string | undefined;
  creationTimeSec: number | undefined;
}

class Reader {
  constructor(
    readonly where: Where,
    readonly path: string,
  ) {}
  fail(msg: string): never {
    return formatFail(this.where, 0, `metadata ${this.path}: ${msg}`, 'metadata');
  }
  child(name: string): Reader {
    return new Reader(this.where, `${this.path}/${name}`);
  }
  raw(sec: ConfigSection, key: string): ConfigValue | undefined {
    for (const e of sec.entries) if (e.key === key) return 'value' in e ? e.value : this.fail(`'${key}' must be a value, not a section`);
    return undefined;
  }
  int(sec: ConfigSection, key: string): number {
    const v = this.optInt(sec, key);
    return v === undefined ? this.fail(`missing '${key}'`) : v;
  }
  optInt(sec: ConfigSection, key: string): number | undefined {
    const v = this.raw(sec, key);
    if (v === undefined) return undefined;
    if (typeof v !== 'number') this.fail(`'${key}' must be an integer`);
    return v;
  }
  nat(sec: ConfigSection, key: string): number {
    const v = this.int(sec, key);
    if (v < 0) this.fail(`'${key}' must not be negative`);
    return v;
  }
  str(sec: ConfigSection, key: string): string {
    const v = this.optStr(sec, key);
    return v === undefined ? this.fail(`missing '${key}'`) : v;
  }
  optStr(sec: ConfigSection, key: string): string | undefined {
    const v = this.raw(sec, key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') this.fail(`'${key}' must be a string`);
    return v;
  }
  strs(sec: ConfigSection, key: string, required: boolean): string[] {
    const v = this.raw(sec, key);
    if (v === undefined) return required ? this.fail(`missing '${key}'`) : [];
    // lvm2 reads a lone string where a list is expected as a list of one (measured: status = "READ").
    if (typeof v === 'string') return [v];
    if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) this.fail(`'${key}' must be an array of strings`);
    return v as string[];
  }
  /** A status list: every flag must be one lvm2 knows (it refuses the VG otherwise). */
  status(sec: ConfigSection, known: readonly string[]): string[] {
    const flags = this.strs(sec, 'status', true);
    for (const f of flags) if (!known.includes(f)) this.fail(`unknown status flag '${f}'`);
    return flags;
  }
  id(sec: ConfigSection): string {
    const s = this.str(sec, 'id');
    try {
      return undashId(s);
    } catch (err) {
      if (err instanceof FormatError) return this.fail(`invalid id '${s}'`);
      throw err;
    }
  }
  section(sec: ConfigSection, key: string): ConfigSection | undefined {
    for (const e of sec.entries) if (e.key === key) return 'section' in e ? e.section : this.fail(`'${key}' must be a section`);
    return undefined;
  }
}

function extras(sec: ConfigSection, known: readonly string[]): ConfigEntry[] {
  return sec.entries.filter((e) => !known.includes(e.key));
}

const VG_KEYS = ['id', 'seqno', 'format', 'status', 'flags', 'tags', 'system_id', 'lock_type', 'lock_args', 'extent_size', 'max_lv', 'max_pv', 'allocation_policy', 'metadata_copies', 'physical_volumes', 'logical_volumes'] as const;
const PV_KEYS = ['id', 'device', 'status', 'flags', 'tags', 'dev_size', 'pe_start', 'pe_count', 'ba_start', 'ba_size'] as const;
const LV_KEYS = ['id', 'status', 'flags', 'tags', 'creation_time', 'creation_host', 'lock_args', 'read_ahead', 'segment_count'] as const;
const SEG_KEYS = ['start_extent', 'extent_count', 'type', 'stripe_count', 'stripe_size', 'stripes', 'tags'] as const;

/** WRITE_LOCKED in flags means WRITE (lvm2.md §5.3, trap 9). */
function unlockStatus(status: string[], flags: string[]): { status: string[]; flags: string[] } {
  if (!flags.includes('WRITE_LOCKED')) return { status, flags };
  return { status: status.includes('WRITE') ? status : [...status, 'WRITE'], flags: flags.filter((f) => f !== 'WRITE_LOCKED') };
}

/** Parses VG text (without the NUL). */
export function parseVgText(text: string, where: Where = {}): ParsedVgText {
  const root = parseConfig(text, where);
  const r = new Reader(where, '');
  if (r.optStr(root, 'contents') !== TEXT_CONTENTS) r.fail(`'contents' must be "${TEXT_CONTENTS}"`);
  if (r.optInt(root, 'version') !== TEXT_VERSION) r.fail(`'version' must be ${TEXT_VERSION}`);
  const vgEntry = root.entries.find((e) => 'section' in e);
  if (!vgEntry || !('section' in vgEntry)) return r.fail('no volume group section');
  const name = vgEntry.key;
  const vr = r.child(name);
  if (!isValidLvmName(name)) vr.fail(`invalid VG name '${name}'`);
  const s = vgEntry.section;
  const vgFlags = unlockStatus(vr.status(s, VG_STATUS_FLAGS), vr.strs(s, 'flags', false));
  // lvm2 reads any extent_size; one it cannot use is a defect (vg-check.ts), not a read error.
  const extentSizeSectors = vr.int(s, 'extent_size');
  const pvSec = vr.section(s, 'physical_volumes') ?? vr.fail("missing 'physical_volumes'");
  const pvs: PvModel[] = [];
  for (const e of pvSec.entries) {
    const pr = vr.child(`physical_volumes/${e.key}`);
    const p = 'section' in e ? e.section : pr.fail('must be a section');
    const pv: PvModel = {
      key: e.key,
      id: pr.id(p),
      device: pr.optStr(p, 'device'),
      status: pr.status(p, PV_STATUS_FLAGS),
      flags: pr.strs(p, 'flags', false),
      tags: pr.strs(p, 'tags', false),
      devSizeSectors: pr.optInt(p, 'dev_size'),
      peStartSectors: pr.nat(p, 'pe_start'),
      peCount: pr.nat(p, 'pe_count'),
      baStartSectors: pr.optInt(p, 'ba_start'),
      baSizeSectors: pr.optInt(p, 'ba_size'),
      extra: extras(p, PV_KEYS),
    };
    // lvm2 reads a repeated PV key (segments then name the first); vgDefects reports it.
    pvs.push(pv);
  }
  const lvs: LvModel[] = [];
  const lvSec = vr.section(s, 'logical_volumes');
  for (const e of lvSec?.entries ?? []) {
    const lr = vr.child(`logical_volumes/${e.key}`);
    const l = 'section' in e ? e.section : lr.fail('must be a section');
    // lvm2 refuses a '/' in an LV name on read, and lists other invalid names (vgck fails: vgDefects).
    if (e.key.length === 0 || e.key.includes('/')) lr.fail(`invalid LV name '${e.key}'`);
    if (lvs.some((x) => x.name === e.key)) lr.fail('two logical volumes have this name');
    const st = unlockStatus(lr.status(l, LV_STATUS_FLAGS), lr.strs(l, 'flags', false));
    const segSecs = l.entries.filter((x): x is { key: string; section: ConfigSection } => 'section' in x);
    const segmentCount = lr.nat(l, 'segment_count');
    if (segmentCount !== segSecs.length) lr.fail(`segment_count is ${segmentCount} but ${segSecs.length} segments are present`);
    if (segSecs.length === 0) lr.fail('a logical volume needs at least one segment');
    const segments = segSecs.map((x) => parseSegment(lr.child(x.key), x.section, pvs));
    segments.sort((a, b) => a.startExtent - b.startExtent);
    let next = 0;
    for (const seg of segments) {
      if (seg.startExtent !== next) lr.fail(`segments do not tile the LV: expected start_extent ${next}, found ${seg.startExtent}`);
      next += seg.extentCount;
    }
    lvs.push({
      name: e.key,
      id: lr.id(l),
      status: st.status,
      flags: st.flags,
      tags: lr.strs(l, 'tags', false),
      creationTime: lr.optInt(l, 'creation_time'),
      creationHost: lr.optStr(l, 'creation_host'),
      lockArgs: lr.optStr(l, 'lock_args'),
      readAhead: lr.optInt(l, 'read_ahead'),
      segments,
      extra: l.entries.filter((x) => !('section' in x) && !(LV_KEYS as readonly string[]).includes(x.key)),
    });
  }
  checkExtentsDisjoint(vr, lvs);
  const format = vr.optStr(s, 'format');
  // lvm2 2.03 reads only its own format (lvm1 and pool support were removed); absent means lvm2.
  if (format !== undefined && format !== 'lvm2') vr.fail(`format "${format}" is not lvm2`);
  const vg: VgModel = {
    name,
    id: vr.id(s),
    seqno: vr.nat(s, 'seqno'),
    format,
    status: vgFlags.status,
    flags: vgFlags.flags,
    tags: vr.strs(s, 'tags', false),
    systemId: vr.optStr(s, 'system_id'),
    lockType: vr.optStr(s, 'lock_type'),
    lockArgs: vr.optStr(s, 'lock_args'),
    extentSizeSectors,
    maxLv: vr.nat(s, 'max_lv'),
    maxPv: vr.nat(s, 'max_pv'),
    allocationPolicy: vr.optStr(s, 'allocation_policy'),
    metadataCopies: vr.optInt(s, 'metadata_copies'),
    pvs,
    lvs,
    extra: extras(s, VG_KEYS),
  };
  return {
    vg,
    description: typeof r.raw(root, 'description') === 'string' ? (r.raw(root, 'description') as string) : undefined,
    creationHost: typeof r.raw(root, 'creation_host') === 'string' ? (r.raw(root, 'creation_host') as string) : undefined,
    creationTimeSec: typeof r.raw(root, 'creation_time') === 'number' ? (r.raw(root, 'creation_time') as number) : undefined,
  };
}

/** lvm2 refuses a VG in which two striped areas share a PE (or one area overlaps itself). */
function checkExtentsDisjoint(r: Reader, lvs: LvModel[]): void {
  const used = new Map<string, { start: number; end: number; lv: string }[]>();
  for (const lv of lvs) {
    for (const seg of lv.segments) {
      if (seg.type !== 'striped') continue;
      const per = seg.extentCount / seg.stripeCount;
      for (const st of seg.stripes) {
        const list = used.get(st.pv) ?? [];
        used.set(st.pv, list);
        const clash = list.find((x) => st.firstPe < x.end && x.start < st.firstPe + per);
        if (clash) r.fail(`LVs ${clash.lv} and ${lv.name} both use PE ${Math.max(st.firstPe, clash.start)} of ${st.pv}`);
        list.push({ start: st.firstPe, end: st.firstPe + per, lv: lv.name });
      }
    }
  }
}

function parseSegment(sr: Reader, s: ConfigSection, pvs: PvModel[]): SegmentModel {
  const type = sr.str(s, 'type');
  const seg: SegmentModel = {
    startExtent: sr.nat(s, 'start_extent'),
    extentCount: sr.nat(s, 'extent_count'),
    type,
    stripeCount: 0,
    stripeSizeSectors: undefined,
    stripes: [],
    tags: sr.strs(s, 'tags', false),
    extra: [],
  };
  if (seg.extentCount === 0) sr.fail('extent_count must be positive');
  if (type !== 'striped') {
    // Other segment types (mirror, raid, thin, …) are preserved, not interpreted.
    seg.extra = s.entries.filter((e) => !['start_extent', 'extent_count', 'type', 'tags'].includes(e.key));
    return seg;
  }
  seg.stripeCount = sr.nat(s, 'stripe_count');
  if (seg.stripeCount < 1) sr.fail('stripe_count must be at least 1');
  seg.stripeSizeSectors = sr.optInt(s, 'stripe_size');
  if (seg.stripeCount > 1) {
    if (seg.stripeSizeSectors === undefined || seg.stripeSizeSectors <= 0) sr.fail('a striped segment needs a positive stripe_size');
  }
  if (seg.extentCount % seg.stripeCount !== 0) sr.fail(`extent_count ${seg.extentCount} is not a multiple of stripe_count ${seg.stripeCount}`);
  const arr = sr.raw(s, 'stripes');
  if (!Array.isArray(arr) || arr.length !== seg.stripeCount * 2) sr.fail(`'stripes' must hold ${seg.stripeCount} "pvN", PE pairs`);
  const perStripe = seg.extentCount / seg.stripeCount;
  for (let i = 0; i < arr.length; i += 2) {
    const pv = arr[i];
    const pe = arr[i + 1];
    if (typeof pv !== 'string' || typeof pe !== 'number' || pe < 0) sr.fail(`stripe ${i / 2} must be a "pvN", PE pair`);
    const p = pvs.find((x) => x.key === pv);
    if (!p) sr.fail(`stripe ${i / 2} names unknown PV '${pv}'`);
    if (pe + perStripe > p.peCount) sr.fail(`stripe ${i / 2} (PE ${pe}+${perStripe}) is beyond ${pv}'s ${p.peCount} extents`);
    seg.stripes.push({ pv, firstPe: pe } satisfies StripeArea);
  }
  seg.extra = extras(s, SEG_KEYS);
  return seg;
}

/** WRITE moves to WRITE_LOCKED when the VG has a system_id or a shared lock_type (lvm2.md §5.3). */
function lockedStatus(vg: VgModel, status: string[], flags: string[]): { status: string[]; flags: string[] } {
  const locked = (vg.systemId !== undefined && vg.systemId !== '') || (vg.lockType !== undefined && vg.lockType !== 'none');
  if (!locked || !status.includes('WRITE')) return { status, flags };
  return { status: status.filter((s) => s !== 'WRITE'), flags: flags.includes('WRITE_LOCKED') ? flags : [...flags, 'WRITE_LOCKED'] };
}

const line = (k: string, v: ConfigValue): string => `${k} = ${formatValue(v)}\n`;

/** The on-disk VG text lvm2 would write for `vg` (without the NUL). */
export function writeVgText(vg: VgModel, trailer: TextTrailer): string {
  let o = `${vg.name} {\n`;
  o += line('id', dashId(vg.id));
  o += line('seqno', vg.seqno);
  if (vg.format !== undefined) o += line('format', vg.format);
  const vst = lockedStatus(vg, vg.status, vg.flags);
  o += line('status', vst.status);
  o += line('flags', vst.flags);
  if (vg.tags.length) o += line('tags', vg.tags);
  if (vg.systemId !== undefined) o += line('system_id', vg.systemId);
  if (vg.lockType !== undefined) o += line('lock_type', vg.lockType);
  if (vg.lockArgs !== undefined) o += line('lock_args', vg.lockArgs);
  o += line('extent_size', vg.extentSizeSectors);
  o += line('max_lv', vg.maxLv);
  o += line('max_pv', vg.maxPv);
  if (vg.allocationPolicy !== undefined) o += line('allocation_policy', vg.allocationPolicy);
  if (vg.metadataCopies !== undefined) o += line('metadata_copies', vg.metadataCopies);
  o += formatEntries(vg.extra.filter((e) => 'value' in e));
  o += '\nphysical_volumes {\n';
  for (const pv of vg.pvs) {
    o += `\n${pv.key} {\n`;
    o += line('id', dashId(pv.id));
    if (pv.device !== undefined) o += line('device', pv.device);
    o += '\n';
    o += line('status', pv.status);
    o += line('flags', pv.flags);
    if (pv.tags.length) o += line('tags', pv.tags);
    if (pv.devSizeSectors !== undefined) o += line('dev_size', pv.devSizeSectors);
    o += line('pe_start', pv.peStartSectors);
    o += line('pe_count', pv.peCount);
    if (pv.baStartSectors !== undefined) o += line('ba_start', pv.baStartSectors);
    if (pv.baSizeSectors !== undefined) o += line('ba_size', pv.baSizeSectors);
    o += formatEntries(pv.extra);
    o += '}\n';
  }
  o += '}\n';
  if (vg.lvs.length) {
    o += '\nlogical_volumes {\n';
    for (const lv of vg.lvs) {
      o += `\n${lv.name} {\n`;
      o += line('id', dashId(lv.id));
      const lst = lockedStatus(vg, lv.status, lv.flags);
      o += line('status', lst.status);
      o += line('flags', lst.flags);
      if (lv.tags.length) o += line('tags', lv.tags);
      if (lv.creationTime !== undefined) o += line('creation_time', lv.creationTime);
      if (lv.creationHost !== undefined) o += line('creation_host', lv.creationHost);
      if (lv.lockArgs !== undefined) o += line('lock_args', lv.lockArgs);
      if (lv.readAhead !== undefined) o += line('read_ahead', lv.readAhead);
      o += formatEntries(lv.extra);
      o += line('segment_count', lv.segments.length);
      lv.segments.forEach((seg, i) => {
        o += `${i === 0 ? '\n' : ''}segment${i + 1} {\n`;
        o += line('start_extent', seg.startExtent);
        o += line('extent_count', seg.extentCount);
        o += '\n';
        o += line('type', seg.type);
        if (seg.type === 'striped') {
          o += line('stripe_count', seg.stripeCount);
          if (seg.stripeSizeSectors !== undefined) o += line('stripe_size', seg.stripeSizeSectors);
          o += '\nstripes = [\n';
          o += seg.stripes.map((st) => `${quote(st.pv)}, ${st.firstPe}`).join(',\n');
          o += '\n]\n';
        }
        if (seg.tags.length) o += line('tags', seg.tags);
        o += formatEntries(seg.extra);
        o += '}\n';
      });
      o += '}\n';
    }
    o += '}\n';
  }
  o += formatEntries(vg.extra.filter((e) => 'section' in e));
  o += '\n}\n';
  o += `# Generated by ${trailer.generator}: ${trailer.ctime}\n\n`;
  o += line('contents', TEXT_CONTENTS);
  o += line('version', TEXT_VERSION);
  o += '\n';
  o += line('description', trailer.description);
  o += '\n';
  o += `creation_host = ${quote(trailer.creationHost)}\t# ${trailer.creationHostUname}\n`;
  o += `creation_time = ${trailer.creationTimeSec}\t# ${trailer.ctime}\n\n`;
  return o;
}
