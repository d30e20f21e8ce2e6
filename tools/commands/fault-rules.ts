// Fault rules on the command line, shared by `sanbox fault set|ls` (fault-actions.ts) and `sanbox
// ctl … fault set|ls` (ctl-actions.ts): a rule from the options fault.ts's addRuleOptions adds, and
// a table of rules.

import { shadowingRule, type FaultAction, type FaultOp, type FaultRule } from '../../src/disk/index.js';
import { UsageError } from '../../src/errors.js';
import { parseDurationMs, parseSizeBytes } from '../../src/units.js';
import { printTable } from '../output.js';

/** A rule from those options (usage errors for bad values); the id is left to the caller. */
export function ruleFromOptions(o: Record<string, unknown>): FaultRule {
  const text = (k: string): string | undefined => (o[k] === undefined ? undefined : String(o[k]));
  const int = (name: string, v: string | undefined): number | undefined => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new UsageError(`--${name} must be a non-negative integer, not '${v}'`);
    return Number(v);
  };
  const actions: FaultAction[] = ['eio', 'latency', 'stall', 'torn'];
  if (!actions.includes(text('action') as FaultAction)) throw new UsageError(`--action must be one of ${actions.join(', ')}`);
  const ops: FaultOp[] = ['read', 'write', 'any'];
  const op = text('op') ?? 'any';
  if (!ops.includes(op as FaultOp)) throw new UsageError(`--op must be one of ${ops.join(', ')}`);
  const rule: FaultRule = { action: text('action') as FaultAction, op: op as FaultOp };
  const id = text('id');
  if (id !== undefined) rule.id = id;
  const device = text('device');
  if (device !== undefined) rule.device = device;
  const offset = text('offset');
  if (offset !== undefined) rule.offsetBytes = parseSizeBytes(offset);
  const length = text('length');
  if (length !== undefined) rule.lengthBytes = parseSizeBytes(length);
  const afterOps = int('after-ops', text('afterOps'));
  if (afterOps !== undefined) rule.afterOps = afterOps;
  const count = int('count', text('count'));
  if (count !== undefined) rule.count = count;
  const latency = text('latency');
  if (latency !== undefined) rule.latencyMs = parseDurationMs(latency, 'ms');
  // A latency rule without a latency would silently add none.
  if (rule.action === 'latency' && latency === undefined) throw new UsageError('--action latency needs --latency DURATION (e.g. 50ms)');
  const torn = int('torn-sectors', text('tornSectors'));
  if (torn !== undefined) rule.tornSectors = torn;
  return rule;
}

/** The rules as a table; a rule that an earlier one always pre-empts is marked shadowed. */
export function printRules(rules: (FaultRule & { devices?: string[] })[], out: NodeJS.WritableStream = process.stdout): void {
  printTable(
    rules.map((r, i) => ({ r, shadow: shadowingRule(rules, i) })),
    [
      { header: 'ID', value: ({ r }) => r.id ?? '' },
      { header: 'Action', value: ({ r }) => r.action },
      { header: 'Op', value: ({ r }) => r.op ?? 'any' },
      { header: 'Device', value: ({ r }) => r.device ?? '*' },
      { header: 'Range', value: ({ r }) => (r.offsetBytes === undefined ? 'all' : `${r.offsetBytes}+${r.lengthBytes ?? 'end'}`) },
      { header: 'AfterOps', value: ({ r }) => r.afterOps ?? 0, align: 'right' },
      { header: 'Count', value: ({ r }) => r.count ?? '-', align: 'right' },
      { header: 'Detail', value: ({ r }) => (r.action === 'latency' ? `${r.latencyMs ?? 0}ms` : r.action === 'torn' ? `${r.tornSectors ?? 'half'} sectors` : '') },
      ...(rules.some((r) => r.devices !== undefined) ? [{ header: 'Devices', value: ({ r }: { r: FaultRule & { devices?: string[] } }) => r.devices?.length ?? 0, align: 'right' as const }] : []),
      { header: 'Note', value: ({ shadow }) => (shadow === undefined ? '' : `shadowed by ${shadow.id ?? 'an earlier rule'}`) },
    ],
    out,
  );
}
