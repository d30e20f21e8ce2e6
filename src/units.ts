// Sizes and durations as users type them. Sizes take LVM's suffixes: b/B bytes, s sectors (512),
// k/K m/M g/G t/T p/P e/E binary units (LVM treats both cases as powers of 1024 for input),
// default MiB when no suffix is given is the caller's choice (`defaultUnit`).

import { formatReportSize } from './volume/units-format.js';
import { UsageError } from './errors.js';

const BINARY: Record<string, number> = { b: 1, s: 512, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };

export function parseSizeBytes(text: string, defaultUnit: keyof typeof BINARY | 'b' = 'b'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([bskmgtpe])?(?:i?b)?\s*$/i.exec(text);
  if (!m) throw new UsageError(`invalid size '${text}' (examples: 512, 4k, 100M, 10G)`);
  const unit = (m[2] ?? defaultUnit).toLowerCase();
  const mult = BINARY[unit];
  if (mult === undefined) throw new UsageError(`invalid size unit in '${text}'`);
  const bytes = Math.round(Number(m[1]) * mult);
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`size '${text}' is too large`);
  return bytes;
}

const DURATION_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

export function parseDurationMs(text: string, defaultUnit: 'ms' | 's' = 's'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text);
  if (!m) throw new UsageError(`invalid duration '${text}' (examples: 500ms, 10s, 2m)`);
  return Math.round(Number(m[1]) * DURATION_MS[m[2] ?? defaultUnit]!);
}

/**
 * A human size as lvm2's reports print it (`pvs`, `lvs`: 1.00g, <1.50g, 0.50k, 0): one formatter for
 * every size sanbox prints (src/volume/units-format.ts). lvm2 pads a bare zero to line up with the
 * unit letters of a column; outside a column the padding is dropped.
 */
export function formatSize(bytes: number): string {
  return formatReportSize(bytes).trimEnd();
}
