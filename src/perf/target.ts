// Where a bench target lives outside sanbox, so fio and the page-cache preparation can reach the
// same bytes: an image file is itself; `nbd://…` goes to fio's nbd engine; VG/LV is a byte range
// of its PV's image when the LV is one linear segment (see fio.ts for why nothing else is).

import { schemeOf } from '../disk/index.js';
import { LVM_SECTOR_BYTES } from '../format/lvm/vg-model.js';
import { isLvSpec } from '../volume/resolve.js';
import { withSession } from '../volume/manager.js';
import type { FioTarget } from './fio.js';

export interface HostView {
  /** What fio is pointed at, or why it cannot be. */
  fio: FioTarget | { unreachable: string };
  /** A local file and offset the region lives at (page-cache preparation), when there is one. */
  file?: { filename: string; offsetBytes: number };
}

/** sanbox's own query parameters (timeout=, connect-timeout=) are not the NBD URI standard's: libnbd refuses them. */
const SANBOX_NBD_PARAMS = ['timeout', 'connect-timeout'];

/** The URI for fio's nbd engine (libnbd): `spec` without sanbox's own query parameters. */
export function fioNbdUri(spec: string): string {
  // The query is filtered as written (no re-encoding: socket=/run/x.sock stays as the user gave it).
  const q = spec.indexOf('?');
  if (q < 0) return spec;
  const kept = spec.slice(q + 1).split('&').filter((kv) => !SANBOX_NBD_PARAMS.includes(decodeURIComponent(kv.split('=')[0]!)));
  return kept.length > 0 ? `${spec.slice(0, q)}?${kept.join('&')}` : spec.slice(0, q);
}

/** The host view of `spec`'s first `regionBytes`. `devices` is the LVM device list for VG/LV. */
export async function hostView(spec: string, regionBytes: number, devices: string[]): Promise<HostView> {
  const scheme = schemeOf(spec);
  if (scheme === 'nbd' || scheme === 'nbd+unix') return { fio: { kind: 'nbd', uri: fioNbdUri(spec), sizeBytes: regionBytes } };
  if (scheme !== undefined) return { fio: { unreachable: `fio has no engine for ${scheme}://` } };
  if (!isLvSpec(spec)) {
    return { fio: { kind: 'file', filename: spec, offsetBytes: 0, sizeBytes: regionBytes }, file: { filename: spec, offsetBytes: 0 } };
  }
  const [vgName, lvName] = spec.split('/') as [string, string];
  // Read-only and unguarded: the caller already holds the LV open (exclusively) for the run.
  return withSession(devices, { readOnly: true, guard: 'none' }, async (s) => {
    const h = s.vg(vgName);
    const lv = h.vg.lvs.find((l) => l.name === lvName);
    if (!lv) return { fio: { unreachable: `${spec} not found` } };
    const segs = lv.segments;
    const seg = segs[0];
    if (segs.length !== 1 || !seg || seg.type !== 'striped' || seg.stripeCount !== 1) {
      return { fio: { unreachable: `${spec} has ${segs.length} segment(s)${seg && seg.stripeCount > 1 ? `, ${seg.stripeCount} stripes` : ''}: no single byte range of one PV for fio (it would need device-mapper)` } };
    }
    const area = seg.stripes[0]!;
    const pv = h.vg.pvs.find((p) => p.key === area.pv);
    const pvDev = h.pvByKey.get(area.pv)?.dev;
    if (!pv || !pvDev) return { fio: { unreachable: `${spec}: PV ${area.pv} is not available` } };
    if (schemeOf(pvDev.name) !== undefined) return { fio: { unreachable: `${spec} lives on ${pvDev.name}, not a local image` } };
    const offsetBytes = pv.peStartSectors * LVM_SECTOR_BYTES + area.firstPe * h.vg.extentSizeSectors * LVM_SECTOR_BYTES;
    return { fio: { kind: 'file', filename: pvDev.name, offsetBytes, sizeBytes: regionBytes }, file: { filename: pvDev.name, offsetBytes } };
  });
}
