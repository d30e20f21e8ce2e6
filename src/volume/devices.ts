// Which devices LVM-style commands look at. LVM scans /dev; sanbox has no /dev of its own, so the
// device list is explicit: the images named on the command line, plus `--devices a.img,b.img`,
// plus the environment variable SANBOX_DEVICES (same comma-separated form). A VG's PVs must all
// be in that list.

import path from 'node:path';
import { openDevice, schemeOf, type BlockDevice } from '../disk/index.js';
import { UsageError } from '../errors.js';
import { devicesFromFile } from './devices-file.js';

import { DEVICES_ENV } from './devices-env.js';

/** Splits "a.img,b.img" lists; empty entries are ignored. */
export function splitDeviceList(text: string | undefined): string[] {
  return (text ?? '').split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

/**
 * The device list: named images first, then --devices, then SANBOX_DEVICES, without duplicates;
 * when neither of those two gives any, the devices file's entries (as lvm2's --devices
 * overrides its devices file).
 */
export function deviceList(named: string[], devicesOption?: string[] | string, env: NodeJS.ProcessEnv = process.env): string[] {
  const opt = Array.isArray(devicesOption) ? devicesOption.flatMap(splitDeviceList) : splitDeviceList(devicesOption);
  const given = [...opt, ...splitDeviceList(env[DEVICES_ENV])];
  const out: string[] = [];
  const seen = new Set<string>();
  for (const spec of [...named, ...(given.length ? given : devicesFromFile(env))]) {
    const canon = normalizeSpec(spec);
    if (seen.has(canon)) continue;
    seen.add(canon);
    out.push(canon);
  }
  return out;
}

/** Files become absolute paths (so the text's `device` hint is useful); URLs stay as they are. */
export function normalizeSpec(spec: string): string {
  // path.resolve('') is the working directory: an empty argument must not name it.
  if (spec.trim() === '') throw new UsageError('an empty device name ("") was given');
  return schemeOf(spec) === undefined ? path.resolve(spec) : spec;
}

export interface OpenAllOptions {
  readOnly?: boolean;
  guard?: 'shared' | 'exclusive' | 'none';
  /** Opens one device instead of openDevice: a node's device provider, so its PVs carry its fence gate. */
  open?: (spec: string) => Promise<BlockDevice>;
}

/** Opens every device; on failure closes the ones already opened. */
export async function openAll(specs: string[], opts: OpenAllOptions): Promise<BlockDevice[]> {
  const devs: BlockDevice[] = [];
  try {
    for (const s of specs) devs.push(await (opts.open !== undefined ? opts.open(s) : openDevice(s, { readOnly: opts.readOnly ?? false, guard: opts.guard ?? 'shared' })));
  } catch (err) {
    for (const d of devs) await d.close();
    throw err;
  }
  return devs;
}
