// The contract between membership (src/heartbeat) and its users (src/dlm, later src/fs and
// src/volume). One membership service per node: every heartbeat region the node writes feeds it,
// and every layer takes "node N died" from it (ARCHITECTURE.md, "One membership per node").

/**
 * The one vocabulary of node states, the same in logs, --json events, `ctl status` and `cluster
 * status`: up (heartbeating); dead (declared dead, not yet fenced); fenced (declared dead and
 * fenced: its locks and journal may be taken); left (left cleanly: wrote generation 0); free (its
 * slot was never written).
 */
export type NodeState = 'up' | 'dead' | 'fenced' | 'left' | 'free';

export interface MemberView {
  nodeId: number;
  /** Random per join; a rejoin has a new one. bigint: it is a 64-bit on-disk field. */
  generation: bigint;
  state: NodeState;
}

export interface MembershipEvent {
  /** up, down (declared dead), fenced, left (a clean leave, reported instead of fenced). */
  kind: 'up' | 'down' | 'fenced' | 'left';
  nodeId: number;
  generation: bigint;
  atMs: number; // observer's monotonic clock (performance.now())
}

export interface Membership {
  readonly localNodeId: number;
  readonly localGeneration: bigint;
  /** Current view of every configured node. */
  members(): MemberView[];
  /** o2quo-style quorum: may this node act on another node's death now? */
  hasQuorum(): boolean;
  /** True once `nodeId` in `generation` has been declared dead AND fenced: only then may its locks or journal be taken. */
  isFenced(nodeId: number, generation: bigint): boolean;
  /** Subscribes to up/down/fenced events; returns an unsubscribe function. */
  subscribe(listener: (ev: MembershipEvent) => void): () => void;
}
