// The libdm configuration grammar that LVM2 text metadata is written in (reference/lvm2.md §5.1):
//
//   file      = statement*
//   statement = key '=' value | key '{' statement* '}'
//   key       = bare word (no whitespace # = { } [ ] , " ') | quoted string
//   value     = integer | float | "string" | 'string' | '[' (value (',')?)* ']' | bare word (a string)
//
// '#' starts a comment to the end of the line (outside strings). Integers are decimal; a leading
// 0 makes them octal as in C (lvm2 itself only writes plain decimal). In double-quoted strings
// only \" and \\ are escapes; any other backslash is kept. Single-quoted strings have no escapes.
// The tree keeps entry order and duplicate keys (lookups see the first), so metadata written by
// another tool can be rewritten without losing keys sanbox does not know.

import { formatFail, type Where } from '../where.js';

export type ConfigValue = string | number | { float: string } | ConfigValue[];

export type ConfigEntry = { key: string; value: ConfigValue } | { key: string; section: ConfigSection };

export interface ConfigSection {
  entries: ConfigEntry[];
}

/** Nesting bound (stack safety): VG metadata nests 5 deep; lvm2 itself has no bound and reads 40 levels (measured), so this leaves room. */
export const CONFIG_DEPTH_MAX = 128;

export type { Where } from '../where.js';

type Tok =
  | { t: '{' | '}' | '=' | '[' | ']' | ','; pos: number }
  | { t: 'str'; v: string; pos: number }
  | { t: 'word'; v: string; pos: number }
  | { t: 'eof'; pos: number };

const PUNCT = new Set(['{', '}', '=', '[', ']', ',']);
const isSpace = (c: string): boolean => c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f';

class Lexer {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly where: Where,
  ) {}

  fail(pos: number, msg: string): never {
    const line = this.s.slice(0, pos).split('\n').length;
    return formatFail(this.where, pos, `metadata text does not parse: ${msg} (line ${line})`, 'metadata');
  }

  next(): Tok {
    const s = this.s;
    for (;;) {
      while (this.i < s.length && isSpace(s[this.i]!)) this.i++;
      if (s[this.i] === '#') {
        while (this.i < s.length && s[this.i] !== '\n') this.i++;
        continue;
      }
      break;
    }
    const pos = this.i;
    if (this.i >= s.length) return { t: 'eof', pos };
    const c = s[this.i]!;
    if (PUNCT.has(c)) {
      this.i++;
      return { t: c as '{', pos };
    }
    if (c === '"') {
      let v = '';
      this.i++;
      for (;;) {
        if (this.i >= s.length) this.fail(pos, 'unterminated string');
        const ch = s[this.i]!;
        if (ch === '"') break;
        if (ch === '\\' && (s[this.i + 1] === '"' || s[this.i + 1] === '\\')) {
          v += s[this.i + 1];
          this.i += 2;
          continue;
        }
        v += ch;
        this.i++;
      }
      this.i++;
      return { t: 'str', v, pos };
    }
    if (c === "'") {
      const end = s.indexOf("'", this.i + 1);
      if (end < 0) this.fail(pos, 'unterminated string');
      const v = s.slice(this.i + 1, end);
      this.i = end + 1;
      return { t: 'str', v, pos };
    }
    let j = this.i;
    while (j < s.length && !isSpace(s[j]!) && !PUNCT.has(s[j]!) && s[j] !== '#' && s[j] !== '"' && s[j] !== "'") j++;
    const v = s.slice(this.i, j);
    this.i = j;
    return { t: 'word', v, pos };
  }
}

class Parser {
  private tok: Tok;
  constructor(private readonly lx: Lexer) {
    this.tok = lx.next();
  }
  private advance(): Tok {
    const t = this.tok;
    this.tok = this.lx.next();
    return t;
  }

  section(depth: number, closing: boolean): ConfigSection {
    if (depth > CONFIG_DEPTH_MAX) this.lx.fail(this.tok.pos, `sections nested deeper than ${CONFIG_DEPTH_MAX}`);
    const entries: ConfigEntry[] = [];
    for (;;) {
      const t = this.advance();
      if (t.t === 'eof') {
        if (closing) this.lx.fail(t.pos, "missing '}'");
        return { entries };
      }
      if (t.t === '}') {
        if (!closing) this.lx.fail(t.pos, "unexpected '}'");
        return { entries };
      }
      if (t.t !== 'word' && t.t !== 'str') this.lx.fail(t.pos, `expected a key, found '${t.t}'`);
      if (t.v === '') this.lx.fail(t.pos, 'empty key');
      const op = this.advance();
      if (op.t === '{') entries.push({ key: t.v, section: this.section(depth + 1, true) });
      else if (op.t === '=') entries.push({ key: t.v, value: this.value(depth + 1) });
      else this.lx.fail(op.pos, `expected '=' or '{' after '${t.v}'`);
    }
  }

  value(depth: number): ConfigValue {
    const t = this.advance();
    if (t.t === 'str') return t.v;
    if (t.t === 'word') return this.scalar(t.v, t.pos);
    if (t.t === '[') {
      if (depth > CONFIG_DEPTH_MAX) this.lx.fail(t.pos, `arrays nested deeper than ${CONFIG_DEPTH_MAX}`);
      const items: ConfigValue[] = [];
      for (;;) {
        if (this.tok.t === ']') {
          this.advance();
          return items;
        }
        if (this.tok.t === 'eof') this.lx.fail(this.tok.pos, "missing ']'");
        items.push(this.value(depth + 1));
        if (this.tok.t === ',') this.advance();
      }
    }
    return this.lx.fail(t.pos, `expected a value, found '${t.t}'`);
  }

  scalar(w: string, pos: number): ConfigValue {
    if (/^[+-]?\d+$/.test(w)) {
      const neg = w.startsWith('-');
      const digits = w.replace(/^[+-]/, '');
      let n: number;
      if (digits.length > 1 && digits.startsWith('0')) {
        if (!/^[0-7]+$/.test(digits)) this.lx.fail(pos, `invalid octal integer '${w}'`);
        n = parseInt(digits, 8);
      } else n = Number(digits);
      if (!Number.isSafeInteger(n)) this.lx.fail(pos, `integer '${w}' is out of range`);
      return neg ? -n : n;
    }
    if (/^[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?$/.test(w)) return { float: w };
    return w;
  }
}

/** Parses config text (no NUL); throws FormatError naming device and offset. */
export function parseConfig(text: string, where: Where = {}): ConfigSection {
  return new Parser(new Lexer(text, where)).section(0, false);
}

/** Escapes exactly `"` and `\`, as lvm2's writer does. */
export function quote(s: string): string {
  return `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

export function formatValue(v: ConfigValue): string {
  if (typeof v === 'string') return quote(v);
  if (typeof v === 'number') return String(v);
  if (Array.isArray(v)) return `[${v.map(formatValue).join(', ')}]`;
  return v.float;
}

/** Writes entries in the on-disk style (no indentation). */
export function formatEntries(entries: ConfigEntry[]): string {
  let out = '';
  for (const e of entries) {
    if ('section' in e) out += `${e.key} {\n${formatEntries(e.section.entries)}}\n`;
    else out += `${e.key} = ${formatValue(e.value)}\n`;
  }
  return out;
}
