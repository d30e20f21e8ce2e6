// Output helpers shared by every command: LVM-style borderless tables (cli-table3) and JSON.

import Table from 'cli-table3';
import { formatSize } from '../src/units.js';

export interface Column<Row> {
  header: string;
  value: (row: Row) => string | number;
  align?: 'left' | 'right';
}

/** A titled section of a report: a blank line, "TITLE:", then its rows as a table, or " none". */
export function printSection<Row>(title: string, rows: Row[] | undefined, columns: Column<Row>[], out: NodeJS.WritableStream = process.stdout): void {
  out.write(`\n${title}:\n`);
  if (rows === undefined || rows.length === 0) out.write(' none\n');
  else printTable(rows, columns, out);
}

/** Prints rows as an LVM-like table: a header line and space-separated, aligned columns. */
export function printTable<Row>(rows: Row[], columns: Column<Row>[], out: NodeJS.WritableStream = process.stdout): void {
  const table = new Table({
    head: columns.map((c) => c.header),
    chars: {
      top: '', 'top-mid': '', 'top-left': '', 'top-right': '',
      bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
      left: ' ', 'left-mid': '', mid: '', 'mid-mid': '',
      right: '', 'right-mid': '', middle: ' ',
    },
    style: { head: [], border: [], 'padding-left': 1, 'padding-right': 0, compact: true },
    colAligns: columns.map((c) => c.align ?? 'left'),
  });
  for (const row of rows) table.push(columns.map((c) => String(c.value(row))));
  out.write(table.toString().replace(/[ \t]+$/gm, '') + '\n');
}

export function printJson(value: unknown, out: NodeJS.WritableStream = process.stdout): void {
  out.write(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
}

/** Key/value report, like `debugfs -R stats`: one "Key: value" per line, keys aligned. */
export function printFields(fields: [string, string | number | boolean][], out: NodeJS.WritableStream = process.stdout): void {
  const width = Math.max(...fields.map(([k]) => k.length));
  for (const [k, v] of fields) out.write(`${(k + ':').padEnd(width + 2)}${String(v)}\n`);
}

/** A size in a report: as lvm2's reports print it (1.00g, <1.50g, 0), then the exact bytes; --json keeps the bytes. */
export function sizeField(bytes: number): string {
  return `${formatSize(bytes)} (${bytes} bytes)`;
}
