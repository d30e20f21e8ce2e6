// `sanbox fault set|clear|ls`'s actions, loaded when one runs (tools/commands/fault.ts registers
// them); the rule helpers they share with `sanbox ctl … fault` are in fault-rules.ts.

import fs from 'node:fs';
import { readControlFile, shadowingRule, writeControlFile, type FaultRule } from '../../src/disk/index.js';
import { UsageError } from '../../src/errors.js';
import { printJson } from '../output.js';
import { printRules, ruleFromOptions } from './fault-rules.js';

function currentRules(control: string): FaultRule[] {
  if (control.trim() === '') throw new UsageError('an empty control file name ("") was given');
  // A control file not written yet holds no rules (processes may start before it exists).
  return fs.existsSync(control) ? readControlFile(control) : [];
}

export function set(control: string, o: Record<string, string | undefined>): void {
  const rule = ruleFromOptions(o);
  const rules = currentRules(control);
  rule.id ??= `rule${rules.length + 1}`;
  if (rules.some((r) => r.id === rule.id)) throw new UsageError(`${control}: a rule named '${rule.id}' exists already`);
  writeControlFile(control, [...rules, rule]);
  process.stdout.write(`Fault rule '${rule.id}' set in ${control}.\n`);
}

export function clear(control: string, id: string | undefined): void {
  const rules = currentRules(control);
  if (id !== undefined && !rules.some((r) => r.id === id)) throw new UsageError(`${control}: no rule named '${id}'`);
  writeControlFile(control, id === undefined ? [] : rules.filter((r) => r.id !== id));
  process.stdout.write(id === undefined ? `All fault rules cleared in ${control}.\n` : `Fault rule '${id}' cleared.\n`);
}

export function ls(control: string, o: { json: boolean }): void {
  const rules = currentRules(control);
  if (o.json) return printJson(rules.map((r, i) => ({ ...r, shadowedBy: shadowingRule(rules, i)?.id ?? null })));
  printRules(rules);
}
