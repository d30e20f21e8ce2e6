// `sanbox ctl C N fs mkdir|put|get|rm|ls VOL PATH [LOCALFILE]` in the node: the file operations
// of src/fs/file-ops.ts on a volume this node has mounted, in its slot, under its cluster locks.
// One operation at a time per node, queued with its mounts and recoveries (the slot's journal has
// one writer). File contents: `localFile` (an absolute path; the control socket is a local one, so
// client and node share the file system, and a file may be larger than a control request), or
// base64 in the request (`dataBase64`) and in the answer of a get without `localFile`.

import fs from 'node:fs';
import path from 'node:path';
import { SMALL_FILE_BYTES_MAX } from '../fs/ocfs2-volume.js';
import { SanboxError } from '../errors.js';
import { FileOps } from '../fs/file-ops.js';
import { clusterLocker } from './cluster-locker.js';
import type { ControlServer } from './control.js';
import type { NodeMounts } from './mount.js';
import type { RunningNode } from './node.js';
import { FS_SUBCOMMANDS, type FsSubcommand } from './fs-subcommands.js';
import { volumeKey } from './volume-key.js';

function text(v: unknown, what: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new SanboxError('EINVAL', `fs: give ${what}`);
  return v;
}

/** The FileOps of a volume node `node` has mounted (refused when it has not). */
async function opsFor(node: RunningNode, spec: string): Promise<FileOps> {
  const key = volumeKey(spec);
  const m = node.mounts.get(key);
  if (m === undefined) throw new SanboxError('EINVAL', `${key}: node ${node.nodeId} does not have it mounted`, { device: key });
  // A mounted node takes its files' clusters from its slot's local alloc window, as the kernel does.
  return new FileOps(await node.volumeDevice(key), m.slot, clusterLocker(node), { localAlloc: true });
}

function localFile(req: Record<string, unknown>): string | undefined {
  const v = req.localFile;
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !path.isAbsolute(v)) throw new SanboxError('EINVAL', 'fs: "localFile" must be an absolute path');
  return v;
}

/** A put's content: the local file (at most SMALL_FILE_BYTES_MAX) or the request's base64. */
async function putData(req: Record<string, unknown>): Promise<Buffer> {
  const local = localFile(req);
  if (local !== undefined) {
    const st = await fs.promises.stat(local);
    if (st.size > SMALL_FILE_BYTES_MAX) throw new SanboxError('EINVAL', `fs put: ${local} is ${st.size} bytes; sanbox puts files of at most ${SMALL_FILE_BYTES_MAX} bytes`);
    return fs.promises.readFile(local);
  }
  if (typeof req.dataBase64 !== 'string') throw new SanboxError('EINVAL', 'fs put: give "localFile" or "dataBase64"');
  return Buffer.from(req.dataBase64, 'base64');
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
        case 'put':
          return { done: await ops.put(path, await putData(req)) };
        case 'rm':
          return { done: await ops.rm(path) };
        case 'get': {
          const data = await ops.get(path);
          const local = localFile(req);
          if (local === undefined) return { dataBase64: data.toString('base64') };
          await fs.promises.writeFile(local, data);
          return { localFile: local, sizeBytes: data.length };
        }
        case 'ls':
          return { entries: (await ops.ls(path)).map((e) => ({ ...e, sizeBytes: e.sizeBytes.toString(), mtimeSec: e.mtimeSec.toString() })) };
      }
    });
  });
}
