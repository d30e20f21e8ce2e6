// Reading and changing the cluster's device list (src/format/device-list.ts) in the cluster image's
// `devices` region. Changes are made only under the global lock held ex (the caller's duty:
// src/volume/lvm-cluster.ts); reads need no lock (two copies, the newest valid one wins).

import path from 'node:path';
import type { BlockDevice } from '../disk/device.js';
import { schemeOf } from '../disk/open.js';
import { SanboxError } from '../errors.js';
import { decodeDeviceList, DEVICE_LIST_COPY_BYTES, DEVICE_LIST_PAYLOAD_BYTES, encodeDeviceListCopy, nextCopyIndex, type DeviceListEntry } from '../format/device-list.js';
import { openRegion } from '../heartbeat/cluster-image.js';

export type { DeviceListEntry };

/** The name a device has in the list: an image by its absolute path, an nbd:// export as given. */
export function listedName(spec: string): string {
  return schemeOf(spec) !== undefined ? spec : path.resolve(spec);
}

async function withRegion<T>(image: string | BlockDevice, readOnly: boolean, fn: (region: BlockDevice) => Promise<T>): Promise<T | undefined> {
  let region: Awaited<ReturnType<typeof openRegion>>;
  try {
    region = await openRegion(image, 'devices', { guard: 'none', readOnly });
  } catch (err) {
    // An image made before the device list: it opens, and has no list.
    if (err instanceof SanboxError && /has no region 'devices'/.test(err.message)) return undefined;
    throw err;
  }
  try {
    return await fn(region);
  } finally {
    await region.closeAll();
  }
}

async function readPayload(region: BlockDevice): Promise<Buffer> {
  const buf = Buffer.alloc(DEVICE_LIST_PAYLOAD_BYTES);
  await region.read(buf, 0);
  return buf;
}

/** The listed devices; undefined for an image without the list's region. */
export async function readClusterDevices(image: string | BlockDevice): Promise<DeviceListEntry[] | undefined> {
  return withRegion(image, true, async (region) => decodeDeviceList(await readPayload(region), { device: region.name }).entries);
}

/**
 * Applies `change` to the list and writes it as the next copy. The caller holds the global lock ex.
 * An image without the region is refused: a list nobody can read would silently go stale.
 */
export async function updateClusterDevices(image: string | BlockDevice, change: (entries: DeviceListEntry[]) => DeviceListEntry[]): Promise<DeviceListEntry[]> {
  const out = await withRegion(image, false, async (region) => {
    const payload = await readPayload(region);
    const cur = decodeDeviceList(payload, { device: region.name });
    const entries = change(cur.entries.map((e) => ({ ...e })));
    const same = entries.length === cur.entries.length && entries.every((e, i) => e.device === cur.entries[i]!.device && e.pvUuid === cur.entries[i]!.pvUuid && e.vg === cur.entries[i]!.vg);
    if (same) return entries;
    let copy: Buffer;
    try {
      copy = encodeDeviceListCopy({ seq: cur.seq + 1n, entries });
    } catch (err) {
      throw new SanboxError('EINVAL', `${region.name}: ${(err as Error).message}`, { device: region.name });
    }
    await region.write(copy, nextCopyIndex(payload) * DEVICE_LIST_COPY_BYTES);
    await region.flush();
    return entries;
  });
  if (out === undefined) {
    const name = typeof image === 'string' ? image : image.name;
    throw new SanboxError('EINVAL', `${name}: this cluster image was made before the cluster's device list (no 'devices' region); make a new one with sanbox cluster init to keep PVs in it`, { device: name });
  }
  return out;
}

/** The entries after a commit of `vg`: its PVs (device, uuid) listed as its own, PVs that left it orphans. */
export function withVgPvs(entries: DeviceListEntry[], vg: string, pvs: { device: string; pvUuid: string }[], leaving: { device: string; pvUuid: string }[] = []): DeviceListEntry[] {
  const out = entries.filter((e) => !pvs.some((p) => p.device === e.device) && !leaving.some((p) => p.device === e.device));
  for (const p of pvs) out.push({ device: p.device, pvUuid: p.pvUuid, vg });
  for (const p of leaving) out.push({ device: p.device, pvUuid: p.pvUuid, vg: '' });
  return out;
}
