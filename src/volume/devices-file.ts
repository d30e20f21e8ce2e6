// The devices file on disk: where it is, reading it (validated), and changing it atomically
// (write beside, fsync, rename), so `--devices` need not be repeated on every command.
//
// Location: $SANBOX_DEVICESFILE, else $XDG_CONFIG_HOME/sanbox/system.devices (~/.config when
// unset) — lvm2 keeps its file in /etc/lvm/devices/system.devices; sanbox's is per user, since its
// devices are the user's image files. SANBOX_DEVICESFILE="" turns the file off.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openDevice, schemeOf } from '../disk/index.js';
import { SanboxError } from '../errors.js';
import { DEVICES_FILE_MAX_BYTES, DEVICES_FILE_VERSION, encodeDevicesFile, parseDevicesFile, type DeviceEntry, type DevicesFile } from '../format/devices-file.js';
import { readPv } from './pv.js';

import { DEVICES_FILE_ENV } from './devices-env.js';
export { DEVICES_FILE_ENV };

/** The devices file's path, or undefined when turned off. */
export function devicesFilePath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const set = env[DEVICES_FILE_ENV];
  if (set !== undefined) return set === '' ? undefined : path.resolve(set);
  const config = env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config');
  return path.join(config, 'sanbox', 'system.devices');
}

/** The file's contents; a missing file is an empty list. */
export function readDevicesFile(file: string): DevicesFile {
  let text: string;
  try {
    const st = fs.statSync(file);
    if (!st.isFile()) throw new SanboxError('EINVAL', `${file}: the devices file is not a regular file`, { device: file });
    if (st.size > DEVICES_FILE_MAX_BYTES) throw new SanboxError('EINVAL', `${file}: the devices file is larger than ${DEVICES_FILE_MAX_BYTES} bytes`, { device: file });
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: DEVICES_FILE_VERSION, entries: [] };
    throw err;
  }
  return parseDevicesFile(text, { device: file, offsetBytes: 0 });
}

/** Replaces the file atomically: a reader sees the old list or the new one, never a mix. */
export function writeDevicesFile(file: string, contents: DevicesFile, createdBy: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  const fd = fs.openSync(tmp, 'w', 0o644);
  try {
    fs.writeSync(fd, encodeDevicesFile(contents, createdBy));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/** The device specs the file lists (DEVNAME: the path or URL sanbox opens). */
export function devicesFromFile(env: NodeJS.ProcessEnv = process.env): string[] {
  const file = devicesFilePath(env);
  return file === undefined ? [] : readDevicesFile(file).entries.map((e) => e.devName);
}

/**
 * The devices file entry for `spec` (an absolute path or a URL, already normalized): opening it
 * validates the device (it exists, is a disk, has a size); its PV label, if any, gives the PVID.
 */
export async function deviceEntryFor(spec: string): Promise<DeviceEntry> {
  const dev = await openDevice(spec, { readOnly: true, guard: 'none' });
  let pvId: string | undefined;
  try {
    pvId = (await readPv(dev, { withoutText: true }))?.label.pvId;
  } finally {
    await dev.close();
  }
  return { idType: schemeOf(spec) === undefined ? 'loop_file' : 'devname', idName: spec, devName: spec, pvId };
}

/** Adds or updates the entry for `spec` (an absolute path or a URL). */
export function addDevice(contents: DevicesFile, entry: DeviceEntry): DevicesFile {
  return { ...contents, entries: [...contents.entries.filter((e) => e.devName !== entry.devName), entry] };
}

export function delDevice(file: string, contents: DevicesFile, spec: string): DevicesFile {
  if (!contents.entries.some((e) => e.devName === spec)) throw new SanboxError('ENOENT', `no devices file entry for ${spec} in ${file}`, { device: spec });
  return { ...contents, entries: contents.entries.filter((e) => e.devName !== spec) };
}
