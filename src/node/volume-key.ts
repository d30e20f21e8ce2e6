// The key a node knows a volume by (its mounts, its volume homes, the ctl requests naming one).
// Small on purpose: `sanbox ctl … mount|umount|fs` computes it in the caller's process without
// loading the node runtime.

import path from 'node:path';
import { schemeOf } from '../disk/open.js';
import { isLvSpec } from '../volume/resolve.js';

/** The key a volume is known by: an image file by its absolute path; nbd:// and VG/LV as given. */
export function volumeKey(spec: string): string {
  return schemeOf(spec) !== undefined || isLvSpec(spec) ? spec : path.resolve(spec);
}
