// LV activation in a running node (`lvchange -aey|-asy|-an VG/LV` through the node, issue 18
// item 2): as lvmlockd does it (reference/lvm2.md §7.2-7.3), the VG lock sh while the VG is read,
// then the LV lock — EX for exclusive, PR for shared activation — taken at once or refused (no
// queueing: a conflict names the holder nodes) and held by the node until deactivation, its stop,
// or its fencing. The LV's device is opened through the node's provider (fence gate, fault rules,
// I/O counters), so an active LV is one the node can be fenced off.
//
// Who may activate (EVMS's container rules, reference/locking.md §5.2):
//   local     this node, without a cluster lock (a local VG is this host's)
//   private   the owner node only; anyone else is refused, naming the owner
//   shared    every node: exclusively (one at a time) or shared (many at once)
//   deported  nobody
// Every refusal is one line and changes nothing: activation writes no metadata.

import { SanboxError } from '../errors.js';
import type { HeldLock, LvmMode } from '../volume/lvm-locks.js';
import { lockLv, lvLockResource, withVgLock } from '../volume/lvm-locks.js';
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
  lock: HeldLock | undefined;
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
    const scanDevices = await node.provider.lvmDevices(devices);
    // lvm2 2.03.16 reads the VG under its lock sh for activation (lvm2.md §7.3).
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
        if (kind === 'local') return { lv, mode, lock: undefined };
        return { lv, mode, lock: await lockLv(cluster.locks, vgName, { name: lvName, uuid: lv.id }, mode) };
      }),
    { timeoutMs: cluster.lockTimeoutMs });
    try {
      // Opened (and kept) through the provider: the node's fence gate covers every write to it.
      await node.volumeDevice(spec);
    } catch (err) {
      await held.lock?.unlock().catch(() => undefined);
      throw err;
    }
    const status: ActivationStatus = {
      lv: spec,
      lvUuid: held.lv.id,
      mode: held.lock === undefined ? 'local' : held.mode,
      lock: held.lock === undefined ? null : lvLockResource(vgName, held.lv.id),
      activatedAt: new Date().toISOString(),
    };
    this.active.set(spec, { status, lock: held.lock });
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
    // Closes the LV's device (unless the node heartbeats on it for its whole life: --volume).
    await node.leaveVolumeRegion(spec).catch(() => undefined);
    await a.lock?.unlock().catch(() => undefined);
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
