// Fencing a dead node before anything of it is recovered (ARCHITECTURE.md, "Nothing is recovered
// before it is fenced"). Two agents:
//   disk  — PREEMPT AND ABORT of the victim incarnation's reservation key (src/disk/reservations.ts);
//           when it returns, no write of the victim that starts later can land (src/disk/fence-gate.ts).
//   power — SIGKILL of the victim's recorded pid, checked by start time and boot id, and a bounded
//           wait until it is gone (src/disk/power-fence.ts).
// Policy 'disk' uses the disk fence and escalates to the power fence only when the victim is
// stalled inside a write (it holds its gate, so the preempt cannot complete); 'power' kills only;
// 'both' kills and preempts. Every policy then ends the victim's clients on this machine (the
// processes acting as it through its control channel: clients() below).

import fs from 'node:fs';
import path from 'node:path';
import { hex64 } from '../format/where.js';
import { schemeOf } from '../disk/open.js';
import { bootId, describeClientEnd, killClients, killGroup, powerFence, type ClientEnd, type ProcessIdentity } from '../disk/power-fence.js';
import { nodeKey, PersistentReservations, sidecarStoreSpec, type PreemptResult } from '../disk/reservations.js';
import { SanboxError } from '../errors.js';
import type { NodeRecord } from '../format/node-record.js';
import type { Timing } from '../timing.js';

import type { FencePolicy } from './fence-policy.js';
export { type FencePolicy };

export interface FenceOutcome {
  nodeId: number;
  generation: bigint;
  /** What was done, e.g. ['preempt'] or ['power:killed', 'preempt']. */
  steps: string[];
  durationMs: number;
  /**
   * Set when the fence sent SIGKILL to clients of the victim: settles once they are gone or one
   * powerFenceWaitMs after the kill, with each client's end (the fencer logs them). Never rejects;
   * the fence does not wait for it.
   */
  clientsEnded?: Promise<ClientEnd[]>;
}

export interface FencerDeps {
  selfNodeId: number;
  selfKey: bigint;
  clusterTag: number;
  /** Every device this cluster's nodes write with a fence gate (the cluster image first); all are preempted. */
  reservations: PersistentReservations[];
  /**
   * The cluster's device list as the cluster image holds it now (src/format/device-list.ts), every
   * listed name, present or not. Each one this node does not have open (not in `reservations`) is
   * preempted too, through its sidecar reservation state — where a node's provider keeps a PV's —
   * so a PV only the victim opened (a private container's) gets the fence as well.
   */
  clusterDevices?(): Promise<string[]>;
  /** The victim's node record as it is on disk now (pid, start time, boot id, generation). */
  readNodeRecord(nodeId: number): Promise<NodeRecord | null>;
  timing: Timing;
  policy: FencePolicy;
  log(msg: string): void;
  /**
   * Why this node may no longer fence anyone (it fenced itself), or undefined. Checked before every
   * kill and every preempt: a node that resumes from a stop past its self-fence deadline has lost
   * the quorum that entitled it to fence, and must not kill or preempt a peer on stale evidence.
   */
  selfFencedReason?(): string | undefined;
  /**
   * The clock's side of the same question: true once this node is past its self-fence deadline,
   * fencing itself inside the check (the node's heartbeat leases, provider.ts leaseExpired). Asked
   * before the flag: the flag is set only once some check has looked at the clock, and a fencer
   * resumed from a stop runs its fence's continuation before its heartbeat's watchdog timer.
   */
  leaseExpired?(): boolean;
}

export class Fencer {
  constructor(private readonly d: FencerDeps) {}

  /** Throws if this node fenced itself since the fence began (see FencerDeps.selfFencedReason). */
  private mayStillFence(nodeId: number): void {
    // The clock first (it sets the flag when the deadline has passed), then the flag.
    const late = this.d.leaseExpired?.() === true;
    const reason = this.d.selfFencedReason?.() ?? (late ? 'it is past its self-fence deadline' : undefined);
    if (reason !== undefined) throw new SanboxError('EFENCED', `not fencing node ${nodeId}: this node fenced itself (${reason})`);
  }

  keyOf(nodeId: number, generation: bigint): bigint {
    return nodeKey(this.d.clusterTag, nodeId, generation);
  }

  private async power(nodeId: number, generation: bigint, steps: string[], required: boolean): Promise<void> {
    const rec = await this.d.readNodeRecord(nodeId);
    if (rec === null || rec.generation !== generation) {
      // The record belongs to another incarnation (or none): there is no pid of this one to kill.
      if (required) throw new SanboxError('EFENCED', `power fence of node ${nodeId}: no node record for generation ${hex64(generation)}`);
      steps.push('power:no-record');
      return;
    }
    const id: ProcessIdentity = { pid: rec.pid, startTicks: rec.pidStartTicks, bootId: rec.bootId };
    this.mayStillFence(nodeId);
    const r = await powerFence(id, this.d.timing.powerFenceWaitMs, this.d.timing.powerFencePollMs);
    steps.push(`power:${r.outcome}(pid ${rec.pid})`);
    // The node is gone, so its record is final (only the node writes it): read again, a command
    // group it recorded while this fence began is in it now. (Its clients: fence(), at the end.)
    await this.commands(await this.finalRecord(rec), steps);
  }

  /** The victim's record as read again after its kill; the one read before if that fails or names another incarnation. */
  private async finalRecord(before: NodeRecord): Promise<NodeRecord> {
    try {
      const rec = await this.d.readNodeRecord(before.nodeId);
      if (rec !== null && rec.generation === before.generation) return rec;
    } catch (err) {
      this.d.log(`fencing node ${before.nodeId}: its record did not read back after the kill (${(err as Error).message}); using the one read before`);
    }
    return before;
  }

  /**
   * Kills the processes acting as the victim through its control channel (`ctl … lvm`: its
   * clients, src/node/clients.ts), each named by pid and start time (a reused pid is never killed,
   * one that exited is `gone`), so a stalled one does not keep this host's VG flock after its node
   * is fenced. Done last, with every policy, once the fence is in place (the victim killed, or its
   * key preempted on every device): the record read then names every client the victim ever
   * recorded, since a record write of the victim after that is refused (so is the registration
   * that needed it: that client does nothing). Only for a victim on this machine (its record's boot
   * id is ours, as the power fence checks): one elsewhere kills its own clients when it finds
   * itself fenced (src/node/node.ts). Safe with the disk fence too, where the victim lives on:
   * every write of a client passes through its node, refused now by its gate and lease, so a
   * client can write nothing more anyway; the kill frees only what is the client's own on this
   * host. Not a condition of the fence (review 7, M1): every client gets its SIGKILL in one pass
   * (steps `client:sigkill`), and the fence returns without waiting for any to go — one stuck in
   * the kernel (D state) would otherwise hold up the victim's lock recovery and takeover by the
   * power fence's wait, per client. Their ends are awaited against one deadline after the fence
   * and logged (`after fencing node N: its client pid P killed`), and are the outcome's
   * clientsEnded. A client that cannot be killed (another user's process), a record that cannot
   * be read, or this node finding itself fenced meanwhile (it then kills nothing more: review 7,
   * L1) is logged, and the fence stands.
   */
  private clients(nodeId: number, generation: bigint, rec: NodeRecord | null, steps: string[]): Promise<ClientEnd[]> | undefined {
    if (rec === null || rec.generation !== generation || !rec.bootId.equals(bootId())) return undefined;
    const clients = rec.clients ?? [];
    if (clients.length === 0) return undefined;
    try {
      this.mayStillFence(nodeId);
    } catch (err) {
      this.d.log(`fencing node ${nodeId}: its clients were not ended: ${(err as Error).message}`);
      steps.push('clients:stopped(this node fenced itself)');
      return undefined;
    }
    const { sent, ended } = killClients(clients, rec.bootId, this.d.timing.powerFenceWaitMs, this.d.timing.powerFencePollMs);
    for (const s of sent) {
      if (s.why !== undefined) this.d.log(`fencing node ${nodeId}: its client pid ${s.pid} was not ended: ${s.why}`);
      steps.push(`client:${s.outcome}(pid ${s.pid})`);
    }
    if (!sent.some((s) => s.outcome === 'sigkill')) return undefined;
    void ended.then((ends) => ends.forEach((e, i) => {
      if (sent[i]!.outcome === 'sigkill') this.d.log(`after fencing node ${nodeId}: its ${describeClientEnd(e)}`);
    })).catch(() => undefined);
    return ended;
  }

  /** The victim's record once the fence is in place, for its clients; null (logged, a step) if it cannot be read. */
  private async recordAfterFence(nodeId: number, steps: string[]): Promise<NodeRecord | null> {
    try {
      return await this.d.readNodeRecord(nodeId);
    } catch (err) {
      this.d.log(`fencing node ${nodeId}: its record did not read after the fence (${(err as Error).message}); its clients were not ended`);
      steps.push('clients:unread');
      return null;
    }
  }

  /**
   * Kills the commands the victim runs (its recorded process group): they live and die with the
   * node, so a command never outlives its node inside what is now someone else's critical section.
   * Done by every fence of a victim on this machine, the disk fence included, before anything of it
   * is taken over.
   */
  private async commands(rec: NodeRecord, steps: string[]): Promise<void> {
    if (rec.commandPgid === undefined || rec.commandPgid === 0 || !rec.bootId.equals(bootId())) return;
    this.mayStillFence(rec.nodeId);
    const r = await killGroup({ pid: rec.commandPgid, startTicks: rec.commandStartTicks ?? 0n, bootId: rec.bootId }, this.d.timing.powerFenceWaitMs, this.d.timing.powerFencePollMs);
    steps.push(`commands:${r.outcome}(group ${rec.commandPgid})`);
  }

  /** Fences (nodeId, generation) on every device; throws if it cannot be done (the caller retries later). */
  async fence(nodeId: number, generation: bigint, opts: { leftCleanly?: boolean } = {}): Promise<FenceOutcome> {
    const t0 = performance.now();
    const steps: string[] = [];
    const { reservations } = this.d;
    // A node that left cleanly wrote generation 0 and is exiting: record its key as preempted (so
    // no late write of it can land) but never kill it.
    const policy: FencePolicy = opts.leftCleanly ? 'disk' : this.d.policy;
    if (opts.leftCleanly && reservations.length === 0) return { nodeId, generation, steps: ['left-cleanly'], durationMs: 0 };
    const key = this.keyOf(nodeId, generation);
    if (policy === 'power' || policy === 'both') await this.power(nodeId, generation, steps, policy === 'power');
    if (policy === 'power') {
      for (const pr of reservations) await pr.markFenced(nodeId, key);
      if (reservations.length > 0) steps.push('recorded');
    }
    if (policy === 'disk' && !opts.leftCleanly) {
      // The disk fence stops the node's I/O, not its commands: end those here (its clients: below).
      const rec = await this.d.readNodeRecord(nodeId);
      if (rec !== null && rec.generation === generation) await this.commands(rec, steps);
    }
    if (policy === 'disk' || policy === 'both') {
      if (reservations.length === 0) throw new SanboxError('EFENCED', `disk fence of node ${nodeId}: no device has reservations`);
      const many = reservations.length > 1;
      for (const pr of reservations) {
        const r = await this.preempt(pr, nodeId, generation, key, steps, (wait) => pr.preemptAndAbort(this.d.selfNodeId, this.d.selfKey, nodeId, key, wait));
        steps.push(`preempt:${r.outcome}(${many ? `${pr.spec.deviceName}, ` : ''}key 0x${key.toString(16)}, PRgeneration ${r.prGeneration})`);
      }
      await this.preemptListed(nodeId, generation, key, steps);
    }
    const clientsEnded = opts.leftCleanly ? undefined : this.clients(nodeId, generation, await this.recordAfterFence(nodeId, steps), steps);
    return { nodeId, generation, steps, durationMs: performance.now() - t0, ...(clientsEnded === undefined ? {} : { clientsEnded }) };
  }

  /**
   * One preempt, escalated to the power fence when the victim holds its gate on that device (it is
   * stopped or stuck inside a write there: the preempt waits for that write to land or the victim
   * to die, so no write of it lands after the fence is recorded).
   */
  private async preempt(pr: PersistentReservations, nodeId: number, generation: bigint, key: bigint, steps: string[], run: (gateWaitMs: number) => Promise<PreemptResult | null>): Promise<PreemptResult> {
    this.mayStillFence(nodeId);
    let r = await run(this.d.timing.fenceGateWaitMs);
    if (r !== null) return r;
    // The victim holds its gate: it is stopped or stuck inside a write. Kill it, which drops the gate, then preempt.
    this.d.log(`node ${nodeId} (on ${pr.spec.deviceName}) is stalled inside a write for ${this.d.timing.fenceGateWaitMs} ms; escalating to the power fence`);
    await this.power(nodeId, generation, steps, true);
    this.mayStillFence(nodeId);
    r = await run(this.d.timing.powerFenceWaitMs);
    if (r === null) throw new SanboxError('EFENCED', `disk fence of node ${nodeId} on ${pr.spec.deviceName}: its gate is still held after the power fence`);
    return r;
  }

  /**
   * Preempts the victim on every device of the cluster's list this node does not have open. Why:
   * the victim's heartbeat lease bounds when a write of it STARTS, not when it lands; a pwrite past
   * its lease check (stopped, throttled in the kernel) lands later. The preempt takes the victim's
   * gate, so it completes only after such a write landed or the victim died.
   * Skipped, each for a reason: an nbd:// device (no gate of ours guards it; its target cuts a
   * fenced node off); a listed file that is gone (nothing can write it: logged); a device with no
   * reservation state yet (no node ever opened it, so no write of the victim is in flight there —
   * every open registers the key in that state before its first write, and a later open's write is
   * refused by the victim's expired lease), or where the victim's key is not registered (the same
   * argument; it keeps a fence's cost to the PVs the victim had open). The fencer is not an initiator there: it preempts on
   * behalf of the cluster (preemptForCluster), and closes the state at once.
   */
  private async preemptListed(nodeId: number, generation: bigint, key: bigint, steps: string[]): Promise<void> {
    if (this.d.clusterDevices === undefined) return;
    const open = new Set(this.d.reservations.map((pr) => pr.spec.statePath));
    for (const listed of await this.d.clusterDevices()) {
      if (schemeOf(listed) !== undefined) continue;
      const spec = sidecarStoreSpec(path.resolve(listed));
      if (open.has(spec.statePath)) continue;
      open.add(spec.statePath);
      if (!fs.existsSync(spec.deviceName)) {
        this.d.log(`fencing node ${nodeId}: listed device ${listed} is missing; nothing writes it, not preempted there`);
        steps.push(`preempt:missing(${listed})`);
        continue;
      }
      if (!fs.existsSync(spec.statePath)) continue;
      const pr = new PersistentReservations(spec, undefined, this.d.timing.reservationLockWaitMs);
      try {
        // Not registered there (nor holding its reservation): no write of the victim is in flight on
        // it (a node's writes come after its open registered it), and one after a later open is
        // refused by its expired lease. Nothing to write (each preempt is a write and a flush).
        const cur = pr.readState();
        if (cur.registered[nodeId] !== key && cur.reservationKey !== key) continue;
        const r = await this.preempt(pr, nodeId, generation, key, steps, (wait) => pr.preemptForCluster(nodeId, key, wait));
        steps.push(`preempt:${r.outcome}(${spec.deviceName}, key 0x${key.toString(16)}, PRgeneration ${r.prGeneration})`);
      } finally {
        pr.close();
      }
    }
  }
}
