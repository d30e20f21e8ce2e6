// Ownership failover of private containers (issue 18 item 5; EVMS CSM's failover, reference/
// locking.md §5.2): a change that takes a private container from its owner node — a new owner, or
// another kind — is allowed only when the owner can no longer write to it, or agrees:
//
//   owner fenced  (its incarnation's key is recorded as preempted in the cluster image)  → allowed,
//                 once the taker has preempted that key on every PV of the container too
//   owner left    (it stopped heartbeating cleanly), or free (its slot was never used)     → allowed
//   owner up      and the change is made as the owner (--node OWNER): its consent          → allowed
//   owner up      otherwise: a takeover of a live owner's container                        → refused
//   owner dead    but not fenced yet (nobody with quorum has fenced it)                    → refused
//
// A dead owner that is not fenced may be stalled, not dead, and write again when it resumes; only
// its fence makes that impossible (ARCHITECTURE.md, "Nothing is recovered before it is fenced").
// So the refusal waits for the fence, and nothing overrides it: there is no --force for this.
// What the owner's slot says is read from the cluster image (src/node/status.ts), the same facts
// `cluster status` prints.

import path from 'node:path';
import { nodeKey, PersistentReservations, sidecarStoreSpec, type PreemptResult } from '../disk/reservations.js';
import { pauseAt } from '../disk/pause-point.js';
import { schemeOf } from '../disk/open.js';
import { SanboxError } from '../errors.js';
import { clusterTagOfUuid } from '../heartbeat/cluster-image.js';
import type { ContainerRecord } from '../format/container.js';
import { clusterOfImage, containerChange, ownerTakenFrom, type ContainerKind, type ContainerRequest, type ContainerState } from '../volume/container.js';
import type { CommitContext } from '../volume/vg.js';
import { StatusReader, type SlotStatus } from './status.js';

export interface OwnerChangeContext {
  /** The cluster image (--cluster), where the owner's liveness and fence are read. */
  clusterImage: string | undefined;
  /** The node the change is made as (--node); the owner's consent is a change made as the owner. */
  requester: number | undefined;
  /**
   * Made through running node N: the fenced owner's key is preempted by N (LvmCluster.preempt),
   * under N's fence like the change's writes. Unset: preempted by this process on behalf of the
   * cluster (joined as N, or no node).
   */
  preempt?: ((spec: string, victimNode: number, victimKey: bigint) => Promise<PreemptResult | null>) | undefined;
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** Why taking VG `vgName` from its owner (slot `owner`) is refused now, or undefined when it is allowed. */
export function ownerChangeRefusal(vgName: string, owner: SlotStatus, requester: number | undefined): string | undefined {
  // A block that fails its checksum (a torn or damaged sector; the reader retried it) says nothing
  // about its node: the owner may be alive. Only an all-zero slot, never written, is free.
  if (!owner.checksumOk && !(BigInt(owner.seq) === 0n && BigInt(`0x${owner.generation}`) === 0n)) {
    return `volume group ${vgName}: the heartbeat block of its owner node ${owner.node} fails its checksum: whether node ${owner.node} is alive is unknown, so a takeover is refused`;
  }
  const last = owner.ageMs === null ? 'last heartbeat at an unknown time' : `last heartbeat ${seconds(owner.ageMs)} ago`;
  switch (owner.state) {
    case 'fenced':
    case 'left':
    case 'free':
      return undefined;
    case 'up':
      if (requester === owner.node) return undefined;
      return `volume group ${vgName}: its owner node ${owner.node} is alive (${last}): a takeover without its consent is refused; make the change as node ${owner.node} (--node ${owner.node}), or stop node ${owner.node} first`;
    case 'dead':
      return `volume group ${vgName}: its owner node ${owner.node} is not fenced yet: ${last}, dead after ${seconds(owner.deadMs)}; a node with quorum must fence it before its container is taken over (cluster status shows it fenced then)`;
  }
}

/**
 * Refuses (SanboxError, nothing written to the VG) a container change that takes a private
 * container from an owner who may still write to it; a fenced owner's key is preempted on every
 * PV of the container (`pvNames`) first. Called under the VG lock, before anything is written.
 */
export async function authorizeOwnerChange(vgName: string, state: ContainerState, next: ContainerRecord, pvNames: readonly string[], ctx: OwnerChangeContext): Promise<void> {
  const owner = ownerTakenFrom(state, next);
  if (owner === undefined) return;
  const record = state.record!;
  if (ctx.clusterImage === undefined) {
    throw new SanboxError('EINVAL', `volume group ${vgName} is a private container owned by node ${owner}: taking it from its owner needs the cluster image (--cluster IMG), where node ${owner}'s heartbeat and fence are read`);
  }
  const cluster = await clusterOfImage(ctx.clusterImage);
  if (record.clusterName !== '' && !cluster.uuid.equals(record.clusterUuid)) {
    throw new SanboxError('EINVAL', `volume group ${vgName} belongs to cluster '${record.clusterName}', and ${ctx.clusterImage} is the image of another cluster ('${cluster.name}')`, { device: ctx.clusterImage });
  }
  const reader = await StatusReader.open(ctx.clusterImage);
  let slot: SlotStatus | undefined;
  let fenceGateWaitMs: number;
  try {
    const status = await reader.read();
    slot = status.slots[owner];
    fenceGateWaitMs = status.timing.fenceGateWaitMs;
  } finally {
    await reader.close();
  }
  if (slot === undefined) throw new SanboxError('EINVAL', `volume group ${vgName}: its owner node ${owner} is not a node of cluster '${cluster.name}'`, { device: ctx.clusterImage });
  const refusal = ownerChangeRefusal(vgName, slot, ctx.requester);
  if (refusal !== undefined) throw new SanboxError('EBUSY', refusal);
  if (slot.state === 'fenced') await preemptOnContainer(vgName, slot, clusterTagOfUuid(cluster.uuid), pvNames, fenceGateWaitMs, ctx.preempt);
}

/**
 * A fenced owner's key preempted on every PV of its container. The fence that `cluster status`
 * shows was done by a survivor on the devices IT had open (src/heartbeat/fencer.ts); nobody but
 * the owner opens a private container's PVs, so there the owner's gate may never have seen a
 * preempt, and a stalled owner that resumes could write to a VG that has a new owner. So the
 * taker preempts it there itself (idempotent: a PV already preempted is not rewritten), under the
 * VG lock and before the new owner is committed; a PV it cannot preempt refuses the takeover.
 * Through running node N (`viaNode`) the preempt is N's, with N's key and under N's fence, as the
 * change's writes are (a fenced N's is refused: EFENCED, nothing written); else this process's.
 */
async function preemptOnContainer(vgName: string, owner: SlotStatus, tag: number, pvNames: readonly string[], gateWaitMs: number, viaNode: OwnerChangeContext['preempt']): Promise<void> {
  const key = nodeKey(tag, owner.node, BigInt(`0x${owner.generation}`));
  pauseAt('takeover-preempt', `before it preempts node ${owner.node}'s key on the PVs of ${vgName}`);
  for (const name of pvNames) {
    if (schemeOf(name) !== undefined) {
      // Over NBD the target keeps the reservations and cuts a fenced node off; no gate of ours there.
      throw new SanboxError('EBUSY', `volume group ${vgName}: its PV ${name} is a network disk: node ${owner.node}'s key cannot be preempted there by sanbox, so the takeover is refused`, { device: name });
    }
    const r = viaNode !== undefined ? await viaNode(name, owner.node, key) : await preemptHere(name, owner.node, key, gateWaitMs);
    if (r === null) {
      throw new SanboxError('EBUSY', `volume group ${vgName}: fenced node ${owner.node} holds its fence gate on PV ${name} (stalled inside a write) for ${gateWaitMs} ms: its key cannot be preempted there, so the takeover is refused; kill its process and retry`, { device: name });
    }
  }
}

/**
 * A container change (vgchange --container/--owner, vgexport, vgimport) under the failover rule:
 * containerChange with authorizeOwnerChange as its check.
 */
export function changeContainer(
  specs: string[],
  name: string,
  req: ContainerRequest,
  commit: CommitContext,
  ctx: OwnerChangeContext & { expect?: { kinds: ContainerKind[]; why: string } },
): Promise<ContainerRecord> {
  return containerChange(specs, name, req, commit, ctx.expect, (state, next, pvNames) => authorizeOwnerChange(name, state, next, pvNames, ctx));
}

/** The preempt in this process, on behalf of the cluster (it is no initiator of the PV). */
async function preemptHere(name: string, victimNode: number, victimKey: bigint, gateWaitMs: number): Promise<PreemptResult | null> {
  const pr = new PersistentReservations(sidecarStoreSpec(path.resolve(name)));
  try {
    return await pr.preemptForCluster(victimNode, victimKey, gateWaitMs);
  } finally {
    pr.close();
  }
}
