// Model check of the grant rule (src/dlm/grant-rule.ts): every interleaving of the protocol's
// atomic steps (one sector write, or one sector read) for 2-3 nodes on 1-2 resources, with the
// real decide()/nextTicket(). The lockspace layout (version 2, src/format/lockspace.ts) is modelled
// too: a process is one lock of a node, a node's locks live in cells (sectors) of its column, a read
// step reads one whole cell of another node (every entry in it, whatever its resource: bucket
// sharing), a node sees its own locks from memory, and a lock may sit in its bucket's row or the
// overflow row (cell 0 or 1), chosen per request, so a re-lock can move between the two while a
// reader reads them one after the other. Checked in every reachable state: no two incompatible modes held at
// once on a resource; FIFO among new requests (a request whose doorway completed before another
// began is granted first); conversions ahead of new requests. Checked on the state graph: from
// every reachable state every script can still finish (no deadlock, no livelock trap), including
// when a node crashes at any step and is later fenced (its records are then ignored).

import test from 'ava';
import { compatible, isDownConversion, Mode, MODES, modeName } from '../src/dlm/compat-matrix.js';
import { decide, nextTicket, type LockView } from '../src/dlm/grant-rule.js';

type Op = { kind: 'lock'; res: number; mode: Mode; cell: number } | { kind: 'convert'; mode: Mode } | { kind: 'unlock' };

interface Rec {
  res: number; // -1 free
  state: 'free' | 'waiting' | 'converting' | 'granted';
  g: Mode | null;
  q: Mode | null;
  claim: boolean;
  ticket: number;
  /** Which of the node's cells of the window holds it: 0 = its bucket's row, 1 = the overflow row. */
  cell: number;
}

interface Proc {
  pc: number; // index of the current op
  phase: 'start' | 'doorway' | 'check' | 'done' | 'dead';
  readIdx: number; // next cell (of another node) we read in this pass
  snap: (Rec | null)[]; // records read so far in this pass, by process (null = not seen / own node)
  convertersAtCheck: number[]; // converters whose doorway was done when this check pass started
  pending: Rec | null; // a write decided but not yet done
  deadlocks: number;
}

interface State {
  recs: Rec[];
  procs: Proc[];
  fenced: boolean[];
  /** [a, b]: a's doorway (new request) finished before b's doorway began, same resource. */
  fifo: [number, number][];
}

// Indirection so the mutation test can swap the rule.
const decideImpl = { fn: decide as (me: LockView, others: readonly LockView[], opts?: { arriving?: boolean }) => ReturnType<typeof decide> };

const FREE: Rec = { res: -1, state: 'free', g: null, q: null, claim: false, ticket: 0, cell: 0 };

/** The node of each process (a node may run several locks); default: process n is node n. */
let nodeOf: (p: number) => number = (p) => p;
/** Cells per node in a window: 1 (no overflow in play) or 2 (bucket row and overflow row). */
let cellsInWindow = 1;

function view(p: number, r: Rec): LockView {
  return { nodeId: nodeOf(p), slot: p, state: r.state as LockView['state'], grantedMode: r.g, requestedMode: r.q, claim: r.claim, ticket: BigInt(r.ticket) };
}

/** The cells a pass of process p reads, in window order (row, then node): other nodes' only. */
function cellsToRead(st: State, p: number): [number, number][] {
  const nodes = [...new Set(st.recs.map((_, q) => nodeOf(q)))].sort((a, b) => a - b);
  const out: [number, number][] = [];
  for (let c = 0; c < cellsInWindow; c++) for (const n of nodes) if (n !== nodeOf(p)) out.push([n, c]);
  return out;
}

// Indirection so the layout mutation test can swap the read order.
const cellsToReadImpl = { fn: cellsToRead };

function othersOn(st: State, me: number, res: number, snap: (Rec | null)[]): LockView[] {
  const out: LockView[] = [];
  st.recs.forEach((cur, q) => {
    // Our own node's locks come from memory (the current state); other nodes' from the pass.
    const r = nodeOf(q) === nodeOf(me) ? cur : snap[q];
    if (q === me || r === null || r === undefined || r.state === 'free' || r.res !== res || st.fenced[q]) return;
    out.push(view(q, r));
  });
  return out;
}

function clone(st: State): State {
  return structuredClone(st);
}

function key(st: State): string {
  return JSON.stringify(st);
}

interface Config {
  scripts: Op[][];
  /** Node that may crash at any step (then be fenced), or -1. */
  crasher?: number;
  /** Node of each process (default: its own); processes of one node share its cells. */
  nodes?: number[];
}

interface Result {
  states: number;
  violations: string[];
  stuck: number;
  deadlocksReported: number;
}

function opOf(st: State, p: number, scripts: Op[][]): Op | undefined {
  return scripts[p]![st.procs[p]!.pc];
}

/** Successor states of st (one atomic step of one process, or a crash/fence event). */
function successors(st: State, cfg: Config, violations: Set<string>): State[] {
  const out: State[] = [];
  const n = st.procs.length;
  for (let p = 0; p < n; p++) {
    const pr = st.procs[p]!;
    if (pr.phase === 'done' || pr.phase === 'dead') continue;
    const next = step(st, p, cfg, violations);
    if (next) out.push(next);
    if (cfg.crasher === p) {
      const s = clone(st);
      s.procs[p]!.phase = 'dead';
      out.push(s);
    }
  }
  for (let p = 0; p < n; p++) {
    if (st.procs[p]!.phase === 'dead' && !st.fenced[p]) {
      const s = clone(st);
      s.fenced[p] = true;
      out.push(s);
    }
  }
  return out;
}

function beginPass(s: State, p: number, phase: 'doorway' | 'check'): void {
  const pr = s.procs[p]!;
  pr.phase = phase;
  pr.readIdx = 0;
  pr.snap = s.recs.map(() => null);
  if (phase === 'check') {
    const res = s.recs[p]!.res;
    pr.convertersAtCheck = s.recs.flatMap((r, n) => (n !== p && !s.fenced[n] && r.res === res && r.state === 'converting' && s.procs[n]!.phase !== 'doorway' ? [n] : []));
  }
}

function finishOp(s: State, p: number, scripts: Op[][]): void {
  const pr = s.procs[p]!;
  pr.pc++;
  pr.phase = pr.pc >= scripts[p]!.length ? 'done' : 'start';
  s.fifo = s.fifo.filter(([a, b]) => a !== p && b !== p);
}

function step(st: State, p: number, cfg: Config, violations: Set<string>): State | undefined {
  const s = clone(st);
  const pr = s.procs[p]!;
  const mine = s.recs[p]!;
  if (pr.pending !== null) {
    // The write decided in the previous step lands now (a separate atomic step).
    s.recs[p] = pr.pending;
    pr.pending = null;
    return s;
  }
  const op = opOf(s, p, cfg.scripts)!;
  if (pr.phase === 'start') {
    if (op.kind === 'unlock') {
      s.recs[p] = { ...FREE };
      finishOp(s, p, cfg.scripts);
      return s;
    }
    if (op.kind === 'convert' && mine.g !== null && isDownConversion(mine.g, op.mode)) {
      s.recs[p] = { ...mine, g: op.mode };
      finishOp(s, p, cfg.scripts);
      return s;
    }
    if (op.kind === 'lock') {
      // FIFO bookkeeping: every new request whose doorway is done (and not yet granted) when our
      // doorway BEGINS must be granted before us.
      for (let n = 0; n < s.recs.length; n++) {
        const r = s.recs[n]!;
        if (n !== p && !s.fenced[n] && r.res === op.res && r.state === 'waiting' && s.procs[n]!.phase === 'check') s.fifo.push([n, p]);
      }
    }
    beginPass(s, p, 'doorway');
    return s;
  }
  // Reading: one cell of another node per step: every entry that is in that cell now.
  const cells = cellsToReadImpl.fn(s, p);
  if (pr.readIdx < cells.length) {
    const [n, c] = cells[pr.readIdx]!;
    s.recs.forEach((r, q) => {
      if (nodeOf(q) === n && r.state !== 'free' && r.cell === c) pr.snap[q] = { ...r };
    });
    pr.readIdx++;
    if (pr.readIdx < cells.length) return s;
  }
  const res = op.kind === 'lock' ? op.res : mine.res;
  const others = othersOn(s, p, res, pr.snap);
  if (pr.phase === 'doorway') {
    const ticket = Number(nextTicket(others));
    const rec: Rec =
      op.kind === 'lock'
        ? { res, state: 'waiting', g: null, q: op.mode, claim: false, ticket, cell: op.cell }
        : { res, state: 'converting', g: mine.g, q: (op as { mode: Mode }).mode, claim: false, ticket, cell: mine.cell };
    const d = decideImpl.fn(view(p, rec), others, { arriving: true });
    rec.claim = d.action === 'claim';
    s.recs[p] = rec;
    beginPass(s, p, 'check');
    return s;
  }
  // phase === 'check': decide on the completed read.
  const me = view(p, mine);
  const d = decideImpl.fn(me, others);
  switch (d.action) {
    case 'grant': {
      for (const [a, b] of s.fifo) {
        if (b === p && s.recs[a]!.state === 'waiting' && !s.fenced[a] && s.procs[a]!.phase !== 'dead') violations.add(`FIFO: node ${p} granted before node ${a} (${JSON.stringify(st.recs)})`);
      }
      if (mine.state === 'waiting') {
        for (const c of pr.convertersAtCheck) {
          if (s.recs[c]!.state === 'converting' && !s.fenced[c]) violations.add(`conversion order: new request of node ${p} granted ahead of converting node ${c}`);
        }
      }
      s.recs[p] = { res, state: 'granted', g: mine.q, q: null, claim: false, ticket: mine.ticket, cell: mine.cell };
      finishOp(s, p, cfg.scripts);
      return s;
    }
    case 'claim':
      s.recs[p] = { ...mine, claim: true };
      beginPass(s, p, 'check');
      return s;
    case 'wait':
      if (d.dropClaim) s.recs[p] = { ...mine, claim: false };
      beginPass(s, p, 'check');
      return s;
    case 'deadlock':
      pr.deadlocks++;
      s.recs[p] = { res, state: 'granted', g: mine.g, q: null, claim: false, ticket: mine.ticket, cell: mine.cell };
      finishOp(s, p, cfg.scripts);
      return s;
  }
}

function checkSafety(st: State, violations: Set<string>): void {
  const n = st.recs.length;
  for (let a = 0; a < n; a++) {
    for (let b = a + 1; b < n; b++) {
      const ra = st.recs[a]!;
      const rb = st.recs[b]!;
      if (st.fenced[a] || st.fenced[b] || ra.res < 0 || ra.res !== rb.res) continue;
      if (ra.g !== null && rb.g !== null && !compatible(ra.g, rb.g)) {
        violations.add(`SAFETY: nodes ${a} (${modeName(ra.g)}) and ${b} (${modeName(rb.g)}) both hold resource ${ra.res}`);
      }
    }
  }
}

function explore(cfg: Config, maxStates = 2_000_000): Result {
  const n = cfg.scripts.length;
  const nodes = cfg.nodes;
  nodeOf = nodes === undefined ? (p) => p : (p) => nodes[p]!;
  cellsInWindow = cfg.scripts.some((sc) => sc.some((op) => op.kind === 'lock' && op.cell > 0)) ? 2 : 1;
  const init: State = {
    recs: Array.from({ length: n }, () => ({ ...FREE })),
    procs: Array.from({ length: n }, () => ({ pc: 0, phase: 'start', readIdx: 0, snap: [], convertersAtCheck: [], pending: null, deadlocks: 0 }) as Proc),
    fenced: Array.from({ length: n }, () => false),
    fifo: [],
  };
  const violations = new Set<string>();
  const ids = new Map<string, number>();
  const states: State[] = [];
  const edges: number[][] = [];
  const stack: number[] = [];
  const add = (s: State): number => {
    const k = key(s);
    let id = ids.get(k);
    if (id === undefined) {
      id = states.length;
      ids.set(k, id);
      states.push(s);
      edges.push([]);
      stack.push(id);
      checkSafety(s, violations);
    }
    return id;
  };
  add(init);
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (states.length > maxStates) throw new Error(`state space above ${maxStates}`);
    for (const s2 of successors(states[id]!, cfg, violations)) edges[id]!.push(add(s2));
  }
  // Progress: every state must reach a final state (all processes done or dead+fenced).
  const final = (s: State) => s.procs.every((p, i) => p.phase === 'done' || (p.phase === 'dead' && s.fenced[i]));
  const rev: number[][] = states.map(() => []);
  edges.forEach((es, from) => es.forEach((to) => rev[to]!.push(from)));
  const canFinish = new Uint8Array(states.length);
  const queue: number[] = [];
  states.forEach((s, i) => {
    if (final(s)) {
      canFinish[i] = 1;
      queue.push(i);
    }
  });
  while (queue.length > 0) {
    const i = queue.pop()!;
    for (const j of rev[i]!) if (!canFinish[j]) {
      canFinish[j] = 1;
      queue.push(j);
    }
  }
  let stuck = 0;
  canFinish.forEach((c) => (stuck += c ? 0 : 1));
  if (stuck > 0) {
    const i = canFinish.indexOf(0);
    violations.add(`PROGRESS: ${stuck} states cannot finish, e.g. ${JSON.stringify(states[i]!.recs)} ${JSON.stringify(states[i]!.procs.map((p) => [p.pc, p.phase]))}`);
  }
  let deadlocksReported = 0;
  for (const s of states) if (final(s)) deadlocksReported = Math.max(deadlocksReported, s.procs.reduce((a, p) => a + p.deadlocks, 0));
  return { states: states.length, violations: [...violations], stuck, deadlocksReported };
}

const L = (mode: Mode, res = 0, cell = 0): Op => ({ kind: 'lock', res, mode, cell });
const C = (mode: Mode): Op => ({ kind: 'convert', mode });
const U: Op = { kind: 'unlock' };

test('2 nodes, every pair of modes: lock, unlock, twice', (t) => {
  let total = 0;
  for (const a of MODES) {
    for (const b of MODES) {
      const r = explore({ scripts: [[L(a), U, L(a), U], [L(b), U, L(b), U]] });
      total += r.states;
      t.deepEqual(r.violations, [], `${modeName(a)} vs ${modeName(b)}`);
    }
  }
  t.log(`${total} states explored over 36 mode pairs`);
});

test('3 nodes, EX/PR/CR contention on one resource', (t) => {
  const r = explore({ scripts: [[L(Mode.EX), U], [L(Mode.PR), U], [L(Mode.CR), U]] });
  t.log(`${r.states} states`);
  t.deepEqual(r.violations, []);
});

test('3 nodes, PW/CW/PR (incomparable modes) with a re-lock', (t) => {
  const r = explore({ scripts: [[L(Mode.PW), U], [L(Mode.CW), U, L(Mode.CW), U], [L(Mode.PR), U]] });
  t.log(`${r.states} states`);
  t.deepEqual(r.violations, []);
});

test('2 nodes, every up- and down-conversion pair against a concurrent request', (t) => {
  let total = 0;
  for (const from of MODES) {
    for (const to of MODES) {
      if (from === to) continue;
      for (const other of [Mode.CR, Mode.PR, Mode.EX]) {
        const r = explore({ scripts: [[L(from), C(to), U], [L(other), U]] });
        total += r.states;
        t.deepEqual(r.violations, [], `${modeName(from)}->${modeName(to)} vs ${modeName(other)}`);
      }
    }
  }
  t.log(`${total} states explored`);
});

test('conversion deadlock (PR->EX twice) is reported, never hung in', (t) => {
  const r = explore({ scripts: [[L(Mode.PR), C(Mode.EX), U], [L(Mode.PR), C(Mode.EX), U]] });
  t.log(`${r.states} states; ${r.deadlocksReported} conversion deadlocks reported on some path`);
  t.deepEqual(r.violations, []);
  t.true(r.deadlocksReported >= 1);
});

test('conversions ahead of new requests: PR->EX converter and an EX waiter', (t) => {
  const r = explore({ scripts: [[L(Mode.PR), C(Mode.EX), U], [L(Mode.EX), U], [L(Mode.PR), U]] });
  t.log(`${r.states} states`);
  t.deepEqual(r.violations, []);
});

test('2 resources, 2 nodes moving between them', (t) => {
  const r = explore({ scripts: [[L(Mode.EX, 0), U, L(Mode.EX, 1), U], [L(Mode.EX, 1), U, L(Mode.PR, 0), U]] });
  t.log(`${r.states} states`);
  t.deepEqual(r.violations, []);
});

test('a node crashes at any step; after it is fenced the others finish, and never overlap it before', (t) => {
  for (const [m, scripts] of [
    [Mode.NL, [[L(Mode.NL), C(Mode.EX), U], [L(Mode.EX), U]]],
    [Mode.EX, [[L(Mode.EX), U], [L(Mode.PR), U], [L(Mode.CR), U]]],
    [Mode.PR, [[L(Mode.PR), C(Mode.EX), U], [L(Mode.PR), C(Mode.PW), U]]],
  ] as [Mode, Op[][]][]) {
    const r = explore({ scripts, crasher: 0 });
    t.log(`crasher holding ${modeName(m)}: ${r.states} states`);
    t.deepEqual(r.violations, []);
  }
});

test('the checker catches a broken rule (grant without the CLAIM step)', (t) => {
  // Mutation test: the same exploration with a rule that skips the CLAIM step must find a
  // safety violation, so the model check above is not vacuous.
  const broken = (me: LockView, others: readonly LockView[], opts?: { arriving?: boolean }) => {
    const d = decide(me, others, opts);
    return d.action === 'claim' ? ({ action: 'grant' } as const) : d;
  };
  const saved = decideImpl.fn;
  decideImpl.fn = broken;
  try {
    const r = exploreWith({ scripts: [[L(Mode.PR), C(Mode.EX), U], [L(Mode.PR), U]] });
    t.true(r.violations.some((v) => v.startsWith('SAFETY')), r.violations.join('\n'));
  } finally {
    decideImpl.fn = saved;
  }
});

test('bucket sharing: two locks of one node in one cell (different resources) against a third lock', (t) => {
  // Processes 0 and 1 are locks of node 0, in the same cell; process 2 is node 1. A read of node
  // 0's cell returns both entries at once; node 0 decides with its own entries from memory.
  const r = explore({ scripts: [[L(Mode.EX, 0), U], [L(Mode.EX, 1), U, L(Mode.PR, 0), U], [L(Mode.EX, 1), U, L(Mode.EX, 0), U]], nodes: [0, 0, 1] });
  t.log(`${r.states} states`);
  t.deepEqual(r.violations, []);
});

test('bucket sharing: two locks of one node on the same resource, in different cells, against another node', (t) => {
  const r = explore({ scripts: [[L(Mode.PR, 0, 0), C(Mode.EX), U], [L(Mode.PR, 0, 1), U], [L(Mode.EX, 0, 0), U]], nodes: [0, 0, 1] });
  t.log(`${r.states} states`);
  t.deepEqual(r.violations, []);
});

test('overflow: a re-lock moves between the bucket row and the overflow row while the other node reads them one by one', (t) => {
  for (const [a, b] of [
    [Mode.EX, Mode.EX],
    [Mode.PR, Mode.EX],
    [Mode.PW, Mode.CW],
  ] as [Mode, Mode][]) {
    const r = explore({ scripts: [[L(a, 0, 1), U, L(a, 0, 0), U], [L(b, 0, 0), U, L(b, 0, 1), U]] });
    t.log(`${modeName(a)}/${modeName(b)}: ${r.states} states`);
    t.deepEqual(r.violations, [], `${modeName(a)} vs ${modeName(b)}`);
  }
});

test('overflow: a node crashes holding a lock in the overflow row; after its fence the other finishes', (t) => {
  const r = explore({ scripts: [[L(Mode.EX, 0, 1), U], [L(Mode.EX, 0, 0), U, L(Mode.PR, 0, 1), U]], crasher: 0 });
  t.log(`${r.states} states`);
  t.deepEqual(r.violations, []);
});

test('the checker sees a reader that skips the overflow row (a broken layout rule)', (t) => {
  // Mutation test of the layout: readers that read only the bucket row miss a lock that overflowed;
  // two EX holders must then be found.
  const saved = cellsToReadImpl.fn;
  cellsToReadImpl.fn = (st, p) => saved(st, p).filter(([, c]) => c === 0);
  try {
    const r = explore({ scripts: [[L(Mode.EX, 0, 1), U], [L(Mode.EX, 0, 0), U]] });
    t.true(r.violations.some((v) => v.startsWith('SAFETY')), r.violations.join('\n'));
  } finally {
    cellsToReadImpl.fn = saved;
  }
});

function exploreWith(cfg: Config): Result {
  return explore(cfg);
}
