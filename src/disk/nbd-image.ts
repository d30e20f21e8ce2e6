// Making a new disk on an NBD export: what `disk create` and `cluster init` do when they are given
// nbd://… instead of a path. An export has a size fixed by its server, so "creating" it means
// checking that the asked size fits, refusing an export that already holds something (unless
// forced, as a local image that exists is refused), and making the range read as zeros, which is
// what a freshly truncated sparse file reads as.
//
// The in-use guard is a local flock and cannot see other machines' clients (docs/nbd.md,
// "Limits"), so over NBD the content check is what stands between `create` and a disk in use.

import { DiskError } from '../errors.js';
import { findSignature, SIGNATURE_PROBE_BYTES } from '../format/signatures.js';
import { NbdDevice, type NbdOpenOptions } from './nbd-device.js';
import type { SectorSize } from './device.js';

/**
 * Bytes at the start of an export that must all be zero before it is initialized without force.
 * Every format sanbox writes or refuses to overwrite has its magic in the first 64 KiB + 8 (the
 * signature table's reach, btrfs being the deepest); 1 MiB also covers LVM's first metadata area.
 */
const EXISTING_DATA_PROBE_BYTES = 1024 * 1024;

export interface ExportInitOptions extends NbdOpenOptions {
  /** Bytes the new disk needs; the export must be at least this large. */
  sizeBytes: number;
  /** The sector size the caller will write in; a multiple of the export's own (its minimum block size). */
  sectorSizeBytes: SectorSize;
  /** The export's sector size must equal sectorSizeBytes (a plain disk cannot record another one over NBD). */
  exactSectorSize?: boolean;
  /** Initialize an export whose first MiB holds data. */
  force?: boolean;
  /** Zero the whole export rather than the first sizeBytes. */
  zeroWholeExport?: boolean;
}

/**
 * Opens `spec` read-write, validates it as the target of a new disk, zeroes it (NBD_CMD_WRITE_ZEROES
 * where the server has it) and flushes. Returns the open device; the caller closes it.
 */
export async function initExport(spec: string, opts: ExportInitOptions): Promise<NbdDevice> {
  const dev = await NbdDevice.open(spec, { ...opts, readOnly: false });
  try {
    const exportSector = dev.sectorSizeBytes;
    if (opts.exactSectorSize === true ? opts.sectorSizeBytes !== exportSector : opts.sectorSizeBytes % exportSector !== 0) {
      throw new DiskError(
        'EINVAL',
        `${spec}: the export's sector size is ${exportSector} (the server's minimum block size); a ${opts.sectorSizeBytes}-byte sector size cannot be used on it over NBD`,
        { device: spec },
      );
    }
    if (opts.sizeBytes > dev.sizeBytes) {
      throw new DiskError(
        'ENOSPC',
        `${spec}: the export is ${dev.sizeBytes} bytes, smaller than the ${opts.sizeBytes} bytes needed; sanbox cannot grow an NBD export (resize the served file on the server and restart the server)`,
        { device: spec },
      );
    }
    if (opts.force !== true) await refuseExistingData(dev);
    const zeroBytes = opts.zeroWholeExport === true ? dev.sizeBytes : opts.sizeBytes;
    await dev.discard(0, Math.floor(zeroBytes / exportSector) * exportSector);
    await dev.flush();
    return dev;
  } catch (err) {
    await dev.close();
    throw err;
  }
}

async function refuseExistingData(dev: NbdDevice): Promise<void> {
  const head = Buffer.alloc(Math.min(dev.sizeBytes, Math.max(EXISTING_DATA_PROBE_BYTES, SIGNATURE_PROBE_BYTES)));
  await dev.read(head, 0);
  const signature = findSignature(head);
  const firstNonZero = signature?.offsetBytes ?? head.findIndex((b) => b !== 0);
  if (firstNonZero < 0) return;
  const what = signature !== undefined ? signature.description : 'data';
  throw new DiskError(
    'EEXIST',
    `${dev.name}: the export holds ${what} at byte ${firstNonZero}; it may be in use (use --force to zero it)`,
    { device: dev.name, offsetBytes: firstNonZero },
  );
}

/** `disk create nbd://…`: the whole export becomes an empty disk; returns its size and sector size. */
export async function createNbdDisk(
  spec: string,
  opts: { sizeBytes: number; sectorSizeBytes: SectorSize; force?: boolean },
): Promise<{ device: string; sizeBytes: number; sectorSizeBytes: SectorSize; zeroedBytes: number }> {
  const dev = await initExport(spec, { ...opts, exactSectorSize: true, zeroWholeExport: true });
  try {
    return { device: spec, sizeBytes: dev.sizeBytes, sectorSizeBytes: dev.sectorSizeBytes, zeroedBytes: dev.sizeBytes };
  } finally {
    await dev.close();
  }
}
