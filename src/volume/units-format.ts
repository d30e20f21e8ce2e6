// Sizes as lvm2's reports print them (`--units`, `--nosuffix`), checked against lvm2 2.03.16:
// - r/R (the default): human-readable, with '<' when the two decimals shown are more than the size
//   ("<95.37m" for 99 999 744 bytes); h/H: the same without '<'. Lower case = powers of 1024,
//   upper case = powers of 1000 (SI). Zero prints as "0 " (a space where the unit would be).
// - b/B: bytes, suffix "B"; s/S: 512-byte sectors, suffix "S".
// - k m g t p e: that binary unit with two decimals ("126976.00k"); K M G T P E: the SI unit.
// - --nosuffix drops the unit of the fixed units; human-readable sizes keep theirs (lvm2 does).
// Two decimals round as printf("%.2f") does: exact ties go to the even digit (0.125 → "0.12").

import { UsageError } from '../errors.js';

export type UnitsSpec = 'r' | 'R' | 'h' | 'H' | 'b' | 'B' | 's' | 'S' | 'k' | 'm' | 'g' | 't' | 'p' | 'e' | 'K' | 'M' | 'G' | 'T' | 'P' | 'E';

const UNITS = new Set<string>(['r', 'R', 'h', 'H', 'b', 'B', 's', 'S', 'k', 'm', 'g', 't', 'p', 'e', 'K', 'M', 'G', 'T', 'P', 'E']);
/** The order of the fixed units; index i is 1024^(i+1) (lower case) or 1000^(i+1) (upper case). */
const SCALE = 'kmgtpe';
/** lvm2's sector in reports is 512 bytes whatever the device's sector size (lvm2.md §0). */
const REPORT_SECTOR_BYTES = 512;

export function parseUnits(text: string): UnitsSpec {
  if (!UNITS.has(text)) throw new UsageError(`invalid units '${text}' (one of r h b s k m g t p e, or upper case for SI units)`);
  return text as UnitsSpec;
}

/** `value` with two decimals as C's printf("%.2f"), ties to even (sizes are exact binary fractions). */
export function twoDecimals(value: number): string {
  const scaled = value * 100;
  const floor = Math.floor(scaled);
  const frac = scaled - floor;
  const hundredths = frac > 0.5 || (frac === 0.5 && floor % 2 === 1) ? floor + 1 : floor;
  const whole = Math.floor(hundredths / 100);
  return `${whole}.${String(hundredths - whole * 100).padStart(2, '0')}`;
}

export function formatReportSize(bytes: number, units: UnitsSpec = 'r', suffix = true): string {
  if (units === 'b' || units === 'B') return `${bytes}${suffix ? 'B' : ''}`;
  if (units === 's' || units === 'S') return `${Math.floor(bytes / REPORT_SECTOR_BYTES)}${suffix ? 'S' : ''}`;
  const human = units === 'r' || units === 'R' || units === 'h' || units === 'H';
  const si = units === units.toUpperCase();
  const base = si ? 1000 : 1024;
  if (bytes === 0) return human ? '0 ' : `0${suffix ? units : ''}`;
  let i: number;
  if (human) {
    // The largest unit (from k) that leaves at least 1, as lvm2's human-readable output picks it.
    i = 0;
    while (i < SCALE.length - 1 && bytes / base ** (i + 2) >= 1) i++;
  } else {
    i = SCALE.indexOf(units.toLowerCase());
  }
  const value = bytes / base ** (i + 1);
  const shown = twoDecimals(value);
  const letter = si ? SCALE[i]!.toUpperCase() : SCALE[i]!;
  const less = (units === 'r' || units === 'R') && Number(shown) > value ? '<' : '';
  return `${less}${shown}${human || suffix ? letter : ''}`;
}

const LONG_UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** The long form of pvdisplay/vgdisplay/lvdisplay: "124.00 MiB", "<95.37 MiB", and "0   " for zero. */
export function formatDisplaySize(bytes: number): string {
  if (bytes === 0) return '0   ';
  let i = 0;
  while (i < LONG_UNITS.length - 1 && bytes / 1024 ** (i + 2) >= 1) i++;
  const value = bytes / 1024 ** (i + 1);
  const shown = twoDecimals(value);
  return `${Number(shown) > value ? '<' : ''}${shown} ${LONG_UNITS[i]!}`;
}
