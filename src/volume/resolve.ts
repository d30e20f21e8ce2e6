// Opening what a user names as a block device: `VG/LV` opens a logical volume over the PVs in the
// device list (opts.devices, else SANBOX_DEVICES); anything else goes to openDevice (files,
// nbd://…). An existing file path with a slash is a file, never an LV. The LVM code is imported
// only for an LV: a command that opens a file (`sanbox fsinfo IMG`) does not load it.

import fs from 'node:fs';
import { openDevice, schemeOf, type BlockDevice } from '../disk/index.js';
import { SanboxError } from '../errors.js';
import { isValidLvmName } from '../format/lvm/vg-text.js';
import { deviceList } from './devices.js';

export function isLvSpec(spec: string): boolean {
  const m = /^([^/]+)\/([^/]+)$/.exec(spec);
  return m !== null && schemeOf(spec) === undefined && isValidLvmName(m[1]!) && isValidLvmName(m[2]!) && !fs.existsSync(spec);
}

/** `guard` is the in-use guard: 'shared' (default) for users, 'exclusive' for destructive tools. */
export async function openTarget(spec: string, opts: { devices?: string[]; readOnly?: boolean; guard?: 'shared' | 'exclusive' | 'none' } = {}): Promise<BlockDevice> {
  if (!isLvSpec(spec)) return openDevice(spec, { readOnly: opts.readOnly ?? false, guard: opts.guard ?? 'shared' });
  const [vg, lv] = spec.split('/') as [string, string];
  const specs = deviceList([], opts.devices);
  if (specs.length === 0) throw new SanboxError('ENOENT', `${spec}: no devices to find volume group ${vg} on; pass --devices or set SANBOX_DEVICES`, { device: spec });
  const { openLv } = await import('./manager.js');
  return openLv(specs, vg, lv, { readOnly: opts.readOnly ?? false, guard: opts.guard ?? 'shared' });
}
