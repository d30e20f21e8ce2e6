// A sparse file has no sector size, so sanbox records the one a disk was created with in a
// sidecar file beside the image (`IMG.sanbox.json`), instead of guessing. Images without one
// (made by other tools) are 512-byte-sector disks, as a loop device is by default.

import fs from 'node:fs';
import { DiskError } from '../errors.js';
import { SECTOR_SIZES, type SectorSize } from './device.js';
import { systemError } from './system-error.js';

export const DEFAULT_SECTOR_SIZE: SectorSize = 512;
const SIDECAR_VERSION = 1;

export function sidecarPath(imagePath: string): string {
  return `${imagePath}.sanbox.json`;
}

export function readRecordedSectorSize(imagePath: string): { sectorSizeBytes: SectorSize; recorded: boolean } {
  let text: string;
  try {
    text = fs.readFileSync(sidecarPath(imagePath), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { sectorSizeBytes: DEFAULT_SECTOR_SIZE, recorded: false };
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new DiskError('EIO', `${sidecarPath(imagePath)}: not valid JSON`, { device: imagePath });
  }
  const rec = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as { version?: unknown; sectorSizeBytes?: unknown };
  if (rec.version !== SIDECAR_VERSION || !SECTOR_SIZES.includes(rec.sectorSizeBytes as SectorSize)) {
    throw new DiskError('EIO', `${sidecarPath(imagePath)}: unsupported sidecar (version ${String(rec.version)}, sector size ${String(rec.sectorSizeBytes)})`, {
      device: imagePath,
    });
  }
  return { sectorSizeBytes: rec.sectorSizeBytes as SectorSize, recorded: true };
}

/**
 * Writes the sidecar atomically (a temporary file, fsynced, renamed): a failure such as ENOSPC
 * never leaves a 0-byte sidecar that blocks every later open. With `commit: false` the temporary
 * file is left for the caller to rename (createImage renames image and sidecar together); its
 * path is returned.
 */
export function writeRecordedSectorSize(imagePath: string, sectorSizeBytes: SectorSize, opts: { commit?: boolean } = {}): string {
  const final = sidecarPath(imagePath);
  const tmp = `${final}.${process.pid}.tmp`;
  try {
    const fd = fs.openSync(tmp, 'w');
    try {
      fs.writeSync(fd, JSON.stringify({ version: SIDECAR_VERSION, sectorSizeBytes }) + '\n');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (opts.commit === false) return tmp;
    fs.renameSync(tmp, final);
    return final;
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw systemError(final, 'write the sector-size sidecar', err);
  }
}
