// LV activation in a running node (`lvchange -aey|-asy|-an VG/LV` through the node, issue 18
// item 2): as lvmlockd does it (reference/lvm2.md §7.2-7.3), the VG lock sh while the VG is read,
// then the LV lock — EX for exclusive, PR for shared activation — taken at once or refused (no
// queueing: a conflict names the holder nodes) and held by the node until deactivation, its stop,
// or its fencing.
//
// In a shared or private container the activation IS a LockedLv (src/volume/locked-lv.ts): the
// LV lock is held with its blocking callback, and the device the node serves for VG/LV (to the
// mount hook's ocfs2 volume, to any I/O through the node) is that LockedLv. So a layout change by
// any node (lvextend, lvreduce, lvremove, pvmove) makes the activation drain, let go, re-read the
// layout at the new seqno and resume, instead of waiting out the change's bound; a conflicting
// *activation* asks with NOQUEUE, which no holder hears, and is refused. Its PVs are opened
// through the node's provider (fence gate, fault rules, I/O counters), so an active LV is one the
// node can be fenced off. A local VG's activation takes no lock and serves the LV as opened.
//
// Who may activate (EVMS's container rules, reference/locking.md §5.2):
//   local     this node, without a cluster lock (a local VG is this host's)
//   private   the owner node only; anyone else is refused, naming the owner
//   shared    every node: exclusively (one at a time) or shared (many at once)
//   deported  nobody
// Every refusal is one line and changes nothing: activation writes no metadata.

import { SanboxError } from '../errors.js';
import { Mode } from '../dlm/compat-matrix.js';
import type { LvmMode } from '../volume/lvm-locks.js';
import { lvLockConflict, lvLockResource, withVgLock } from '../volume/lvm-locks.js';
import { LockedLv } from '../volume/locked-lv.js';
import { checkAgainstValue, type LvmCluster } from '../volume/lvm-cluster.js';
import { containerOf } from '../volume/container.js';
import { splitLvPath, withSession } from '../volume/manager.js';
import { assertChangeable } from '../volume/vg.js';
import type { ControlServer } from './control.js';
import type { ActivationStatus, RunningNode } from './node.js';

/** The container kind a VG's metadata shows, and a private one's owner node. */
async function kindOf(h: Parameters<typeof containerOf>[0]): Promise<{ kind: 'local' | 'private' | 'shared' | 'deported'; owner: number | undefined }> {
  const { record, lvmKind } = await containerOf(h);
  const kind = lvmKind ?? record?.kind ?? 'local';
  let owner = kind === 'private' ? record?.ownerNode : undefined;
  if (kind === 'private' && owner === undefined) {
    // No record (a VG made private by lvm2's own vgchange --systemid): the owner is in the system ID.
    const m = /-node(\d+)$/.exec(h.vg.systemId ?? '');
    owner = m ? Number(m[1]) : undefined;
  }
  return { kind, owner };
}

interface Active {
  status: ActivationStatus;
}

/** The activations of one node. One activation change at a time. */
export class NodeActivations {
  private readonly active = new Map<string, Active>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly node: RunningNode) {
    node.beforeStop(() => this.deactivateAll());
  }

  private serial<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The node's LVM view: its lock service, and the cluster image (device list) through its fenced handle. */
  async cluster(): Promise<LvmCluster> {
    const n = this.node;
    return { locks: await n.lockspace(), nodeId: n.nodeId, clusterName: n.info.config.clusterName, image: n.device, lockTimeoutMs: n.info.timing.lockTimeoutMs, timing: n.info.timing };
  }

  /** The mode `spec` is active in here, if it is. */
  modeOf(spec: string): ActivationStatus['mode'] | undefined {
    return this.active.get(spec)?.status.mode;
  }

  /** `auto`: shared for a shared container (several nodes mount one ocfs2 on it), else exclusive. */
  activate(spec: string, mode: LvmMode | 'auto', devices: string[] = []): Promise<ActivationStatus> {
    return this.serial(() => this.doActivate(spec, mode, devices));
  }

  deactivate(spec: string): Promise<ActivationStatus> {
    return this.serial(() => this.doDeactivate(spec));
  }

  async deactivateAll(): Promise<void> {
    for (const spec of [...this.active.keys()]) await this.deactivate(spec).catch(() => undefined);
  }

  private async doActivate(spec: string, asked: LvmMode | 'auto', devices: string[]): Promise<ActivationStatus> {
    const node = this.node;
    const { vg: vgName, lv: lvName } = splitLvPath(spec);
    const cur = this.active.get(spec);
    if (cur !== undefined) {
      if (cur.status.mode === asked || asked === 'auto' || cur.status.mode === 'local') return cur.status;
      throw new SanboxError('EBUSY', `${spec}: node ${node.nodeId} has it active ${cur.status.mode === 'ex' ? 'exclusively' : 'shared'} already; deactivate it (lvchange -an) first`);
    }
    const cluster = await this.cluster();
    const ls = await node.lockspace();
    const scanDevices = await node.provider.lvmDevices(devices);
    // lvm2 2.03.16 reads the VG under its lock sh for activation (lvm2.md §7.3); the LV's layout
    // is read and its lock taken under that same VG lock, so no change commits in between.
    const held = await withVgLock(cluster.locks, vgName, 'sh', (hold) =>
      withSession(scanDevices, { readOnly: true, guard: 'none' }, async (s) => {
        checkAgainstValue(vgName, s.vgNames().includes(vgName) ? s.vg(vgName).vg : undefined, hold, cluster);
        const h = s.vg(vgName);
        assertChangeable(h, 'activate the logical volumes of');
        const lv = h.vg.lvs.find((l) => l.name === lvName);
        if (lv === undefined) throw new SanboxError('ENOENT', `logical volume ${spec} not found`);
        const { kind, owner } = await kindOf(h);
        const mode: LvmMode = asked !== 'auto' ? asked : kind === 'shared' ? 'sh' : 'ex';
        if (kind === 'deported') throw new SanboxError('EINVAL', `${spec}: volume group ${vgName} is a deported container (exported): no node activates its logical volumes; vgimport it first`);
        if (kind === 'private' && owner !== node.nodeId) {
          throw new SanboxError('EINVAL', `${spec}: volume group ${vgName} is a private container owned by node ${owner ?? '?'} (system ID ${h.vg.systemId}); node ${node.nodeId} may not activate it${mode === 'sh' ? ' (not even shared)' : ''}`);
        }
        if (kind === 'local') return { lv, mode, locked: undefined };
        // The activation IS the LV's I/O device under its lock (src/volume/locked-lv.ts): it lets
        // go on a layout change's blocking notice and follows the change. A conflicting
        // activation is refused at once (NOQUEUE), naming the holders.
        const locked = await LockedLv.open(ls, vgName, () => node.provider.openLv(vgName, lvName), { mode: mode === 'ex' ? Mode.EX : Mode.PR, lockTimeoutMs: cluster.lockTimeoutMs, noqueue: true, vgLockHeld: true }).catch(async (err: unknown) => {
          throw await lvLockConflict(cluster.locks, vgName, { name: lvName, uuid: lv.id }, mode, err);
        });
        return { lv, mode, locked };
      }),
    { timeoutMs: cluster.lockTimeoutMs });
    const locked = held.locked;
    try {
      if (locked !== undefined) node.serveVolume(spec, locked);
      // Opened (and kept) through the provider: the node's fence gate covers every write to it.
      await node.volumeDevice(spec);
    } catch (err) {
      await locked?.close().catch(() => undefined);
      throw err;
    }
    const base = {
      lv: spec,
      lvUuid: held.lv.id,
      mode: locked === undefined ? ('local' as const) : held.mode,
      lock: locked === undefined ? null : lvLockResource(vgName, held.lv.id),
      activatedAt: new Date().toISOString(),
    };
    // Read at each `ctl status`: the activation follows layout changes.
    const status: ActivationStatus = {
      ...base,
      get seqno() {
        return locked?.generation ?? null;
      },
      get lockouts() {
        return locked?.pauses.length ?? 0;
      },
      get failed() {
        return locked?.failure?.message ?? null;
      },
    };
    this.active.set(spec, { status });
    node.activations.set(spec, status);
    return status;
  }

  private async doDeactivate(spec: string): Promise<ActivationStatus> {
    const node = this.node;
    const a = this.active.get(spec);
    if (a === undefined) throw new SanboxError('EINVAL', `${spec}: node ${node.nodeId} does not have it active`);
    if (node.mounts.has(spec)) throw new SanboxError('EBUSY', `${spec}: node ${node.nodeId} has it mounted; umount it first`);
    this.active.delete(spec);
    node.activations.delete(spec);
    // Closes the LV's device — for a cluster VG the activation's LockedLv: it drains and releases
    // the LV lock (unless the node heartbeats on it for its whole life: --volume).
    await node.leaveVolumeRegion(spec).catch(() => undefined);
    return a.status;
  }
}

function lvArg(req: Record<string, unknown>): string {
  const v = req.lv;
  if (typeof v !== 'string' || !/^[^/]+\/[^/]+$/.test(v)) throw new SanboxError('EINVAL', 'lv-activate/lv-deactivate: give the logical volume as VG/LV');
  return v;
}

/** Registers `lv-activate {lv, mode: ex|sh, devices?}` and `lv-deactivate {lv}`; returns the node's activations. */
export function registerActivationCommands(control: ControlServer, node: RunningNode): NodeActivations {
  const acts = new NodeActivations(node);
  control.handle('lv-activate', async (req) => {
    const mode = req.mode ?? 'ex';
    if (mode !== 'ex' && mode !== 'sh') throw new SanboxError('EINVAL', '"mode" must be ex or sh');
    const devices = req.devices ?? [];
    if (!Array.isArray(devices) || devices.some((d) => typeof d !== 'string' || d.length === 0)) throw new SanboxError('EINVAL', '"devices" must be a list of device names');
    return { activated: await acts.activate(lvArg(req), mode, devices as string[]) };
  });
  control.handle('lv-deactivate', async (req) => ({ deactivated: await acts.deactivate(lvArg(req)) }));
  return acts;
}
