// `sanbox ctl C N fs mkdir|put|get|rm|ls VOL PATH [LOCALFILE]` in the node: the file operations
// of src/fs/file-ops.ts on a volume this node has mounted, in its slot, under its cluster locks.
// One operation at a time per node, queued with its mounts and recoveries (the slot's journal has
// one writer). File contents travel base64 in the request and the answer: the client reads and
// writes LOCALFILE, never the node.

import { Mode } from '../dlm/compat-matrix.js';
import { SanboxError } from '../errors.js';
import { FileOps, type ClusterLocker } from '../fs/file-ops.js';
import type { ControlServer } from './control.js';
import type { NodeMounts } from './mount.js';
import { volumeKey, type RunningNode } from './node.js';

export const FS_SUBCOMMANDS = ['mkdir', 'put', 'get', 'rm', 'ls'] as const;
export type FsSubcommand = (typeof FS_SUBCOMMANDS)[number];

function text(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new SanboxError('EINVAL', `fs: give ${what}`);
  return v;
}

/** The FileOps of a volume node `node` has mounted (refused when it has not). */
async function opsFor(node: RunningNode, spec: string): Promise<FileOps> {
  const key = volumeKey(spec);
  const m = node.mounts.get(key);
  if (m === undefined) throw new SanboxError('EINVAL', `${key}: node ${node.nodeId} does not have it mounted`, { device: key });
  const locker: ClusterLocker = async (resource, mode) => {
    const ls = await node.lockspace();
    const lock = await ls.lock(resource, mode === 'EX' ? Mode.EX : Mode.PR, { timeoutMs: node.info.timing.lockTimeoutMs });
    return () => lock.unlock();
  };
  return new FileOps(await node.volumeDevice(key), m.slot, locker);
}

/** Registers `fs` on the node's control server: {cmd: 'fs', args: [SUB, VOL, PATH], dataBase64?}. */
export function registerFsCommands(control: ControlServer, node: RunningNode, mounts: NodeMounts): void {
  control.handle('fs', async (req) => {
    const args = Array.isArray(req.args) ? (req.args as unknown[]) : [];
    const sub = text(args[0], `one of ${FS_SUBCOMMANDS.join(', ')}`) as FsSubcommand;
    if (!FS_SUBCOMMANDS.includes(sub)) throw new SanboxError('EINVAL', `fs: '${sub}' is not one of ${FS_SUBCOMMANDS.join(', ')}`);
    const vol = text(args[1], 'the volume');
    const path = text(args[2], 'the path on the volume');
    return mounts.serial(async () => {
      const ops = await opsFor(node, vol);
      switch (sub) {
        case 'mkdir':
          return { done: await ops.mkdir(path) };
        case 'put': {
          const data = req.dataBase64;
          if (typeof data !== 'string') throw new SanboxError('EINVAL', 'fs put: "dataBase64" must be a string');
          return { done: await ops.put(path, Buffer.from(data, 'base64')) };
        }
        case 'rm':
          return { done: await ops.rm(path) };
        case 'get':
          return { dataBase64: (await ops.get(path)).toString('base64') };
        case 'ls':
          return { entries: (await ops.ls(path)).map((e) => ({ ...e, sizeBytes: e.sizeBytes.toString(), mtimeSec: e.mtimeSec.toString() })) };
      }
    });
  });
}
