// Reaching a running node from another process (`sanbox ctl`, `sanbox lock --node N` while node N
// runs): find its control socket through the cluster image's config, connect, and when that fails
// say in one line why, naming the node and what its slot shows (fenced, dead, left, …), within a
// stated bound: CTL_CONNECT_TIMEOUT_MS to connect plus the request's own bound. What explains a
// failure (the slot's state, this machine's slot lock) comes from two small modules imported
// statically, not the node runtime and the status readers: an explanation that failed to load
// would otherwise hide or replace the error it explains.

import { SanboxError, type ErrorCode } from '../errors.js';
import { readClusterImage, type ClusterImageInfo } from '../heartbeat/cluster-image.js';
import { ControlClient, controlSocketPath } from './control.js';
import { slotLockHeld } from './slot-lock.js';
import { slotState } from './slot-state.js';
import { CTL_ANSWER_TIMEOUT_MS, CTL_CONNECT_TIMEOUT_MS } from '../timing.js';
export { CTL_ANSWER_TIMEOUT_MS, CTL_CONNECT_TIMEOUT_MS };

/**
 * Lock waits a command sits through before the node answers: a mount or unmount waits for the
 * superblock and journal locks (and a mount probes its heartbeat slot); a file change waits for a
 * directory's, an inode's and an allocator's locks in turn.
 */
const LOCK_WAITS = { mount: 2, umount: 2, fs: 3 } as const;

/** Bound on the answer to `cmd` when each lock wait may take up to `lockTimeoutMs`. */
export function answerBoundMs(cmd: keyof typeof LOCK_WAITS, lockTimeoutMs: number): number {
  return LOCK_WAITS[cmd] * lockTimeoutMs + CTL_ANSWER_TIMEOUT_MS;
}

export class NodeUnreachableError extends SanboxError {}

/** Codes a node's error answer may carry (control.ts) that a caller asking for them gets; anything else is EINVAL. */
const ANSWER_CODES: ReadonlySet<string> = new Set<ErrorCode>(['EFENCED', 'EIO', 'EBUSY', 'ENOENT', 'EBOUNDS', 'ECLOSED', 'ETIMEDOUT', 'EAGAIN', 'EFORMAT', 'ESHORT', 'EALIGN']);

function answerCode(ans: Record<string, unknown>): ErrorCode {
  return typeof ans.code === 'string' && ANSWER_CODES.has(ans.code) ? (ans.code as ErrorCode) : 'EINVAL';
}

/** "node 2 (node2) of cluster 'demo' is fenced" from the slot's state as read from the image. */
async function slotSummary(info: ClusterImageInfo, nodeId: number): Promise<string> {
  const state = await slotState(info, nodeId);
  if (state === undefined) return '';
  return state === 'free' ? ' (its slot is free: it never joined)' : state === 'left' ? ' (it left the cluster)' : ` (its slot says ${state})`;
}

function nodeLabel(info: ClusterImageInfo, nodeId: number): string {
  const name = info.config.nodeNames[nodeId];
  return `node ${nodeId}${name ? ` (${name})` : ''} of cluster '${info.config.clusterName}'`;
}

export interface NodeConnection {
  info: ClusterImageInfo;
  client: ControlClient;
  /**
   * One request; failures become one-line NodeUnreachableErrors naming the node. An error answer is
   * EINVAL, or with `keepCode` the code the node's error carried (EFENCED for a fenced gate's refusal).
   */
  request(req: Record<string, unknown>, timeoutMs?: number, keepCode?: boolean): Promise<Record<string, unknown>>;
  close(): void;
}

/** Connects to node N of the cluster on `image`. */
export async function connectNode(image: string, nodeId: number): Promise<NodeConnection> {
  const info = await readClusterImage(image);
  if (!Number.isInteger(nodeId) || nodeId < 0 || nodeId >= info.config.nodeCount) {
    throw new SanboxError('EINVAL', `${image}: cluster '${info.config.clusterName}' has nodes 0..${info.config.nodeCount - 1}, not ${nodeId}`);
  }
  const sock = controlSocketPath(info.config.runDir, nodeId);
  let client: ControlClient;
  try {
    client = await ControlClient.connect(sock, CTL_CONNECT_TIMEOUT_MS);
  } catch (err) {
    const code = (err as { cause?: NodeJS.ErrnoException }).cause?.code;
    const gone = code === 'ENOENT' || code === 'ECONNREFUSED';
    // A node process here without a socket is one that `sanbox lock` started for its command.
    const why = gone && slotLockHeld(info, nodeId) ? 'runs here without a control socket (a sanbox lock process)' : gone ? 'is not running' : 'does not answer';
    throw new NodeUnreachableError('EIO', `${nodeLabel(info, nodeId)} ${why}${await slotSummary(info, nodeId)}: ${(err as Error).message}`);
  }
  return {
    info,
    client,
    request: async (req, timeoutMs = CTL_ANSWER_TIMEOUT_MS, keepCode = false) => {
      let ans: Record<string, unknown>;
      try {
        ans = await client.request(req, timeoutMs);
      } catch (err) {
        throw new NodeUnreachableError('EIO', `${nodeLabel(info, nodeId)} gave no answer to '${String(req.cmd)}'${await slotSummary(info, nodeId)}: ${(err as Error).message}`);
      }
      if (ans.ok !== true) throw new SanboxError(keepCode ? answerCode(ans) : 'EINVAL', `${nodeLabel(info, nodeId)}: ${String(ans.cmd ?? req.cmd)}: ${String(ans.error)}`);
      return ans;
    },
    close: () => client.close(),
  };
}

/** One request to node N, connection closed afterwards. */
export async function ctlRequest(image: string, nodeId: number, req: Record<string, unknown>, timeoutMs?: number): Promise<Record<string, unknown>> {
  const c = await connectNode(image, nodeId);
  try {
    return await c.request(req, timeoutMs);
  } finally {
    c.close();
  }
}
