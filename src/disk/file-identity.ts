// Which file a path names, whatever directories or links lead there: (st_dev, st_ino). Two paths of
// one image (a symlinked directory, `..`, a hard link) are one device to everything that counts
// opens or recognizes a device (review 4, finding 4: the provider counted opens by path string).

import fs from 'node:fs';
import { schemeOf } from './open.js';

/**
 * A key naming the device `spec` opens: an nbd:// export by its URI (it has no identity here but
 * that), a file by `dev:ino`. Throws the stat error of a file that is not there.
 */
export function deviceIdentity(spec: string): string {
  if (schemeOf(spec) !== undefined) return spec;
  const st = fs.statSync(spec, { bigint: true });
  return `${st.dev}:${st.ino}`;
}

/** deviceIdentity, or undefined for a file that is not there (it names nothing). */
export function identityOrUndefined(spec: string): string | undefined {
  try {
    return deviceIdentity(spec);
  } catch {
    return undefined;
  }
}
