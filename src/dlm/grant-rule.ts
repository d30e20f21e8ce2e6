// The grant rule: a pure function of what every node wrote, by which each requester decides for
// itself whether it may take its lock. docs/lockspace.md gives the argument; test/dlm-grant-rule
// model-checks it on small configurations (every interleaving of sector reads and writes).
//
// The rule in words. Every request (new lock or up-conversion) first passes a doorway: it reads
// every record on the resource and writes its own record with ticket = 1 + the largest ticket it
// saw (Lamport's bakery), which fixes its queue position. Queue order: converting locks before
// waiting ones (DLM: conversions ahead of new requests), then by (ticket, node id, slot).
//
// A request then loops on "read every record, decide":
//   * in place: a converting lock that conflicts with no claimed mode (below) and has CLAIM set is
//     granted; on arrival (its doorway) it may set CLAIM even behind other conversions (DLM: a
//     conversion compatible on arrival is granted in place unless QUECVT).
//   * deadlock: a converting lock that is behind another converting lock whose requested mode is
//     incompatible with OUR granted mode can never be granted (the one ahead waits for us, we wait
//     for it): we cancel our conversion and report EDEADLK (DLM: §2.2 "conversion deadlock").
//   * queue: a converting lock may go only when no converting lock is ahead of it; a waiting lock
//     only when no lock is converting and no waiting lock is ahead of it (strict FIFO, §2.2).
//   * conflicts: every other record's CLAIMED modes: its granted mode (granted or converting), and
//     its requested mode when it has the CLAIM flag set.
//   * a conflict with the CLAIM of a lock ahead of us, or a failed queue test: drop our CLAIM, wait.
//   * otherwise (we are at the head of the queue): without CLAIM, set it (write) and decide again
//     after a fresh read; with CLAIM and no conflict at all, we are granted; with CLAIM and a
//     conflict (a held mode, or a claim of a lock behind us), wait, keeping our CLAIM.
//
// Why this is safe (mutual exclusion) whatever the queue rules: a lock is granted only on a read,
// made after its own CLAIM was written, that saw no conflicting claim; its claim then stays on disk
// without a gap (CLAIM, then granted mode) until it is released. If two incompatible locks were
// both granted, each wrote its claim before its deciding read, so the later of the two reads comes
// after both claims were written, and that reader saw the other's claim: contradiction. Single-writer
// sectors suffice; no read-modify-write, no multi-writer sector.
// Why it makes progress: at most one lock per resource passes the queue test in a consistent view;
// a claimant that conflicts with a claim ahead of it withdraws, and one that conflicts with a claim
// behind it keeps its claim and waits for that one to withdraw.

import { compatible, type Mode } from './compat-matrix.js';

export type ReqState = 'waiting' | 'converting' | 'granted';

/** What the rule needs of one lock record (already filtered: same resource, live, not free). */
export interface LockView {
  nodeId: number;
  slot: number;
  state: ReqState;
  grantedMode: Mode | null;
  requestedMode: Mode | null;
  claim: boolean;
  ticket: bigint;
}

export type Decision =
  | { action: 'grant' }
  | { action: 'claim' }
  | { action: 'wait'; dropClaim: boolean; blockers: LockView[] }
  | { action: 'deadlock'; with: LockView };

/** Queue order: converting before waiting, then ticket, node, slot. Granted locks are not queued. */
export function precedes(a: LockView, b: LockView): boolean {
  const ca = a.state === 'converting' ? 0 : 1;
  const cb = b.state === 'converting' ? 0 : 1;
  if (ca !== cb) return ca < cb;
  if (a.ticket !== b.ticket) return a.ticket < b.ticket;
  if (a.nodeId !== b.nodeId) return a.nodeId < b.nodeId;
  return a.slot < b.slot;
}

export function sameLock(a: LockView, b: LockView): boolean {
  return a.nodeId === b.nodeId && a.slot === b.slot;
}

/** The ticket a request takes at its doorway: one more than every ticket on the resource. */
export function nextTicket(others: readonly LockView[]): bigint {
  let max = 0n;
  for (const o of others) if (o.ticket > max) max = o.ticket;
  return max + 1n;
}

/**
 * Decides for `me` (waiting or converting) given every OTHER live record on the same resource.
 * Pure; the caller acts on the decision (writes its own record) and decides again after a re-read.
 */
export function decide(me: LockView, others: readonly LockView[], opts: { arriving?: boolean } = {}): Decision {
  if (me.state === 'granted' || me.requestedMode === null) throw new Error('decide() is for waiting or converting locks');
  const want = me.requestedMode;
  if (me.state === 'converting' && noConflict(want, me, others)) {
    // DLM (§2.2, no QUECVT): a conversion that is compatible when it arrives is granted in place,
    // ahead of queued conversions. It claims at its doorway; with CLAIM and still no conflict on the
    // next read it is granted. (A converter behind the head gets CLAIM only on arrival.)
    if (me.claim) return { action: 'grant' };
    if (opts.arriving) return { action: 'claim' };
  }
  let queueOk = true;
  for (const o of others) {
    if (sameLock(o, me)) continue;
    if (o.state === 'granted') continue;
    if (me.state === 'converting') {
      if (o.state === 'converting' && precedes(o, me)) {
        if (o.requestedMode !== null && me.grantedMode !== null && !compatible(o.requestedMode, me.grantedMode)) {
          return { action: 'deadlock', with: o };
        }
        queueOk = false;
      }
    } else if (o.state === 'converting' || precedes(o, me)) {
      queueOk = false;
    }
  }
  const blockers: LockView[] = [];
  let claimAhead = false;
  for (const o of others) {
    if (sameLock(o, me)) continue;
    let conflict = false;
    if (o.grantedMode !== null && !compatible(want, o.grantedMode)) conflict = true;
    if (o.claim && o.requestedMode !== null && !compatible(want, o.requestedMode)) {
      conflict = true;
      if (o.state !== 'granted' && precedes(o, me)) claimAhead = true;
    }
    if (conflict) blockers.push(o);
  }
  if (!queueOk) return { action: 'wait', dropClaim: me.claim, blockers };
  if (claimAhead) return { action: 'wait', dropClaim: me.claim, blockers };
  // At the head of the queue we claim at once, even while held modes still block us: the claim
  // only restricts others (all behind us), and the release we wait for then lets us grant on the
  // very next read instead of claiming first (one round trip less per hand-off).
  if (!me.claim) return { action: 'claim' };
  if (blockers.length > 0) return { action: 'wait', dropClaim: false, blockers };
  return { action: 'grant' };
}

function noConflict(want: Mode, me: LockView, others: readonly LockView[]): boolean {
  for (const o of others) {
    if (sameLock(o, me)) continue;
    if (o.grantedMode !== null && !compatible(want, o.grantedMode)) return false;
    if (o.claim && o.requestedMode !== null && !compatible(want, o.requestedMode)) return false;
  }
  return true;
}

/**
 * Blocking notification for a granted (or converting) lock: the mode of the first queued lock
 * (queue order) that our held mode blocks, or null. DLM sends the blocked lock's requested mode.
 */
export function blockedMode(me: LockView, others: readonly LockView[]): Mode | null {
  if (me.grantedMode === null) return null;
  let first: LockView | undefined;
  for (const o of others) {
    if (sameLock(o, me) || o.state === 'granted' || o.requestedMode === null) continue;
    if (compatible(o.requestedMode, me.grantedMode)) continue;
    if (me.state === 'converting' && !precedes(o, me)) continue; // it waits for our conversion anyway
    if (first === undefined || precedes(o, first)) first = o;
  }
  return first?.requestedMode ?? null;
}
