// Opening a device by what the user typed. Files (sparse images, or block devices) open here;
// other schemes (nbd://…) register an opener, so this layer stays free of protocol code it does
// not own. Logical volumes (VG/LV) are resolved above this layer, by src/volume.
//
// SANBOX_FAULTS=/path/control.json wraps every device this process opens in a FaultDevice driven
// by that file: that is how a test injects faults into a node process it spawned.
// SANBOX_CRASH_AT=SIDE-OP:K makes the process SIGKILL itself at its K-th write or flush
// (src/disk/crash-point.ts): the crash tests' kill -9 at an exact I/O. Both are inert when unset.

import { type BlockDevice } from './device.js';
import { wrapCrashPoint } from './crash-point.js';
import { FaultDevice } from './fault-device.js';
import { FileDisk, type OpenOptions } from './file-disk.js';
import { openNbdDevice } from './nbd-device.js';

export const FAULTS_ENV = 'SANBOX_FAULTS';

export type SchemeOpener = (spec: string, opts: OpenOptions) => Promise<BlockDevice>;
const schemes = new Map<string, SchemeOpener>();

/** Registers an opener for specs that start with `scheme://`. */
export function registerScheme(scheme: string, opener: SchemeOpener): void {
  schemes.set(scheme, opener);
}

export function schemeOf(spec: string): string | undefined {
  const m = /^([a-z][a-z0-9+.-]*):\/\//.exec(spec);
  return m?.[1];
}

export async function openDevice(spec: string, opts: OpenOptions = {}): Promise<BlockDevice> {
  const scheme = schemeOf(spec);
  let dev: BlockDevice;
  if (scheme !== undefined) {
    const opener = schemes.get(scheme);
    if (opener === undefined) throw new Error(`${spec}: unsupported device scheme '${scheme}://'`);
    dev = await opener(spec, opts);
  } else {
    dev = FileDisk.open(spec, opts);
  }
  return wrapFaults(dev);
}

/** Synchronous open for local files only. */
export function openFileDevice(path: string, opts: OpenOptions = {}): FileDisk | FaultDevice {
  const dev = FileDisk.open(path, opts);
  const control = process.env[FAULTS_ENV];
  return control ? new FaultDevice(dev, control) : dev;
}

function wrapFaults(dev: BlockDevice): BlockDevice {
  const control = process.env[FAULTS_ENV];
  return wrapCrashPoint(control ? new FaultDevice(dev, control) : dev);
}

// nbd://HOST:PORT/EXPORT and nbd+unix:///EXPORT?socket=PATH: a disk served by an NBD server.
registerScheme('nbd', openNbdDevice);
registerScheme('nbd+unix', openNbdDevice);
