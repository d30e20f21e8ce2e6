// `sanbox disk create|info`'s actions, loaded when one runs (tools/commands/disk.ts registers them).

import { createImage, diskInfo, type SectorSize } from '../../src/disk/index.js';
import { isNbdSpec, nbdDiskInfo } from '../../src/disk/nbd-device.js';
import { createNbdDisk } from '../../src/disk/nbd-image.js';
import { UsageError } from '../../src/errors.js';
import { formatSize, parseSizeBytes } from '../../src/units.js';
import { printFields, printJson, sizeField } from '../output.js';

export async function create(image: string, opts: { size: string; sectorSize: string; force: boolean; json: boolean }): Promise<void> {
  const sectorSizeBytes = Number(opts.sectorSize);
  if (sectorSizeBytes !== 512 && sectorSizeBytes !== 4096) throw new UsageError(`--sector-size must be 512 or 4096, not '${opts.sectorSize}'`);
  const sizeBytes = parseSizeBytes(opts.size);
  if (isNbdSpec(image)) {
    const made = await createNbdDisk(image, { sizeBytes, sectorSizeBytes: sectorSizeBytes as SectorSize, force: opts.force });
    if (opts.json) printJson(made);
    else {
      const whole = made.sizeBytes > sizeBytes ? ` (the whole export, larger than --size ${formatSize(sizeBytes)})` : '';
      process.stdout.write(`Disk "${image}" created: ${formatSize(made.sizeBytes)} (${made.sizeBytes} bytes)${whole}, ${made.sectorSizeBytes}-byte sectors, zeroed.\n`);
    }
    return;
  }
  createImage(image, { sizeBytes, sectorSizeBytes: sectorSizeBytes as SectorSize, force: opts.force });
  if (opts.json) printJson(diskInfo(image));
  else process.stdout.write(`Disk "${image}" created: ${formatSize(sizeBytes)} (${sizeBytes} bytes), ${sectorSizeBytes}-byte sectors.\n`);
}

export async function info(image: string, opts: { json: boolean }): Promise<void> {
  if (isNbdSpec(image)) {
    await printNbdInfo(image, opts.json);
    return;
  }
  const info = diskInfo(image);
  if (opts.json) {
    printJson(info);
    return;
  }
  printFields([
    ['Disk', info.path],
    ['Size', sizeField(info.sizeBytes)],
    ['Sector size', `${info.sectorSizeBytes}${info.sectorSizeRecorded ? '' : ' (not recorded; default)'}`],
    ['Allocated', sizeField(info.allocatedBytes)],
    ['In use', info.inUse ? `yes${info.holderPids.length ? ` (pid ${info.holderPids.join(', ')})` : ''}` : 'no'],
  ]);
}

/** `disk info nbd://…`: what the NBD server reports for the export (read-only connection). */
async function printNbdInfo(spec: string, json: boolean): Promise<void> {
  const info = await nbdDiskInfo(spec);
  if (json) {
    printJson(info);
    return;
  }
  const yesNo = (b: boolean): string => (b ? 'yes' : 'no');
  printFields([
    ['Disk', spec],
    ['Size', sizeField(info.sizeBytes)],
    ['Sector size', `${info.sectorSizeBytes}${info.blockSize ? ` (server minimum block size ${info.blockSize.minimumBytes})` : ' (server sent no block size; default)'}`],
    ['Read-only', yesNo(info.serverReadOnly)],
    ['Flush / FUA', `${yesNo(info.canFlush)} / ${yesNo(info.canFua)}`],
    ['Trim / zero', `${yesNo(info.canTrim)} / ${yesNo(info.canWriteZeroes)}`],
    ['Structured replies', yesNo(info.structuredReplies)],
  ]);
}
