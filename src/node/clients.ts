// Processes acting as a running node (issue 18: a stalled `sanbox ctl C N lvm …` client outlived
// its node's fence). An LVM command run through running node N does its device I/O and takes
// its cluster locks through N (src/node/remote-device.ts, src/node/lvm-node.ts), but it is a process
// of its own, not in N's command group; and it holds host-local state the node cannot release for
// it: the host's VG flock (src/volume/vg-lock.ts, lvm2's local file locking). Stalled (SIGSTOP, a
// hung terminal) it kept that flock after N was fenced, and every later command on this host waited
// for it until the process ended. So the client tells the node who it is before it takes anything
// (`client-register`), the node records it in its node record (src/format/node-record.ts, the
// clients table) beside its command group, and a fence of N ends its clients (the entry goes when
// the client's connection closes):
//   - every fence of N by a fencer on this machine (the record's boot id is ours), once it is in
//     place: the power fence with N, the disk fence after N's key is preempted everywhere
//     (src/heartbeat/fencer.ts clients);
//   - and N itself, when it finds it has been fenced (its heartbeat's self-fence: src/node/node.ts),
//     before its process ends — the only way on a host where no fencer runs.
// Whichever comes first kills; the other finds the client gone. Killing a client of a
// disk-fenced N (which lives on) is safe: every write of the client is N's, refused by N's gate and
// lease from the fence on, so the client could never write again; all the kill frees is what is
// the client's own on this host (the VG flock, a terminal).
//
// Protocol (on the connection the command's locks and I/O use):
//   client-register {pid, startTicks}  → {pid}
// Verified by the node: the process runs on this machine with that start time (/proc/PID/stat field
// 22: a pid reused by another process has another start time, and every kill checks it again —
// src/disk/power-fence.ts killClients), and the node may signal it (kill(pid, 0)): a client the fencers could
// not kill would be recorded for nothing. Node.js has no SO_PEERCRED, so the node cannot check that
// the pid is its peer's; it need not: the socket's directory is the node user's own (0700), so a
// client can only name a process its user may signal anyway, and a false name makes the fence kill
// nothing the claimant could not kill itself. A client whose process exits is removed as its
// connection closes; one left in the record by a node that died is killed only if that same process
// (pid and start time) still runs.
// One process acts as one node (review 5, L3): a client the cluster image already records as a
// client of another node on this machine (same pid, start time and boot) is refused, so a fence of
// that other node cannot kill a command of this one, nor a fence of this one a command of that one.
// Limits: the check reads the other nodes' records when the client registers, without a lock, so
// two registrations of one process racing on two nodes can both pass; and a record a dead node
// left names its clients until that node's slot is taken again — its fencer kills such a process
// only if it still runs, which is the case the refusal above keeps from arising through us.

import { bootId, isRunning, selfIdentity } from '../disk/power-fence.js';
import { readNodeRecords } from '../heartbeat/cluster-image.js';
import { SanboxError } from '../errors.js';
import { NODE_CLIENTS_MAX, type NodeClient } from '../format/node-record.js';
import type { ControlContext, ControlServer } from './control.js';
import type { NodeConnection } from './ctl.js';
import type { RunningNode } from './node.js';

/** Why node `nodeId` cannot record `c` as its client, or undefined when it can. */
function clientRefusal(c: NodeClient, nodeId: number): string | undefined {
  if (c.pid === process.pid) return `pid ${c.pid} is node ${nodeId} itself`;
  if (!isRunning({ pid: c.pid, startTicks: c.startTicks, bootId: bootId() })) return `pid ${c.pid} (start time ${c.startTicks}) is not running on this machine`;
  try {
    process.kill(c.pid, 0);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EPERM') return `node ${nodeId} may not signal pid ${c.pid} (another user's process): a fence of node ${nodeId} could not end it`;
    if (code === 'ESRCH') return `pid ${c.pid} exited`;
    throw err;
  }
  return undefined;
}

/** Another node whose record (in the cluster image, on this machine's boot) names `c` as its client, if any. */
async function otherNodeOf(node: RunningNode, c: NodeClient): Promise<number | undefined> {
  const boot = bootId();
  const records = await readNodeRecords(node.device, node.info);
  const r = records.find((x) => x !== null && x.nodeId !== node.nodeId && x.bootId.equals(boot) && (x.clients ?? []).some((o) => o.pid === c.pid && o.startTicks === c.startTicks));
  return r?.nodeId;
}

/** Registers `client-register` on a node's control channel. */
export function registerClientCommands(control: ControlServer, node: RunningNode): void {
  const clients = new Map<ControlContext, NodeClient>();
  const rewrite = (): Promise<void> => node.recordClients([...clients.values()]);
  control.handle('client-register', async (req, ctx) => {
    const { pid, startTicks } = req;
    if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid < 1 || pid > 0xffff_ffff) throw new SanboxError('EINVAL', '"pid" must be a positive integer');
    if (typeof startTicks !== 'string' || !/^\d{1,20}$/.test(startTicks)) throw new SanboxError('EINVAL', '"startTicks" must be a decimal string');
    if (clients.has(ctx)) throw new SanboxError('EINVAL', `this connection registered pid ${clients.get(ctx)!.pid} already`);
    if (clients.size >= NODE_CLIENTS_MAX) throw new SanboxError('EBUSY', `node ${node.nodeId} has ${NODE_CLIENTS_MAX} commands running through it already (its node record names at most that many); retry when one has ended`);
    const c: NodeClient = { pid, startTicks: BigInt(startTicks) };
    const refusal = clientRefusal(c, node.nodeId);
    if (refusal !== undefined) throw new SanboxError('EINVAL', `node ${node.nodeId} does not record its client: ${refusal}`);
    const other = await otherNodeOf(node, c);
    if (other !== undefined) throw new SanboxError('EINVAL', `node ${node.nodeId} does not record its client: pid ${pid} is recorded as a client of node ${other} (one process acts as one node)`);
    clients.set(ctx, c);
    ctx.onClose(() => {
      if (clients.get(ctx) !== c) return;
      clients.delete(ctx);
      // A fenced node's write is refused; its record keeps the entry, which a fencer checks by start time.
      void rewrite().catch(() => undefined);
    });
    try {
      await rewrite();
    } catch (err) {
      // The node's record keeps what landed (node.ts recordClients): this client is in neither now,
      // so the node's own kill at its self-fence spares it; it reports the refusal itself (review 7, L2).
      clients.delete(ctx);
      throw err;
    }
    return { pid };
  });
}

/**
 * Tells node N over `conn` that this process acts as N, before the command takes anything: a fence
 * of N kills it from then on. A node that cannot record it (fenced meanwhile: its
 * record write is refused) answers with an error, and the command does nothing.
 */
export async function registerAsClient(conn: Pick<NodeConnection, 'request'>): Promise<void> {
  const self = selfIdentity();
  // keepCode: a fenced node's refusal stays EFENCED (the command's exit status 3).
  await conn.request({ cmd: 'client-register', pid: self.pid, startTicks: self.startTicks.toString() }, undefined, true);
}
