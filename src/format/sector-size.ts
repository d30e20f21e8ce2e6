// The logical sector sizes sanbox emulates and records on disk (cluster image header, lockspace
// header, the sector-size sidecar): the kernel's 512-byte and 4Kn logical block sizes.

/** Logical sector sizes a device may have. */
export type SectorSize = 512 | 4096;
export const SECTOR_SIZES: readonly SectorSize[] = [512, 4096];

export function isSectorSize(n: number): n is SectorSize {
  return (SECTOR_SIZES as readonly number[]).includes(n);
}
