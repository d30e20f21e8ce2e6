// A sparse file has no sector size, so sanbox records the one a disk was created with in a
// sidecar file beside the image (`IMG.sanbox.json`), instead of guessing. Images without one
// (made by other tools) are 512-byte-sector disks, as a loop device is by default.

import fs from 'node:fs';
import { DiskError } from '../errors.js';
import { SECTOR_SIZES, type SectorSize } from './device.js';

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

export function writeRecordedSectorSize(imagePath: string, sectorSizeBytes: SectorSize): void {
  fs.writeFileSync(sidecarPath(imagePath), JSON.stringify({ version: SIDECAR_VERSION, sectorSizeBytes }) + '\n');
}
