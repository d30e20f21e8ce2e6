// The devices file: which devices LVM commands use, in lvm2's own format (what
// `lvmdevices --adddev` writes to /etc/lvm/devices/system.devices, lvm2 2.03.16):
//
//   # LVM uses devices listed in this file.
//   # Created by LVM command lvmdevices pid 21499 at Sat Dec  5 20:13:40 2026
//   VERSION=1.1.1
//   IDTYPE=loop_file IDNAME=/tmp/a.img DEVNAME=/dev/loop0 PVID=aXDGRHtZRhnwTBAa6hh9EEDCGG9eqs1L
//
// One device per line as KEY=VALUE words; '#' starts a comment. lvm2 names a loop device by its
// backing file (IDTYPE=loop_file); a sanbox image is that backing file, so sanbox writes
// IDTYPE=loop_file with IDNAME and DEVNAME both the image's path (URLs: IDTYPE=devname).
// PVID is the PV uuid without dashes, or "none" for a device that holds no PV yet.

import { assert } from '../errors.js';
import { formatFail, type Where } from './where.js';

export const DEVICES_FILE_VERSION = '1.1.1';
/** The id types sanbox writes and reads; lvm2 has more (sys_wwid, sys_serial, …) for real disks. */
const ID_TYPES = new Set(['loop_file', 'devname']);
/** Bound on one file: lvm2's own files hold a line per disk; this is far more than any use. */
export const DEVICES_FILE_MAX_BYTES = 1 << 20;

export interface DeviceEntry {
  idType: 'loop_file' | 'devname';
  idName: string;
  devName: string;
  /** 32 characters without dashes, or undefined for "none". */
  pvId: string | undefined;
}

export interface DevicesFile {
  version: string;
  entries: DeviceEntry[];
}

/** Parses the text; a bad line is a FormatError naming the file and the line's byte offset. */
export function parseDevicesFile(text: string, where: Where): DevicesFile {
  const fail = (offset: number, what: string): never => formatFail(where, offset, what, 'devices file');
  if (Buffer.byteLength(text) > DEVICES_FILE_MAX_BYTES) fail(0, `devices file is larger than ${DEVICES_FILE_MAX_BYTES} bytes`);
  let version: string | undefined;
  const entries: DeviceEntry[] = [];
  let offset = 0;
  for (const line of text.split('\n')) {
    const here = offset;
    offset += Buffer.byteLength(line) + 1;
    const body = line.trim();
    if (body === '' || body.startsWith('#')) continue;
    if (body.startsWith('VERSION=')) {
      version = body.slice('VERSION='.length);
      if (!/^1\.\d+\.\d+$/.test(version)) fail(here, `unsupported devices file VERSION '${version}' (1.x.y)`);
      continue;
    }
    const kv = new Map<string, string>();
    for (const word of body.split(/\s+/)) {
      const eq = word.indexOf('=');
      if (eq <= 0) fail(here, `'${word}' is not KEY=VALUE`);
      kv.set(word.slice(0, eq), word.slice(eq + 1));
    }
    const idType = kv.get('IDTYPE');
    const idName = kv.get('IDNAME');
    const devName = kv.get('DEVNAME');
    const pvid = kv.get('PVID');
    if (!idType || !ID_TYPES.has(idType)) fail(here, `IDTYPE '${idType ?? ''}' is not one sanbox uses (loop_file, devname)`);
    if (!idName) fail(here, 'IDNAME is missing');
    if (pvid !== undefined && pvid !== 'none' && !/^[A-Za-z0-9!#+.\-_]{32}$/.test(pvid)) fail(here, `PVID '${pvid}' is not 32 uuid characters`);
    entries.push({ idType: idType as DeviceEntry['idType'], idName: idName!, devName: devName ?? idName!, pvId: pvid === undefined || pvid === 'none' ? undefined : pvid });
  }
  if (version === undefined && entries.length > 0) fail(0, 'devices file has no VERSION line');
  return { version: version ?? DEVICES_FILE_VERSION, entries };
}

export function entryLine(e: DeviceEntry): string {
  return `IDTYPE=${e.idType} IDNAME=${e.idName} DEVNAME=${e.devName} PVID=${e.pvId ?? 'none'}`;
}

/** The file's text; `createdBy` goes in the second comment line, as lvm2 records its command. */
export function encodeDevicesFile(file: DevicesFile, createdBy: string): string {
  for (const e of file.entries) assert(!/\s/.test(e.idName + e.devName), `devices file names hold no white space ('${e.idName}')`);
  return ['# LVM uses devices listed in this file.', `# Created by ${createdBy}`, `VERSION=${file.version}`, ...file.entries.map(entryLine), ''].join('\n');
}
