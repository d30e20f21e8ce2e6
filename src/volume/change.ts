// What vgchange and lvchange can change in sanbox, as edits of the VG model checked the way lvm2
// checks them (lvm2 2.03.16): tags (--addtag/--deltag), a VG's limits (-l max LVs, -p max PVs),
// an LV's read-ahead (-r). Activation (-a) has no meaning here: sanbox maps no LV in the kernel.
// Permissions and resizeability are left alone: sanbox's writers do not yet honour them.

import { SanboxError, UsageError } from '../errors.js';
import type { LvModel, VgModel } from '../format/lvm/vg-model.js';

/** lvm2's tag characters, and its bound on a tag's length. */
const TAG_RE = /^[A-Za-z0-9_+.\-/=!:&#]+$/;
const TAG_MAX_CHARS = 1024;
/** lvm2 rounds read-ahead down to whole 4 KiB pages: 8 sectors. */
const READ_AHEAD_ALIGN_SECTORS = 8;
/** lvm2's metadata value for read-ahead "none". */
const READ_AHEAD_NONE = -1;

/** A tag as given ("@db" means "db", as in lvm2), validated. */
export function parseTag(text: string): string {
  const tag = text.startsWith('@') ? text.slice(1) : text;
  if (tag.length === 0 || tag.length > TAG_MAX_CHARS || !TAG_RE.test(tag)) {
    throw new UsageError(`invalid tag '${text}' (letters, digits and _ + . - / = ! : & #, at most ${TAG_MAX_CHARS})`);
  }
  return tag;
}

export interface TagChange {
  add: string[];
  del: string[];
}

/** The tag list after a change; deleting a tag that is not there is a no-op, as in lvm2. */
export function changeTags(tags: string[], c: TagChange): string[] {
  const out = tags.filter((t) => !c.del.includes(t));
  for (const t of c.add) if (!out.includes(t)) out.push(t);
  return out;
}

export interface VgChange {
  tags?: TagChange;
  maxLv?: number;
  maxPv?: number;
}

export function applyVgChange(vg: VgModel, c: VgChange): void {
  if (c.tags) vg.tags = changeTags(vg.tags, c.tags);
  const visible = vg.lvs.filter((l) => l.status.includes('VISIBLE')).length;
  if (c.maxLv !== undefined) {
    if (c.maxLv !== 0 && c.maxLv < visible) throw new SanboxError('EINVAL', `max LVs ${c.maxLv} is less than the current number ${visible} of LVs for ${vg.name}`);
    vg.maxLv = c.maxLv;
  }
  if (c.maxPv !== undefined) {
    if (c.maxPv !== 0 && c.maxPv < vg.pvs.length) throw new SanboxError('EINVAL', `max PVs ${c.maxPv} is less than the current number ${vg.pvs.length} of PVs for ${vg.name}`);
    vg.maxPv = c.maxPv;
  }
}

export interface LvChange {
  tags?: TagChange;
  /** In sectors (0 = none); 'auto' lets the kernel choose. */
  readAhead?: number | 'auto';
}

/** Applies the change to `vg`'s LV `name`; returns notes to print (rounding). */
export function applyLvChange(vg: VgModel, name: string, c: LvChange): string[] {
  const lv: LvModel | undefined = vg.lvs.find((l) => l.name === name);
  if (!lv) throw new SanboxError('ENOENT', `logical volume ${vg.name}/${name} not found`);
  const notes: string[] = [];
  if (c.tags) lv.tags = changeTags(lv.tags, c.tags);
  if (c.readAhead !== undefined) {
    // The metadata's encoding (lvm2): no key = auto, -1 = none, N = N sectors (0 would read as auto).
    if (c.readAhead === 'auto') lv.readAhead = undefined;
    else {
      const rounded = c.readAhead - (c.readAhead % READ_AHEAD_ALIGN_SECTORS);
      if (rounded !== c.readAhead) notes.push(`Rounding down read ahead to ${rounded} sectors, a multiple of ${READ_AHEAD_ALIGN_SECTORS}.`);
      lv.readAhead = rounded === 0 ? READ_AHEAD_NONE : rounded;
    }
  }
  return notes;
}

/** lvchange -r: "auto", "none" (0) or a number of sectors. */
export function parseReadAhead(text: string): number | 'auto' {
  if (text === 'auto') return 'auto';
  if (text === 'none') return 0;
  if (!/^\d{1,9}$/.test(text)) throw new UsageError(`invalid read ahead '${text}' (auto, none or a number of sectors)`);
  return Number(text);
}
