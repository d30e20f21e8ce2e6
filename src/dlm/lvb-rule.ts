// Which value block a grant reads: a pure function of every node's value-block records and of the
// lock records of fenced incarnations. docs/lockspace.md, "Value blocks".
//
// Each node writes only its own value-block records, one per resource. Values are ordered by a
// sequence number: a PW/EX holder (the only possible writer, reference/locking.md §2.4) writes
// seq = (the sequence current when it was granted, or its own last write) + 1, so the newest value
// has the largest seq. A value is INVALID when an invalidation covers its seq:
//   * a lock record of a FENCED incarnation that held PW or EX on the resource: it may have changed
//     the protected data without writing the value, so every value up to the seq current at its
//     grant is suspect (DLM: VALNOTVALID after purging a dead PW/EX holder, §2.4);
//   * an invalidation marker persisted in a value-block record (a rejoining node converts the
//     records of its previous incarnation into markers before clearing them; IVVALBLK on unlock).
// A later write by a new PW/EX holder has a larger seq and makes the value valid again.

import { writesLvb, type Mode } from './compat-matrix.js';

export interface LvbView {
  valueSeq: bigint | null;
  value: Buffer;
  invalidSeq: bigint | null;
}

export interface FencedHold {
  grantedMode: Mode;
  lvbSeqAtGrant: bigint;
}

export interface LvbState {
  /** Sequence of the newest value (0 = never written: the value block is zeros). */
  valueSeq: bigint;
  value: Buffer;
  valid: boolean;
  /** The sequence a new grant records: max(valueSeq, every invalidation). */
  currentSeq: bigint;
}

export function resolveLvb(records: readonly LvbView[], fencedHolds: readonly FencedHold[], lvbLenBytes: number): LvbState {
  let valueSeq = 0n;
  // Pool-backed (allocUnsafe + fill): one grant allocates no ArrayBuffer of its own.
  let value: Buffer = Buffer.allocUnsafe(lvbLenBytes).fill(0);
  let invalidMax: bigint | null = null;
  for (const r of records) {
    if (r.valueSeq !== null && r.valueSeq > valueSeq) {
      valueSeq = r.valueSeq;
      value = r.value;
    }
    if (r.invalidSeq !== null && (invalidMax === null || r.invalidSeq > invalidMax)) invalidMax = r.invalidSeq;
  }
  for (const h of fencedHolds) {
    if (!writesLvb(h.grantedMode)) continue;
    if (invalidMax === null || h.lvbSeqAtGrant > invalidMax) invalidMax = h.lvbSeqAtGrant;
  }
  const valid = invalidMax === null || invalidMax < valueSeq;
  const currentSeq = invalidMax !== null && invalidMax > valueSeq ? invalidMax : valueSeq;
  return { valueSeq, value: Buffer.from(value), valid, currentSeq };
}
