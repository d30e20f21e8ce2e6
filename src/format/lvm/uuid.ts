// LVM2 identifiers (reference/lvm2.md §6): 32 characters from `0-9a-zA-Z!#`; stored raw (no dashes)
// in the pv_header and dashed 6-4-4-4-4-4-6 in the text metadata. Generated ids use only the first
// 62 characters, each picked as (random byte mod 62). Pure: the caller supplies the random bytes.

import { FormatError } from '../../errors.js';

export const LVM_ID_LEN = 32;
/** Valid id characters; generation uses only the first 62 (lib/uuid/uuid.c). */
const ID_CHARS = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ!#';
const GENERATED_CHARS = 62;
/** Dash positions of the printed form: groups of 6-4-4-4-4-4-6. */
const GROUPS = [6, 4, 4, 4, 4, 4, 6];

/** A fresh 32-char id from 32 random bytes. */
export function idFromRandom(random: Uint8Array): string {
  if (random.length < LVM_ID_LEN) throw new RangeError(`need ${LVM_ID_LEN} random bytes`);
  let s = '';
  for (let i = 0; i < LVM_ID_LEN; i++) s += ID_CHARS[random[i]! % GENERATED_CHARS];
  return s;
}

export function isValidId(id: string): boolean {
  if (id.length !== LVM_ID_LEN) return false;
  for (const ch of id) if (!ID_CHARS.includes(ch)) return false;
  return true;
}

/** 32 chars -> `xxxxxx-xxxx-…-xxxxxx`. */
export function dashId(id: string): string {
  const parts: string[] = [];
  let at = 0;
  for (const g of GROUPS) {
    parts.push(id.slice(at, at + g));
    at += g;
  }
  return parts.join('-');
}

/** Dashed or raw text -> 32 chars; every '-' is dropped, as lvm2 does. */
export function undashId(text: string, where: { device?: string; offsetBytes?: number } = {}): string {
  const id = text.replace(/-/g, '');
  if (!isValidId(id)) throw new FormatError(`${where.device ?? 'metadata'}: invalid LVM id '${text}'`, where);
  return id;
}
