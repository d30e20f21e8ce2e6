// The six Linux DLM lock modes, their compatibility matrix and the conversion classes derived
// from it: the one place sanbox writes them down. Facts: reference/locking.md §2.1-2.4
// (include/uapi/linux/dlmconstants.h values, fs/dlm/lock.c's matrix, the LVB direction table).

/** Mode numbers are the kernel's (dlmconstants.h); they are also what the lockspace records store. */
export enum Mode {
  NL = 0,
  CR = 1,
  CW = 2,
  PR = 3,
  PW = 4,
  EX = 5,
}

export const MODES: readonly Mode[] = [Mode.NL, Mode.CR, Mode.CW, Mode.PR, Mode.PW, Mode.EX];
export const MODE_NAMES: readonly string[] = ['NL', 'CR', 'CW', 'PR', 'PW', 'EX'];

export function modeName(mode: Mode): string {
  return MODE_NAMES[mode] ?? `?${mode}`;
}

export function parseMode(text: string): Mode | undefined {
  const i = MODE_NAMES.indexOf(text.toUpperCase());
  return i < 0 ? undefined : (i as Mode);
}

export function isMode(n: number): n is Mode {
  return Number.isInteger(n) && n >= Mode.NL && n <= Mode.EX;
}

// Rows/columns NL CR CW PR PW EX; 1 = may be granted together. Symmetric (§2.1).
const COMPAT: readonly (readonly number[])[] = [
  /* NL */ [1, 1, 1, 1, 1, 1],
  /* CR */ [1, 1, 1, 1, 1, 0],
  /* CW */ [1, 1, 1, 0, 0, 0],
  /* PR */ [1, 1, 0, 1, 0, 0],
  /* PW */ [1, 1, 0, 0, 0, 0],
  /* EX */ [1, 0, 0, 0, 0, 0],
];

/** May a lock in mode `a` be granted while another lock holds mode `b` on the same resource? */
export function compatible(a: Mode, b: Mode): boolean {
  return COMPAT[a]![b] === 1;
}

/**
 * A conversion is "down" when the new mode is compatible with everything the old one was, so
 * granting it can never block anyone that was not blocked already: it is granted at once, without
 * queueing. (NL<CR<CW<PW<EX and CR<PR<PW; CW and PR are incomparable, so PR->CW is an up-conversion.)
 */
export function isDownConversion(from: Mode, to: Mode): boolean {
  for (const m of MODES) if (compatible(from, m) && !compatible(to, m)) return false;
  return true;
}

/** Only a PW or EX holder writes the value block, when it converts down or unlocks (§2.4). */
export function writesLvb(grantedMode: Mode): boolean {
  return grantedMode === Mode.PW || grantedMode === Mode.EX;
}

/** QUECVT's list of legal queued conversions (§2.2), used to validate the `queue` flag of a convert. */
export function isQueueableConversion(from: Mode, to: Mode): boolean {
  return from !== to && !isDownConversion(from, to);
}
