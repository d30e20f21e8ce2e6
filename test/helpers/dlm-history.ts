// The history checker of the multi-process lock manager tests (test/dlm-multiprocess.test.ts):
// reads the JSON-lines histories the workers (dlm-worker.ts) wrote and reports every violation of
// mutual exclusion, completeness, FIFO and value-block freshness. Kept separate so a failing run's
// histories can be re-checked by hand: node dist/test/helpers/dlm-history.js DIR [crashed,...]

import fs from 'node:fs';
import path from 'node:path';
import { compatible, isDownConversion, parseMode, type Mode } from '../../src/dlm/compat-matrix.js';

export interface Ev {
  t: bigint;
  node: number;
  ev: string;
  id?: string;
  res?: string;
  mode?: string;
  from?: string;
  kind?: string;
  noqueue?: boolean;
  code?: string;
  lvb?: string;
  lvbValid?: boolean;
  lvbWrite?: string | null;
  decidedT?: string;
  victim?: number;
}

export function readHistory(dir: string): Ev[] {
  const out: Ev[] = [];
  for (const f of fs.readdirSync(dir).filter((x) => x.startsWith('h-'))) {
    for (const line of fs.readFileSync(path.join(dir, f), 'utf8').split('\n')) {
      if (!line.trim()) continue;
      let e: Ev & { t: string };
      try {
        e = JSON.parse(line) as Ev & { t: string };
      } catch {
        continue; // a line cut by SIGKILL
      }
      out.push({ ...e, t: BigInt(e.t) });
    }
  }
  return out.sort((a, b) => (a.t < b.t ? -1 : a.t > b.t ? 1 : 0));
}

interface Interval {
  id: string;
  node: number;
  res: string;
  mode: Mode;
  start: bigint;
  end: bigint | null;
}

export interface Report {
  violations: string[];
  grants: number;
  conversions: number;
  failures: Record<string, number>;
  lvbReads: number;
  lvbInvalid: number;
  overlapsChecked: number;
}

export const mode = (s: string | undefined): Mode => {
  const m = parseMode(s ?? '');
  if (m === undefined) throw new Error(`bad mode ${s}`);
  return m;
};

export function checkHistory(events: Ev[], crashed: Set<number>): Report {
  const v: string[] = [];
  const r: Report = { violations: v, grants: 0, conversions: 0, failures: {}, lvbReads: 0, lvbInvalid: 0, overlapsChecked: 0 };
  const intervals: Interval[] = [];
  const open = new Map<string, Interval>();
  const requests = new Map<string, Ev>();
  const queued = new Map<string, bigint>();
  const decided = new Map<string, bigint>();
  const failedAt = new Map<string, bigint>();
  const grantedAt = new Map<string, bigint>();
  const convertReq = new Map<string, Ev>();
  const fenceSeen = new Map<string, bigint>(); // `${observer}:${victim}` -> t
  const writes: { res: string; value: string; start: bigint; end: bigint | null }[] = [];
  const openWrites = new Map<string, (typeof writes)[number]>();
  const reads: { res: string; value: string; valid: boolean; reqT: bigint; grantT: bigint; node: number }[] = [];
  const deathOfWriterBefore = (res: string, t: bigint) =>
    intervals.some((i) => crashed.has(i.node) && i.res === res && (i.mode === 4 || i.mode === 5) && i.start < t);

  const openI = (e: Ev, m: Mode) => {
    const i: Interval = { id: e.id!, node: e.node, res: e.res!, mode: m, start: e.t, end: null };
    intervals.push(i);
    open.set(e.id!, i);
  };
  const closeI = (e: Ev) => {
    const i = open.get(e.id!);
    if (i === undefined) v.push(`${e.ev} of ${e.id} without a held lock`);
    else i.end = e.t;
    open.delete(e.id!);
  };
  const startWrite = (e: Ev) => {
    if (e.lvbWrite) {
      const w = { res: e.res!, value: e.lvbWrite, start: e.t, end: null };
      writes.push(w);
      openWrites.set(e.id!, w);
    }
  };
  const endWrite = (e: Ev) => {
    const w = openWrites.get(e.id!);
    if (w) w.end = e.t;
    openWrites.delete(e.id!);
  };

  for (const e of events) {
    switch (e.ev) {
      case 'request':
        requests.set(e.id!, e);
        break;
      case 'queued':
        queued.set(e.id!, e.t);
        break;
      case 'granted':
        r.grants++;
        grantedAt.set(e.id!, e.t);
        if (e.decidedT) decided.set(e.id!, BigInt(e.decidedT));
        openI(e, mode(e.mode));
        reads.push({ res: e.res!, value: e.lvb ?? '', valid: e.lvbValid ?? true, reqT: requests.get(e.id!)?.t ?? e.t, grantT: e.t, node: e.node });
        break;
      case 'failed':
        failedAt.set(e.id!, e.t);
        r.failures[e.code!] = (r.failures[e.code!] ?? 0) + 1;
        if (e.code === 'EAGAIN' && !requests.get(e.id!)?.noqueue) v.push(`EAGAIN without NOQUEUE for ${e.id}`);
        // A fenced node's requests fail with EFENCED: allowed only for the crashed (killed, stalled, fenced).
        if (!['ETIMEDOUT', 'EAGAIN'].includes(e.code!) && !(e.code === 'EFENCED' && crashed.has(e.node))) v.push(`request ${e.id} failed with ${e.code}`);
        break;
      case 'convert-request': {
        convertReq.set(e.id!, e);
        const from = mode(e.from);
        const to = mode(e.mode);
        if (isDownConversion(from, to)) {
          // Recorded at once: the weaker mode is covered by the stronger one until the write.
          closeI(e);
          openI(e, to);
        }
        startWrite(e);
        break;
      }
      case 'converted': {
        r.conversions++;
        const req = convertReq.get(e.id!)!;
        endWrite(e);
        if (!isDownConversion(mode(e.from), mode(e.mode))) {
          // The old mode ends when the grant is written, which is after decidedT; the new one
          // starts before this event. Recording [.., decidedT] and [t, ..] keeps every recorded
          // hold inside the real one, so a recorded overlap is a real one.
          closeI({ ...e, t: e.decidedT ? BigInt(e.decidedT) : e.t });
          openI(e, mode(e.mode));
          reads.push({ res: e.res!, value: e.lvb ?? '', valid: e.lvbValid ?? true, reqT: req.t, grantT: e.t, node: e.node });
        }
        convertReq.delete(e.id!);
        break;
      }
      case 'convert-failed':
        r.failures[`convert ${e.code}`] = (r.failures[`convert ${e.code}`] ?? 0) + 1;
        if (!['ETIMEDOUT', 'EDEADLK'].includes(e.code!)) v.push(`conversion of ${e.id} failed with ${e.code}`);
        convertReq.delete(e.id!);
        break;
      case 'release-start':
        closeI(e);
        startWrite(e);
        break;
      case 'released':
        endWrite(e);
        break;
      case 'release-refused':
        endWrite(e);
        break;
      case 'fenced':
        if (!fenceSeen.has(`${e.node}:${e.victim}`)) fenceSeen.set(`${e.node}:${e.victim}`, e.t);
        break;
    }
  }

  // Unfinished business is allowed only for processes that were killed or stalled.
  for (const [id, e] of requests) if (!grantedAt.has(id) && !failedAt.has(id) && !crashed.has(e.node)) v.push(`request ${id} never answered`);
  for (const [id, e] of convertReq) if (!crashed.has(e.node)) v.push(`conversion of ${id} never answered`);
  for (const i of open.values()) if (!crashed.has(i.node)) v.push(`lock ${i.id} never released`);

  // Mutual exclusion.
  const byRes = new Map<string, Interval[]>();
  for (const i of intervals) {
    const list = byRes.get(i.res);
    if (list === undefined) byRes.set(i.res, [i]);
    else list.push(i);
  }
  for (const list of byRes.values()) {
    for (let a = 0; a < list.length; a++) {
      for (let b = a + 1; b < list.length; b++) {
        const x = list[a]!;
        const y = list[b]!;
        if (x.node === y.node || compatible(x.mode, y.mode)) continue;
        r.overlapsChecked++;
        for (const [p, q] of [[x, y], [y, x]] as [Interval, Interval][]) {
          // p's hold without an end: its node died or stalled; q may start only after q's node saw it fenced.
          if (p.end === null && p.start <= q.start) {
            const f = fenceSeen.get(`${q.node}:${p.node}`);
            if (f === undefined || q.start < f) v.push(`SAFETY: ${q.id} (node ${q.node}) got ${q.mode} on ${q.res} while dead/stalled node ${p.node} held ${p.mode} and before node ${q.node} saw it fenced`);
          }
        }
        const xe = x.end ?? BigInt(Number.MAX_SAFE_INTEGER) * 1000n;
        const ye = y.end ?? BigInt(Number.MAX_SAFE_INTEGER) * 1000n;
        if (x.end !== null && y.end !== null && x.start < ye && y.start < xe) {
          v.push(`SAFETY: ${x.id} (node ${x.node}, mode ${x.mode}) and ${y.id} (node ${y.node}, mode ${y.mode}) overlap on ${x.res}`);
        }
      }
    }
  }

  // FIFO among new (queued) requests on a resource.
  const newReqs = [...requests.values()].filter((e) => !e.noqueue);
  for (const b of newReqs) {
    const bGranted = grantedAt.get(b.id!);
    if (bGranted === undefined) continue;
    for (const a of newReqs) {
      if (a === b || a.res !== b.res || a.node === b.node) continue;
      const aQueued = queued.get(a.id!);
      if (aQueued === undefined || aQueued >= b.t) continue;
      const aDecided = decided.get(a.id!);
      const aFailed = failedAt.get(a.id!);
      if (aDecided !== undefined && aDecided < bGranted) continue;
      if (aFailed !== undefined && aFailed < bGranted) continue;
      if (crashed.has(a.node)) continue;
      v.push(`FIFO: ${a.id} queued before ${b.id} was requested, but ${b.id} was granted first`);
    }
  }

  // Value blocks.
  for (const rd of reads) {
    r.lvbReads++;
    if (!rd.valid) {
      r.lvbInvalid++;
      if (!deathOfWriterBefore(rd.res, rd.grantT)) v.push(`LVB: read of ${rd.res} at ${rd.grantT} said invalid but no PW/EX holder had died`);
      continue;
    }
    // Value writers hold PW/EX, so writes are serialized; their order is the order of their
    // starts (a writer may log its end late, after the next writer has already written).
    const done = writes.filter((w) => w.res === rd.res && w.end !== null && w.end < rd.reqT).sort((p, q) => (p.start < q.start ? -1 : 1));
    const latest = done.length ? done[done.length - 1]!.value : '';
    const concurrent = writes.filter((w) => w.res === rd.res && w.start < rd.grantT && (w.end === null || w.end >= rd.reqT)).map((w) => w.value);
    if (rd.value !== latest && !concurrent.includes(rd.value)) v.push(`LVB: node ${rd.node} read '${rd.value}' on ${rd.res}; latest written before its request was '${latest}'${concurrent.length ? `, concurrent: ${concurrent.join(',')}` : ''}`);
  }
  return r;
}


export function summary(r: Report): string {
  return `${r.grants} grants, ${r.conversions} conversions, failures ${JSON.stringify(r.failures)}, ${r.lvbReads} value-block reads (${r.lvbInvalid} invalid), ${r.overlapsChecked} incompatible pairs checked`;
}

if (process.argv[1]?.endsWith('dlm-history.js') && process.argv[2]) {
  const crashed = new Set((process.argv[3] ?? '').split(',').filter(Boolean).map(Number));
  const r = checkHistory(readHistory(process.argv[2]), crashed);
  console.log(summary(r));
  for (const v of r.violations) console.log(v);
}
