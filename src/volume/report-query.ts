// An lvm2-style report: the subjects of a scan (PVs, VGs, LVs or LV segments), the columns chosen
// with -o (lvm2's rules: a list replaces the defaults, "+a,b" appends, "-a" drops; a field may
// leave out its report's prefix), the order chosen with -O ("-field" descending), and the output
// as lvm2 prints it: aligned columns under left-aligned headings, or --separator without
// alignment, or `--reportformat json` in lvm2's exact layout with every value a string.

import { SanboxError, UsageError } from '../errors.js';
import type { VgModel } from '../format/lvm/vg-model.js';
import { pvRows, vgRow } from './report.js';
import {
  LV_FIELDS,
  LVM2_COLUMN_WIDTHS,
  PV_FIELDS,
  REPORTS,
  SEG_FIELDS,
  UNREPORTED_FIELDS,
  VG_FIELDS,
  type FieldDef,
  type FieldType,
  type FieldValue,
  type LvSubject,
  type PvSubject,
  type ReportName,
  type SegSubject,
  type VgSubject,
} from './report-fields.js';
import { formatReportSize, type UnitsSpec } from './units-format.js';
import type { ScannedDevice, VgHandle } from './vg.js';

/** One row's subjects; a field of a kind the row lacks (VG fields of an orphan PV) is blank. */
interface Context {
  pv?: PvSubject;
  vg?: VgSubject;
  lv?: LvSubject;
  seg?: SegSubject;
}

type Kind = keyof Context;
interface Field {
  kind: Kind;
  def: FieldDef<never>;
}

const CATALOGUE: { kind: Kind; defs: FieldDef<never>[] }[] = [
  { kind: 'pv', defs: PV_FIELDS as FieldDef<never>[] },
  { kind: 'vg', defs: VG_FIELDS as FieldDef<never>[] },
  { kind: 'lv', defs: LV_FIELDS as FieldDef<never>[] },
  { kind: 'seg', defs: SEG_FIELDS as FieldDef<never>[] },
];

/** Which kinds of fields each report can show (lvm2: pvs shows VG fields, lvs VG and segment ones). */
const KINDS: Record<ReportName, Kind[]> = { pvs: ['pv', 'vg'], vgs: ['vg'], lvs: ['lv', 'vg', 'seg'], segs: ['lv', 'vg', 'seg'] };

export interface ReportRequest {
  /** Each -o/--options argument, in order. */
  options: string[];
  /** Each -O/--sort argument, in order. */
  sort: string[];
  units: UnitsSpec;
  suffix: boolean;
  /** --binary: binary fields as 1/0 instead of their word or blank. */
  binary?: boolean;
}

export interface ReportColumn {
  name: string;
  heading: string;
  type: FieldType;
}

export interface Report {
  /** The JSON key: pv, vg, lv or seg. */
  key: string;
  columns: ReportColumn[];
  rows: string[][];
}

function lookup(report: ReportName, given: string): Field {
  const kinds = KINDS[report];
  // lvm2 takes field names in any case (-o VG_NAME).
  const name = given.toLowerCase();
  for (const candidate of [name, `${REPORTS[report].prefix}${name}`]) {
    for (const c of CATALOGUE) {
      if (!kinds.includes(c.kind)) continue;
      const def = c.defs.find((d) => d.name === candidate);
      if (def) return { kind: c.kind, def };
    }
  }
  const why = UNREPORTED_FIELDS.get(name) ?? UNREPORTED_FIELDS.get(`${REPORTS[report].prefix}${name}`);
  if (why) throw new SanboxError('EINVAL', `field ${name} is not reported by sanbox: ${why}`);
  throw new UsageError(`unrecognised field '${given}' (-o help lists the fields)`);
}

/** The field names a report shows: lvm2's -o rules over the defaults. */
export function selectFields(report: ReportName, options: string[]): string[] {
  let names: string[] = [...REPORTS[report].defaults];
  for (const arg of options) {
    const mode = arg.startsWith('+') ? '+' : arg.startsWith('-') ? '-' : '=';
    // The sign applies to the whole list: "-a,b" drops a and b.
    const list = (mode === '=' ? arg : arg.slice(1)).split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    if (list.length === 0) throw new UsageError(`empty field list '${arg}'`);
    const canonical = list.map((n) => lookup(report, n).def.name);
    if (mode === '=') names = canonical;
    else if (mode === '+') names.push(...canonical);
    else names = names.filter((n) => !canonical.includes(n));
  }
  return names;
}

/** Field help for `-o help`: one "name - heading" line per field the report knows. */
export function fieldHelp(report: ReportName): string {
  const lines: string[] = [];
  for (const c of CATALOGUE) {
    if (!KINDS[report].includes(c.kind)) continue;
    for (const d of c.defs) lines.push(`    ${d.name.padEnd(24)} - column "${d.heading}", ${d.type}`);
  }
  return lines.join('\n') + '\n';
}

function rawValue(f: Field, ctx: Context): FieldValue {
  const subject = ctx[f.kind];
  if (subject === undefined) return '';
  return (f.def.value as (s: unknown) => FieldValue)(subject);
}

function cell(v: FieldValue, type: FieldType, req: ReportRequest): string {
  if (type === 'binary' && req.binary) return v === '' ? '0' : '1';
  if (typeof v === 'object') return formatReportSize(v.bytes, req.units, req.suffix);
  return String(v);
}

function compare(a: FieldValue, b: FieldValue): number {
  const num = (v: FieldValue): number | undefined => (typeof v === 'object' ? v.bytes : typeof v === 'number' ? v : undefined);
  const x = num(a);
  const y = num(b);
  if (x !== undefined && y !== undefined) return x - y;
  if (x !== undefined) return 1; // blanks sort first
  if (y !== undefined) return -1;
  const s = String(a);
  const t = String(b);
  return s < t ? -1 : s > t ? 1 : 0;
}

/** Everything a report may be built from: the scan and the VGs to show. */
export interface ReportInput {
  scan: ScannedDevice[];
  vgs: VgHandle[];
  /** Include hidden LVs (lvs -a). */
  all: boolean;
  /** lvs VG/LV: only these LVs ("vg/lv"); every LV of the VGs when absent. */
  lvs?: ReadonlySet<string>;
  /** pvs IMG…: only these devices; every PV of the scan when absent. */
  pvs?: ReadonlySet<string>;
}

export function vgSubject(scan: ScannedDevice[], vg: VgModel, partial: boolean): VgSubject {
  const pvs = scan.flatMap((s) => (s.pv && vg.pvs.some((p) => p.id === s.pv!.label.pvId) ? [s.pv] : []));
  return { vg, row: vgRow(vg, partial), pvs };
}

/**
 * lvm2 reports the VG fields of a PV in no VG from its internal orphan VG: no name or uuid,
 * read-only ("r-----"), allocation policy "unknown", every count and size 0.
 */
const ORPHAN_VG: VgSubject = {
  vg: {
    name: '', id: '', seqno: 0, format: 'lvm2', status: [], flags: [], tags: [], systemId: undefined, lockType: undefined, lockArgs: undefined,
    extentSizeSectors: 0, maxLv: 0, maxPv: 0, allocationPolicy: 'unknown', metadataCopies: 0, pvs: [], lvs: [], extra: [],
  },
  row: { vg_name: '', pv_count: 0, lv_count: 0, snap_count: 0, vg_attr: 'r-----', vg_size: 0, vg_free: 0, vg_uuid: '', vg_seqno: 0, vg_extent_size: 0, vg_extent_count: 0, vg_free_count: 0 },
  pvs: [],
};

/** Every PV on the scan, with its VG's subject when the VG is among `vgs`. */
export function pvSubjects(scan: ScannedDevice[], vgs: VgSubject[]): PvSubject[] {
  const byName = new Map(pvRows(scan).map((r) => [r.pv_name, r]));
  const out: PvSubject[] = [];
  for (const s of scan) {
    if (!s.pv) continue;
    const vg = vgs.find((v) => v.vg.pvs.some((p) => p.id === s.pv!.label.pvId));
    out.push({ row: byName.get(s.dev.name)!, pv: s.pv, vg });
  }
  return out;
}

function contexts(report: ReportName, input: ReportInput, segments: boolean): Context[] {
  const vgs = input.vgs.map((h) => ({ h, subject: vgSubject(input.scan, h.vg, h.missing.length > 0) }));
  switch (report) {
    case 'pvs':
      return pvSubjects(input.scan, vgs.map((v) => v.subject))
        .filter((pv) => !input.pvs || input.pvs.has(pv.row.pv_name))
        .map((pv) => ({ pv, vg: pv.vg ?? ORPHAN_VG }));
    case 'vgs':
      return vgs.map((v) => ({ vg: v.subject }));
    case 'lvs':
    case 'segs': {
      const out: Context[] = [];
      for (const { h, subject } of vgs) {
        const pvName = (key: string): string => h.pvByKey.get(key)?.dev.name ?? key;
        for (const lv of h.vg.lvs) {
          if (!input.all && !lv.status.includes('VISIBLE')) continue;
          if (input.lvs && !input.lvs.has(`${h.vg.name}/${lv.name}`) && !input.lvs.has(h.vg.name)) continue;
          const lvs: LvSubject = { vg: subject, lv };
          if (!segments) out.push({ vg: subject, lv: lvs });
          else for (const seg of lv.segments) out.push({ vg: subject, lv: lvs, seg: { lv: lvs, seg, pvName } });
        }
      }
      return out;
    }
  }
}

export function buildReport(report: ReportName, input: ReportInput, req: ReportRequest): Report {
  const names = selectFields(report, req.options);
  const fields = names.map((n) => lookup(report, n));
  const sortArgs = req.sort.length ? req.sort.flatMap((s) => s.split(',')).filter((s) => s.length > 0) : [...REPORTS[report].sort];
  const sorts = sortArgs.map((s) => {
    const desc = s.startsWith('-');
    return { desc, field: lookup(report, s.replace(/^[+-]/, '')) };
  });
  // Segment fields (shown or sorted on) make lvs report one row per segment, as lvm2 does.
  const segments = report === 'segs' || (report === 'lvs' && [...fields, ...sorts.map((s) => s.field)].some((f) => f.kind === 'seg'));
  const ctxs = contexts(report, input, segments);
  const keyed = ctxs.map((ctx) => ({ ctx, keys: sorts.map((s) => rawValue(s.field, ctx)) }));
  keyed.sort((a, b) => {
    for (const [i, s] of sorts.entries()) {
      const c = compare(a.keys[i]!, b.keys[i]!);
      if (c !== 0) return s.desc ? -c : c;
    }
    return 0;
  });
  return {
    key: REPORTS[report].key,
    columns: fields.map((f) => ({ name: f.def.name, heading: f.def.heading, type: f.def.type })),
    rows: keyed.map(({ ctx }) => fields.map((f) => cell(rawValue(f, ctx), f.def.type, req))),
  };
}

/** lvm2's text report: "  " then the columns; aligned (numbers and sizes to the right) unless a separator is given without --aligned. */
export function renderText(r: Report, opts: { headings: boolean; separator?: string; aligned?: boolean }): string {
  const aligned = opts.separator === undefined || opts.aligned === true;
  const widths = r.columns.map((c, i) => Math.max(LVM2_COLUMN_WIDTHS.get(c.name) ?? 0, c.heading.length, ...r.rows.map((row) => row[i]!.length)));
  const out: string[] = [];
  const pad = (text: string, i: number, heading: boolean): string => {
    if (!aligned) return text;
    const right = !heading && r.columns[i]!.type !== 'string';
    return right ? text.padStart(widths[i]!) : text.padEnd(widths[i]!);
  };
  if (opts.headings) out.push(r.columns.map((c, i) => pad(c.heading, i, true)).join(opts.separator ?? ' '));
  for (const row of r.rows) out.push(row.map((v, i) => pad(v, i, false)).join(opts.separator ?? ' '));
  return out.map((l) => `  ${l}\n`).join('');
}

/** lvm2's `--reportformat json`: its exact layout, every value a string. */
export function renderJson(r: Report): string {
  const rows = r.rows.map((row) => `{${row.map((v, i) => `${JSON.stringify(r.columns[i]!.name)}:${JSON.stringify(v)}`).join(', ')}}`);
  const body = rows.map((row, i) => `                  ${row}${i < rows.length - 1 ? ',' : ''}\n`).join('');
  return `  {\n      "report": [\n          {\n              "${r.key}": [\n${body}              ]\n          }\n      ]\n  }\n`;
}
