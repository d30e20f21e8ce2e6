// The cluster locks of src/fs/file-ops.ts taken in a node's lockspace: EX or PR by resource name,
// each wait bounded by the node's lock timeout. Used by `ctl fs` and by a dead slot's recovery.

import { Mode } from '../dlm/compat-matrix.js';
import type { ClusterLocker } from '../fs/file-ops.js';
import type { RunningNode } from './node.js';

export function clusterLocker(node: RunningNode): ClusterLocker {
  return async (resource, mode) => {
    const ls = await node.lockspace();
    const lock = await ls.lock(resource, mode === 'EX' ? Mode.EX : Mode.PR, { timeoutMs: node.info.timing.lockTimeoutMs });
    return () => lock.unlock();
  };
}
