// The LVM-style commands' actions, loaded when one runs (tools/commands/lvm.ts registers them).
// The node side (src/node: running as a cluster node, lock-outs, container failover, pvmove) is
// imported where a command needs it: a report or a host-local change does not load it.

import { SanboxError, UsageError } from '../../src/errors.js';
import { dashId } from '../../src/format/lvm/uuid.js';
import { LVM_SECTOR_BYTES, lvExtentCount } from '../../src/format/lvm/vg-model.js';
import { parseSizeBytes } from '../../src/units.js';
import path from 'node:path';
import { entryLine } from '../../src/format/devices-file.js';
import { deviceList, normalizeSpec } from '../../src/volume/devices.js';
import { addDevice, delDevice, deviceEntryFor, DEVICES_FILE_ENV, devicesFilePath, readDevicesFile, writeDevicesFile } from '../../src/volume/devices-file.js';
import { applyLvChange, applyVgChange, parseReadAhead, parseTag, type LvChange, type TagChange, type VgChange } from '../../src/volume/change.js';
import { claimLv, describeClaim, type LvClaim } from '../../src/volume/lv-contents.js';
import { clusterOfImage, containerCreate, CONTAINER_KINDS, parseContainerKind, syncContainerMembers, systemIdOf, type ContainerRequest } from '../../src/volume/container.js';
import type { ContainerKind, ContainerRecord } from '../../src/format/container.js';
import { createNotes, resizeNotes } from '../../src/volume/size-notes.js';
import {
  commitContext,
  lvCreate,
  lvRemove,
  lvRename,
  lvResize,
  pvCreate,
  pvRemove,
  splitLvPath,
  vgCreate,
  vgExtend,
  vgReduce,
  vgModify,
  vgRemove,
  withReportSession,
  withSession,
  type LvmContext,
  type SizeRequest,
} from '../../src/volume/manager.js';
import { lvRows, pvRows, segRows, vgRow } from '../../src/volume/report.js';
import { buildReport, fieldHelp, pvSubjects, renderJson, renderText, vgSubject } from '../../src/volume/report-query.js';
import { hostRanges, losetupCommand, lvDisplay, pvDisplay, vgDisplay } from '../../src/volume/display.js';
import type { ReportName } from '../../src/volume/report-fields.js';
import { parseUnits } from '../../src/volume/units-format.js';
import { ctime, findVg, vgModels, type VgHandle } from '../../src/volume/vg.js';
import { resolveMoves } from '../../src/volume/pvmove.js';
import { confirm } from '../confirm.js';
import { printJson } from '../output.js';
import { nodeNumberArg } from '../image-arg.js';
import { commandDevices, NO_DEVICES, type LvmCluster } from '../../src/volume/lvm-cluster.js';

function context(cluster?: LvmCluster): LvmContext {
  return { ...commitContext(['sanbox', ...process.argv.slice(2)].join(' ')), cluster };
}

function devicesOf(named: string[], opts: { devices?: string }): string[] {
  const list = deviceList(named, opts.devices);
  if (list.length === 0) throw new UsageError(NO_DEVICES);
  return list;
}

/** The command's devices and, run as a node, the cluster's device list (the PVs other nodes added). */
function devicesFor(named: string[], opts: { devices?: string }, cluster: LvmCluster | undefined): Promise<string[]> {
  return commandDevices(named, opts.devices, cluster?.image);
}

/** --node N (with --cluster IMG): the command runs as node N, taking the cluster locks (docs/containers.md). */
interface NodeOpts {
  cluster?: string;
  node?: string;
  /** Set by `sanbox ctl IMG N lvm …`: node N must be running. */
  ctl?: boolean;
}

/** Runs `fn` as node N when --node is given, else as before (host-local locks only). */
async function asNode<T>(o: NodeOpts, fn: (cluster: LvmCluster | undefined) => Promise<T>): Promise<T> {
  if (o.node === undefined) {
    if (o.ctl) throw new UsageError('--ctl goes with --node N');
    return fn(undefined);
  }
  const nodeId = nodeNumberArg(o.node);
  if (o.cluster === undefined) throw new UsageError('--node N goes with --cluster IMG (the cluster node N belongs to)');
  const { withLvmNode } = await import('../../src/node/lvm-node.js');
  return withLvmNode({ clusterImage: o.cluster, nodeId, requireRunning: o.ctl === true }, fn);
}

/** `-L [+|-]SIZE` (default unit MiB) or `-l [+|-]N[%VG|%FREE]`. */
function parseSizeRequest(opts: { size?: string; extents?: string }, allowSign: boolean): SizeRequest {
  if ((opts.size === undefined) === (opts.extents === undefined)) throw new UsageError('give exactly one of -L SIZE or -l EXTENTS');
  const text = (opts.size ?? opts.extents)!;
  const m = /^([+-]?)(.*)$/.exec(text)!;
  const sign = m[1] as '' | '+' | '-';
  if (sign && !allowSign) throw new UsageError(`a relative size ('${text}') is not allowed here`);
  if (opts.size !== undefined) return { kind: 'bytes', sign, bytes: parseSizeBytes(m[2]!, 'm') };
  const p = /^(\d+)%(VG|FREE)$/i.exec(m[2]!);
  if (p) return { kind: 'percent', sign, percent: Number(p[1]), of: p[2]!.toUpperCase() as 'VG' | 'FREE' };
  if (!/^\d+$/.test(m[2]!)) throw new UsageError(`invalid extent count '${text}' (examples: 10, +5, 50%FREE, 100%VG)`);
  return { kind: 'extents', sign, extents: Number(m[2]) };
}

function parseStripes(opts: { stripes?: string; stripesize?: string }): { stripes?: number; stripeSizeSectors?: number } {
  const out: { stripes?: number; stripeSizeSectors?: number } = {};
  if (opts.stripes !== undefined) {
    if (!/^\d+$/.test(opts.stripes) || Number(opts.stripes) < 1) throw new UsageError(`invalid stripe count '${opts.stripes}'`);
    out.stripes = Number(opts.stripes);
  }
  if (opts.stripesize !== undefined) {
    const bytes = parseSizeBytes(opts.stripesize, 'k');
    if (bytes % LVM_SECTOR_BYTES !== 0) throw new UsageError(`stripe size '${opts.stripesize}' is not a multiple of 512 bytes`);
    out.stripeSizeSectors = bytes / LVM_SECTOR_BYTES;
  }
  return out;
}

const say = (line: string): void => void process.stdout.write(`  ${line}\n`);

export async function lvmdevices(o: { adddev?: string; deldev?: string; devicesfile?: string; json: boolean }): Promise<void> {
  const file = o.devicesfile !== undefined ? path.resolve(o.devicesfile) : devicesFilePath();
  if (file === undefined) throw new UsageError(`the devices file is turned off (${DEVICES_FILE_ENV} is empty); pass --devicesfile PATH`);
  if (o.adddev !== undefined && o.deldev !== undefined) throw new UsageError('give one of --adddev and --deldev');
  let contents = readDevicesFile(file);
  const createdBy = `sanbox lvmdevices pid ${process.pid} at ${ctime(new Date())}`;
  if (o.adddev !== undefined) {
    const spec = normalizeSpec(o.adddev);
    if (/\s/.test(spec)) throw new UsageError(`'${spec}': the devices file cannot name a path with white space`);
    const entry = await deviceEntryFor(spec);
    const pvId = entry.pvId;
    contents = addDevice(contents, entry);
    writeDevicesFile(file, contents, createdBy);
    say(`Added ${spec} to the devices file ${file}${pvId ? ` (PV ${dashId(pvId)})` : ''}.`);
    return;
  }
  if (o.deldev !== undefined) {
    const spec = normalizeSpec(o.deldev);
    contents = delDevice(file, contents, spec);
    writeDevicesFile(file, contents, createdBy);
    say(`Removed ${spec} from the devices file ${file}.`);
    return;
  }
  if (o.json) return printJson({ devicesfile: file, devices: contents.entries.map((e) => ({ ...e, pvId: e.pvId ?? null })) });
  for (const e of contents.entries) say(`Device ${e.devName} ${entryLine(e)}`);
}

export function pvcreate(images: string[], o: NodeOpts & { metadatasize?: string; metadatacopies: string; dataalignment: string; force: boolean }): Promise<void> {
  return asNode(o, async (cluster) => {
    const copies = /^\d+$/.test(o.metadatacopies) ? Number(o.metadatacopies) : NaN;
    if (![0, 1, 2].includes(copies)) throw new UsageError(`--metadatacopies must be 0, 1 or 2, not '${o.metadatacopies}'`);
    const done = await pvCreate(images.map(normalizeSpec), {
      metadataCopies: copies,
      metadataSizeBytes: o.metadatasize === undefined ? undefined : parseSizeBytes(o.metadatasize, 'm'),
      dataAlignmentBytes: parseSizeBytes(o.dataalignment, 'k'),
      force: o.force,
    }, cluster);
    for (const d of done) say(`Physical volume "${d.device}" successfully created.`);
  });
}

export function pvremove(images: string[], o: NodeOpts): Promise<void> {
  return asNode(o, async (cluster) => {
    const specs = images.map(normalizeSpec);
    await pvRemove(specs, cluster);
    for (const s of specs) say(`Labels on physical volume "${s}" successfully wiped.`);
  });
}

export function pvs(images: string[], o: ReportCliOptions & NodeOpts & { devices?: string; json: boolean }): Promise<void> {
  return asNode(o, async (cluster) => {
    if (o.json) {
      const rows = await withReportSession(await devicesFor(images, o, cluster), cluster, async (s) => pvRows(s.scan));
      return printJson({ pv: rows });
    }
    const named = images.map(normalizeSpec);
    await lvmReport('pvs', await devicesFor(named, o, cluster), named, false, o, cluster);
  });
}

export function vgcreate(vg: string, images: string[], o: ContainerOpts & NodeOpts & { physicalextentsize: string; devices?: string }): Promise<void> {
  return asNode(o, async (cluster) => {
      const bytes = parseSizeBytes(o.physicalextentsize, 'm');
      if (bytes === 0 || bytes % LVM_SECTOR_BYTES !== 0) throw new UsageError(`-s: extent size '${o.physicalextentsize}' must be a positive multiple of 512 bytes`);
      const pvs = images.map(normalizeSpec);
      const req = await containerRequest(o);
      if (req) {
        const r = await containerCreate(devicesOf(pvs, o), pvs, vg, bytes / LVM_SECTOR_BYTES, req, context(cluster));
        say(`Volume group "${vg}" successfully created as a ${describeContainer(r)}`);
      } else {
        if (o.owner !== undefined || (o.cluster !== undefined && cluster === undefined)) throw new UsageError('vgcreate: --owner and --cluster go with --container (or --cluster with --node)');
        await vgCreate(devicesOf(pvs, o), pvs, vg, bytes / LVM_SECTOR_BYTES, context(cluster));
        say(`Volume group "${vg}" successfully created`);
      }
    });
}

/** vgexport or vgimport: the container kind `cmd` gives, from one of the kinds `from`. */
export function deport(cmd: 'vgexport' | 'vgimport', kind: ContainerKind, from: readonly ContainerKind[]): (vg: string, o: NodeOpts & { devices?: string }) => Promise<void> {
  return (vg, o) =>
    asNode(o, async (cluster) => {
      const why = cmd === 'vgexport' ? 'it is already exported' : 'only an exported (deported) one is imported';
      const { changeContainer } = await import('../../src/node/failover.js');
      await changeContainer(await devicesFor([], o, cluster), vg, { kind }, context(cluster), { expect: { kinds: [...from], why }, clusterImage: o.cluster, requester: nodeOption(o.node), preempt: cluster?.preempt });
      say(`Volume group "${vg}" successfully ${cmd === 'vgexport' ? 'exported' : 'imported'}`);
    });
}

export function vgextend(vg: string, images: string[], o: NodeOpts & { devices?: string }): Promise<void> {
  return asNode(o, async (cluster) => {
    const pvs = images.map(normalizeSpec);
    await vgExtend(devicesOf(pvs, o), vg, pvs, context(cluster));
    await syncContainerMembers(devicesOf(pvs, o), vg, cluster);
    say(`Volume group "${vg}" successfully extended`);
  });
}

export function vgreduce(vg: string, images: string[], o: NodeOpts & { devices?: string }): Promise<void> {
  return asNode(o, async (cluster) => {
    const pvs = images.map(normalizeSpec);
    await vgReduce(devicesOf(pvs, o), vg, pvs, context(cluster));
    await syncContainerMembers(devicesOf(pvs, o), vg, cluster);
    for (const p of pvs) say(`Removed "${p}" from volume group "${vg}"`);
  });
}

export function vgremove(vg: string, o: NodeOpts & { force: boolean; yes: boolean; devices?: string }): Promise<void> {
  return asNode(o, async (cluster) => {
    const devices = await devicesFor([], o, cluster);
    const { lvs } = await peekVg(devices, vg);
    const claims: LvClaim[] = [];
    try {
      for (const lv of lvs) claims.push(await claimLv(devices, vg, lv.name));
      if (lvs.length) {
        const held = lvs.map((lv, i) => {
          const what = describeClaim(claims[i]!);
          return what === undefined ? lv.name : `${lv.name} (${what})`;
        });
        const what = `volume group "${vg}" contains ${lvs.length} logical volume${lvs.length > 1 ? 's' : ''}: ${held.join(', ')}`;
        await confirm(`Do you really want to remove volume group "${vg}" containing ${lvs.length} logical volumes?`, `${what}; removing it removes them`, o.force || o.yes);
      }
      await vgRemove(devices, vg, true, context(cluster));
    } finally {
      for (const c of claims) c.release();
    }
    say(`Volume group "${vg}" successfully removed`);
  });
}

/** Why vgchange -a and lvchange -a without a node are refused: what activates an LV in sanbox. */
const activation = 'sanbox maps no LV in the kernel (no device-mapper); an LV is activated in a running node, which holds its LV lock: lvchange -aey|-asy|-an VG/LV --cluster IMG --node N (or sanbox ctl IMG N lvm lvchange …)';

export function vgchange(vg: string, o: ContainerOpts & NodeOpts & { addtag: string[]; deltag: string[]; logicalvolume?: string; maxphysicalvolumes?: string; activate?: string; devices?: string }): Promise<void> {
  return asNode(o, async (cluster) => {
      if (o.activate !== undefined) throw new UsageError(`vgchange -a: ${activation}`);
      const req = await containerRequest(o);
      if (req) {
        if (o.addtag.length || o.deltag.length || o.logicalvolume !== undefined || o.maxphysicalvolumes !== undefined) throw new UsageError('vgchange: a container change goes alone (no tags, -l, -p)');
        const { changeContainer } = await import('../../src/node/failover.js');
        const r = await changeContainer(await devicesFor([], o, cluster), vg, req, context(cluster), { clusterImage: o.cluster, requester: nodeOption(o.node), preempt: cluster?.preempt });
        say(`Volume group "${vg}" is now a ${describeContainer(r)}`);
        return;
      }
      const change: VgChange = {};
      change.tags = tagChange(o);
      if (o.logicalvolume !== undefined) change.maxLv = parseCount(o.logicalvolume, '-l');
      if (o.maxphysicalvolumes !== undefined) change.maxPv = parseCount(o.maxphysicalvolumes, '-p');
      if (Object.values(change).every((v) => v === undefined)) throw new UsageError('vgchange: nothing to change (--addtag, --deltag, -l, -p)');
      await vgModify(await devicesFor([], o, cluster), vg, context(cluster), (model) => applyVgChange(model, change));
      say(`Volume group "${vg}" successfully changed`);
    });
}

async function changeLv(spec: string, o: { addtag: string[]; deltag: string[]; readahead?: string; devices?: string }, cluster: LvmCluster | undefined): Promise<void> {
  const { vg, lv } = splitLvPath(spec);
  const change: LvChange = {};
  change.tags = tagChange(o);
  if (o.readahead !== undefined) change.readAhead = parseReadAhead(o.readahead);
  if (Object.values(change).every((v) => v === undefined)) throw new UsageError('lvchange: nothing to change (--addtag, --deltag, -r)');
  let notes: string[] = [];
  await vgModify(await devicesFor([], o, cluster), vg, context(cluster), (model) => void (notes = applyLvChange(model, lv, change)));
  for (const n of notes) say(n);
  say(`Logical volume ${vg}/${lv} changed.`);
}

export async function lvchange(spec: string, o: NodeOpts & { addtag: string[]; deltag: string[]; readahead?: string; activate?: string; devices?: string }): Promise<void> {
  if (o.activate !== undefined) {
    const mode = ACTIVATION_MODES[o.activate];
    if (mode === undefined) throw new UsageError(`lvchange -a: '${o.activate}' is not one of ${Object.keys(ACTIVATION_MODES).join(', ')} (y is ey, exclusive)`);
    if (o.node === undefined || o.cluster === undefined) throw new UsageError(`lvchange -a: ${activation}`);
    if (o.addtag.length || o.deltag.length || o.readahead !== undefined) throw new UsageError('lvchange: -a goes alone (no tags, -r)');
    splitLvPath(spec);
    const nodeId = nodeNumberArg(o.node);
    const { changeActivation } = await import('../../src/node/lvm-node.js');
    const a = await changeActivation({ clusterImage: o.cluster, nodeId, lv: spec, mode, devices: deviceList([], o.devices) });
    const how = a.mode === 'ex' ? 'exclusively' : a.mode === 'sh' ? 'shared' : 'locally (a local VG: no cluster lock)';
    say(mode === 'un' ? `Logical volume ${spec} deactivated on node ${nodeId}.` : `Logical volume ${spec} activated ${how} on node ${nodeId}${a.lock ? ` (LV lock ${a.lock})` : ''}.`);
    return;
  }
  return asNode(o, (cluster) => changeLv(spec, o, cluster));
}

export function vgs(names: string[], o: ReportCliOptions & NodeOpts & { devices?: string; json: boolean }): Promise<void> {
  return asNode(o, async (cluster) => {
    if (o.json) {
      const rows = await withReportSession(await devicesFor([], o, cluster), cluster, async (s) => selectVgs(s.scan, names).map((h) => vgRow(h.vg, h.missing.length > 0)), names);
      return printJson({ vg: rows });
    }
    await lvmReport('vgs', await devicesFor([], o, cluster), names, false, o, cluster);
  });
}

export async function vgdisplay(names: string[], o: { devices?: string; json: boolean }): Promise<void> {
  const vgs = await withSession(devicesOf([], o), { readOnly: true, guard: 'none' }, async (s) => selectVgs(s.scan, names).map((h) => vgSubject(s.scan, h.vg, h.missing.length > 0)));
  if (o.json) return printJson({ vg: vgs.map((v) => ({ ...v.row, vg_mda_count: v.pvs.reduce((n, p) => n + p.mdas.length, 0) })) });
  for (const v of vgs) process.stdout.write(vgDisplay(v));
}

export async function pvdisplay(images: string[], o: { maps: boolean; devices?: string; json: boolean }): Promise<void> {
  const named = images.map(normalizeSpec);
  const pvs = await withSession(devicesOf(named, o), { readOnly: true, guard: 'none' }, async (s) => {
    const vgs = selectVgs(s.scan, []).map((h) => vgSubject(s.scan, h.vg, h.missing.length > 0));
    const all = pvSubjects(s.scan, vgs);
    for (const n of named) if (!all.some((p) => p.row.pv_name === n)) throw new SanboxError('EINVAL', `${n}: not an LVM physical volume (no label in sectors 0-3)`, { device: n });
    return named.length ? all.filter((p) => named.includes(p.row.pv_name)) : all;
  });
  if (o.json) return printJson({ pv: pvs.map((p) => p.row) });
  for (const p of pvs) process.stdout.write(pvDisplay(p, o.maps));
}

export async function lvdisplay(targets: string[], o: { maps: boolean; all: boolean; devices?: string; json: boolean }): Promise<void> {
  const shown = await withSession(devicesOf([], o), { readOnly: true, guard: 'none' }, async (s) => {
    const vgNamesWanted = [...new Set(targets.map((t) => t.split('/')[0]!))];
    const out = [];
    for (const h of selectVgs(s.scan, vgNamesWanted)) {
      const vg = vgSubject(s.scan, h.vg, h.missing.length > 0);
      const pvName = (key: string): string => h.pvByKey.get(key)?.dev.name ?? key;
      const image = (key: string): { image: string; sectorSizeBytes: number } | undefined => {
        const pv = h.pvByKey.get(key);
        return pv && { image: pv.dev.name, sectorSizeBytes: pv.dev.sectorSizeBytes };
      };
      for (const lv of h.vg.lvs) {
        if (!o.all && !lv.status.includes('VISIBLE')) continue;
        const wanted = targets.length === 0 || targets.includes(h.vg.name) || targets.includes(`${h.vg.name}/${lv.name}`);
        if (!wanted) continue;
        const subject = { vg, lv };
        out.push({ subject, pvName, hosts: hostRanges(subject, image) });
      }
    }
    for (const t of targets) {
      if (t.includes('/') && !out.some((x) => `${x.subject.vg.vg.name}/${x.subject.lv.name}` === t)) throw new SanboxError('ENOENT', `logical volume ${t} not found`);
    }
    return out;
  });
  if (o.json) {
    return printJson({
      lv: shown.map((x) => ({
        ...lvRows(x.subject.vg.vg, true).find((r) => r.lv_uuid === dashId(x.subject.lv.id))!,
        host_ranges: x.hosts.map((h) => h && { ...h, losetup: losetupCommand(h) }),
      })),
    });
  }
  for (const x of shown) process.stdout.write(lvDisplay(x.subject, { maps: o.maps, pvName: x.pvName, hosts: x.hosts }));
}

export function lvcreate(vg: string, o: NodeOpts & { name: string; size?: string; extents?: string; stripes?: string; stripesize?: string; devices?: string }): Promise<void> {
  return asNode(o, async (cluster) => {
      const size = parseSizeRequest(o, false);
      const devices = await devicesFor([], o, cluster);
      const stripes = parseStripes(o);
      const before = await peekVg(devices, vg);
      const lv = await lvCreate(devices, vg, o.name, { size, ...stripes }, context(cluster));
      for (const n of createNotes(before.extentBytes, size, stripes.stripes ?? 1, lvExtentCount(lv))) say(n);
      say(`Logical volume "${o.name}" created.`);
    });
}

/** lvextend or lvreduce. */
export function resize(mode: 'extend' | 'reduce'): (spec: string, o: { size?: string; extents?: string; stripes?: string; stripesize?: string; devices?: string; yes?: boolean } & LockoutFlags) => Promise<void> {
  return async (spec, o) => {
    const { vg, lv } = splitLvPath(spec);
    const req = parseSizeRequest(o, true);
    if ((mode === 'extend' && req.sign === '-') || (mode === 'reduce' && req.sign === '+')) throw new UsageError(`lv${mode} takes ${mode === 'extend' ? '+' : '-'}SIZE or an absolute size`);
    const cluster = lockoutRequest(o);
    const devices = await lockoutDevices(o, cluster);
    const before = await peekVg(devices, vg);
    // Reducing cuts the end off whatever the LV holds: claim it (refused while open, unless the
    // cluster lock-out makes the nodes that have it open let go) and ask.
    const claim = mode === 'reduce' ? await claimLv(devices, vg, lv, cluster === undefined) : undefined;
    try {
      const held = claim && describeClaim(claim);
      if (held !== undefined) await confirm(`Do you really want to reduce ${vg}/${lv}, which holds ${held}? THIS MAY DESTROY YOUR DATA.`, `${vg}/${lv} holds ${held}; reducing it may destroy that`, o.yes === true);
      const out = await maybeLockedOut(cluster, devices, vg, [lv], (held) => lvResize(devices, vg, lv, req, mode, parseStripes(o), context(held)), mode === 'reduce' ? 'reduce' : undefined);
      const from = before.lvs.find((l) => l.name === lv)?.extents ?? 0;
      for (const n of resizeNotes(`${vg}/${lv}`, before.extentBytes, req, from, lvExtentCount(out))) say(n);
    } finally {
      claim?.release();
    }
    say(`Logical volume ${vg}/${lv} successfully resized.`);
  };
}

export function lvrename(a: string, b: string, c: string | undefined, o: NodeOpts & { devices?: string }): Promise<void> {
  return asNode(o, async (cluster) => {
    const { vg, lv } = c === undefined ? splitLvPath(a) : { vg: a, lv: b };
    const target = c ?? b;
    // lvrename renames within one VG; a VG/NEW naming another VG is a mistake, not a move.
    const to = target.includes('/') ? splitLvPath(target) : { vg, lv: target };
    if (to.vg !== vg) throw new UsageError(`lvrename: '${target}' is in volume group ${to.vg}, but ${lv} is in ${vg}; an LV cannot be renamed into another volume group`);
    await lvRename(await devicesFor([], o, cluster), vg, lv, to.lv, context(cluster));
    say(`Renamed "${lv}" to "${to.lv}" in volume group "${vg}"`);
  });
}

export async function pvmove(srcArg: string | undefined, dstArg: string | undefined, o: { name?: string; abort: boolean; devices?: string } & LockoutFlags): Promise<void> {
  const cluster = lockoutRequest(o);
  const [src, dst] = [srcArg, dstArg].map((x) => (x === undefined ? undefined : normalizeSpec(x)));
  if (o.abort && dst !== undefined) throw new UsageError('pvmove --abort takes at most the source PV');
  const devices = await commandDevices([src, dst].filter((x): x is string => x !== undefined), o.devices, cluster?.clusterImage);
  const moves = await resolveMoves(devices, src, o.abort ? undefined : dst, o.abort ? undefined : o.name);
  const { runPvMoves } = await import('../../src/node/lvm-cluster.js');
  await runPvMoves(
    { devices, moves, abort: o.abort, ...(cluster !== undefined ? { cluster } : {}), context },
    (m, c, total) => say(`${c.from}: Moved: ${(((total - c.left) * 100) / Math.max(1, total)).toFixed(2)}% (${m.vg}/${c.lv} LE ${c.le}${c.stripe !== undefined ? ` stripe ${c.stripe}` : ''} to ${c.to}, seqno ${c.seqno})`),
    (d) => {
      const m = d.move;
      if (d.aborted) say(`Aborted the move of ${m.lv ?? 'every LV'} off PV ${m.srcPvId} in ${m.vg}; moved extents stay at the destination.`);
      else say(`${d.chunks} extents of ${m.lv ?? 'the LVs'} moved off PV ${m.srcPvId} in ${m.vg}.`);
      if (d.lockedOut !== undefined) say(`Locked out ${d.lockedOut.holders.length ? d.lockedOut.holders.map((n) => `node ${n}`).join(', ') : 'no node'}; the longest lock-out took ${d.lockedOut.maxLockoutMs.toFixed(0)} ms.`);
    },
  );
}

export async function lvremove(spec: string, o: { yes: boolean; devices?: string } & LockoutFlags): Promise<void> {
  const { vg, lv } = splitLvPath(spec);
  const cluster = lockoutRequest(o);
  const devices = await lockoutDevices(o, cluster);
  const claim = await claimLv(devices, vg, lv, cluster === undefined);
  try {
    const held = describeClaim(claim);
    if (held !== undefined) await confirm(`Do you really want to remove ${vg}/${lv}, which holds ${held}?`, `${vg}/${lv} holds ${held}; removing it destroys that`, o.yes);
    await maybeLockedOut(cluster, devices, vg, [lv], (h) => lvRemove(devices, vg, lv, context(h)), 'remove');
  } finally {
    claim.release();
  }
  say(`Logical volume "${lv}" successfully removed.`);
}

export function lvs(names: string[], o: ReportCliOptions & NodeOpts & { segments: boolean; all: boolean; devices?: string; json: boolean }): Promise<void> {
  return asNode(o, async (cluster) => {
    if (!o.json) return lvmReport(o.segments ? 'segs' : 'lvs', await devicesFor([], o, cluster), names, o.all, o, cluster);
    await withReportSession(await devicesFor([], o, cluster), cluster, async (s) => {
      const vgs = selectVgs(s.scan, [...new Set(names.map((n) => n.split('/')[0]!))]);
      // Rows of the LVs named as VG/LV, or of every LV of the VGs named.
      const wanted = (r: { vg_name: string; lv_name: string }): boolean => names.length === 0 || names.includes(r.vg_name) || names.includes(`${r.vg_name}/${r.lv_name}`);
      if (o.segments) return printJson({ seg: vgs.flatMap((h) => segRows(h.vg, (key) => h.pvByKey.get(key)?.dev.name ?? key, o.all)).filter(wanted) });
      printJson({ lv: vgs.flatMap((h) => lvRows(h.vg, o.all)).filter(wanted) });
    }, [...new Set(names.map((n) => n.split('/')[0]!))]);
  });
}

/** lvchange -a VALUE: lvm2's activation values sanbox takes (y is exclusive, as with lvmlockd). */
const ACTIVATION_MODES: Record<string, 'ex' | 'sh' | 'un'> = { y: 'ex', ey: 'ex', sy: 'sh', n: 'un' };

interface ReportCliOptions {
  options: string[];
  sort: string[];
  noheadings: boolean;
  nosuffix: boolean;
  units?: string;
  separator?: string;
  aligned: boolean;
  binary: boolean;
  reportformat: string;
}

/** Runs an lvm2-style report over the devices and prints it. */
async function lvmReport(report: ReportName, devices: string[], names: string[], all: boolean, o: ReportCliOptions, cluster: LvmCluster | undefined): Promise<void> {
  if (o.reportformat !== 'basic' && o.reportformat !== 'json') throw new UsageError(`invalid --reportformat '${o.reportformat}' (basic or json)`);
  if (o.options.some((x) => x === 'help' || x === '?')) return void process.stdout.write(fieldHelp(report));
  const req = { options: o.options, sort: o.sort, units: parseUnits(o.units ?? 'r'), suffix: !o.nosuffix, binary: o.binary };
  const r = await withReportSession(devices, cluster, async (s) => {
    // pvs shows the VG fields of every VG its PVs belong to; vgs and lvs only the VGs named
    // (lvs also takes VG/LV, as lvm2 does).
    const vgNames = [...new Set(names.map((n) => n.split('/')[0]!))];
    const vgs = selectVgs(s.scan, report === 'pvs' ? [] : vgNames);
    const lvs = names.length && report !== 'pvs' && report !== 'vgs' ? new Set(names) : undefined;
    for (const n of lvs ?? []) {
      const [vg, lv] = n.split('/');
      if (lv !== undefined && !vgs.some((h) => h.vg.name === vg && h.vg.lvs.some((l) => l.name === lv))) throw new SanboxError('ENOENT', `logical volume ${n} not found`);
    }
    const pvs = report === 'pvs' && names.length ? new Set(names) : undefined;
    for (const n of pvs ?? []) if (!s.scan.some((x) => x.dev.name === n && x.pv)) throw new SanboxError('EINVAL', `${n}: not an LVM physical volume (no label in sectors 0-3)`, { device: n });
    return buildReport(report, { scan: s.scan, vgs, all, lvs, pvs }, req);
  }, report === 'pvs' ? [] : [...new Set(names.map((n) => n.split('/')[0]!))]);
  process.stdout.write(o.reportformat === 'json' ? renderJson(r) : renderText(r, { headings: !o.noheadings, separator: o.separator, aligned: o.aligned }));
}

function selectVgs(scan: Parameters<typeof vgModels>[0], names: string[]): VgHandle[] {
  const all = vgModels(scan);
  // A VG with a missing PV is listed, as lvm2 lists it: with a warning and 'p' in its attributes.
  const handles = (names.length === 0 ? [...all.keys()].sort() : names).map((n) => findVg(scan, n));
  for (const h of handles) {
    for (const m of h.missing) process.stderr.write(`  WARNING: VG ${h.vg.name} is missing PV ${dashId(m.id)} (last seen on ${m.device ?? 'an unknown device'}).\n`);
    // As lvm2 does, the highest seqno wins; say so when some metadata areas are behind.
    if (h.staleDevices.length) {
      process.stderr.write(`  WARNING: Inconsistent metadata found for VG ${h.vg.name}: older than seqno ${h.vg.seqno} on ${[...new Set(h.staleDevices)].join(', ')}; the next change rewrites them.\n`);
    }
  }
  return handles;
}

interface LockoutFlags {
  cluster?: string;
  node?: string;
  nowait?: boolean;
  ctl?: boolean;
}

function lockoutRequest(o: LockoutFlags): LockoutRequest | undefined {
  if (o.cluster === undefined) {
    if (o.node !== undefined || o.nowait === true) throw new UsageError('--node and --nowait go with --cluster');
    return undefined;
  }
  if (o.node === undefined) throw new UsageError('--cluster needs --node N (the node to run the change as)');
  return { clusterImage: o.cluster, nodeId: nodeNumberArg(o.node), nowait: o.nowait === true, requireRunning: o.ctl === true };
}

type LockoutRequest = { clusterImage: string; nodeId: number; nowait: boolean; requireRunning: boolean };

/** The command's devices and, with --cluster, the cluster's device list. */
function lockoutDevices(o: { devices?: string }, cluster: LockoutRequest | undefined): Promise<string[]> {
  return commandDevices([], o.devices, cluster?.clusterImage);
}

/**
 * Runs the change locked out when --cluster was given (and says what the lock-out cost), else as
 * it is. `change` gets the node's cluster context it commits with (the lock-out's VG lock held).
 */
async function maybeLockedOut<T>(cluster: LockoutRequest | undefined, devices: string[], vg: string, lvs: string[], change: (held: LvmCluster | undefined) => Promise<T>, refuseMounted?: string): Promise<T> {
  if (cluster === undefined) return change(undefined);
  const { lockedOutChange } = await import('../../src/node/lvm-cluster.js');
  const { result, report } = await lockedOutChange({ ...cluster, devices, vg, lvs, ...(refuseMounted !== undefined ? { refuseMounted } : {}) }, change);
  say(`Locked out ${report.holders.length ? report.holders.map((n) => `node ${n}`).join(', ') : 'no node'} in ${report.lockoutMs.toFixed(0)} ms; change done in ${report.changeMs.toFixed(0)} ms at seqno ${report.seqno}.`);
  return result;
}

/** The VG's extent size and LVs, read before a change for the messages that describe it. */
async function peekVg(devices: string[], vg: string): Promise<{ extentBytes: number; lvs: { name: string; extents: number }[] }> {
  return withSession(devices, { readOnly: true, guard: 'none' }, async (s) => {
    const h = findVg(s.scan, vg);
    return { extentBytes: h.vg.extentSizeSectors * LVM_SECTOR_BYTES, lvs: h.vg.lvs.map((l) => ({ name: l.name, extents: lvExtentCount(l) })) };
  });
}

interface ContainerOpts {
  container?: string;
  owner?: string;
  cluster?: string;
  node?: string;
}

/** --node N: a node number, or undefined when not given. */
function nodeOption(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d{1,5}$/.test(text)) throw new UsageError(`--node takes a node number, not '${text}'`);
  return Number(text);
}

/** --container/--owner/--cluster as a request; undefined when neither --container nor --owner is given. */
async function containerRequest(o: ContainerOpts): Promise<ContainerRequest | undefined> {
  if (o.container === undefined && o.owner === undefined) return undefined;
  const req: ContainerRequest = {};
  if (o.container !== undefined) {
    if (!(CONTAINER_KINDS as readonly string[]).includes(o.container)) throw new UsageError(`--container: unknown kind '${o.container}' (one of ${CONTAINER_KINDS.join(', ')})`);
    req.kind = parseContainerKind(o.container);
  }
  if (o.owner === 'self') {
    const self = nodeOption(o.node);
    if (self === undefined) throw new UsageError('--owner self needs --node N (the node taking the container)');
    req.ownerNode = self;
  } else if (o.owner !== undefined) {
    if (!/^\d{1,5}$/.test(o.owner)) throw new UsageError(`--owner takes a node number or self, not '${o.owner}'`);
    req.ownerNode = Number(o.owner);
  }
  if (o.cluster !== undefined) req.cluster = await clusterOfImage(o.cluster);
  return req;
}

function describeContainer(r: ContainerRecord): string {
  const where = r.clusterName ? ` of cluster ${r.clusterName}` : '';
  if (r.kind === 'private') return `private container${where} owned by node ${r.ownerNode} (system ID ${systemIdOf(r.clusterName, r.ownerNode!)})`;
  if (r.kind === 'shared') return `shared container${where} (lock type ${r.lockType})`;
  return `${r.kind} container${where}`;
}

/** A non-negative count for -l/-p. */
function parseCount(text: string, flag: string): number {
  if (!/^\d{1,9}$/.test(text)) throw new UsageError(`${flag} takes a number, not '${text}'`);
  return Number(text);
}

function tagChange(o: { addtag: string[]; deltag: string[] }): TagChange | undefined {
  return o.addtag.length || o.deltag.length ? { add: o.addtag.map(parseTag), del: o.deltag.map(parseTag) } : undefined;
}
