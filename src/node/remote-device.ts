// Device I/O of a command through a running node (issue 18, review finding: `ctl … lvm` wrote its
// PVs without any fence gate). An LVM command run as running node N (`sanbox ctl C N lvm …`, or
// `--cluster C --node N` while N runs) reads and computes its metadata in its own process, as lvm2
// commands do beside lvmlockd, but it opens every device through node N: the node opens it with
// its device provider (src/node/provider.ts) and does each read, write, flush and discard itself.
// So every byte the command writes passes node N's fence gate, fault rules and counters — the
// same gate N's own data I/O passes — and once N is fenced nothing the command still sends lands:
// N's gate refuses it (EFENCED, also when N resumes from a stall past its self-fence deadline:
// provider.ts's lease check), or N is gone and the connection with it (a power fence, an exit
// after a self-fence). A stalled command holds nothing N would wait for: it can only ask.
//
// Protocol (JSON lines on N's control socket, one connection per command — its locks too, so the
// node releases them only after the writes sent before them: control.ts onClose — requests one at
// a time):
//   dev-open {spec, exclusive?}                    → {handle, name, sizeBytes, sectorSizeBytes, readOnly}
//   dev-read {handle, offsetBytes, lengthBytes}    → {data: base64}      (≤ DEV_READ_BYTES_MAX)
//   dev-write {handle, offsetBytes, data: base64}  → {}                  (≤ DEV_WRITE_BYTES_MAX)
//   dev-flush {handle}, dev-discard {handle, offsetBytes, lengthBytes}, dev-close {handle}
//   dev-preempt {handle, victimNode, victimKey: hex} → {outcome, prGeneration} or {held: true}
//     (PREEMPT AND ABORT of a fenced owner's key by node N, with N's key, under N's fence: a
//     container takeover made through N, src/node/failover.ts; provider.ts preemptAs)
// Devices are tied to the connection: the node closes what the client left open when it goes, and
// a device whose open was still in flight then is closed as the open ends (else nothing would).
// The cluster image is not opened again: a spec naming it — by any path, the file's identity
// decides (st_dev, st_ino) — gets the node's own gated device of it (a second open would register
// the node's key on it twice, behind a gate no fencer preempts), seen through a write window (below),
// which dev-close leaves open.
// A spec is a path as the node sees it: the client sends a file path absolute (NodeDevices.open),
// since the node's cwd is not the command's.
// The node does not trust the client (review 4, finding 3: anything that reaches the socket can
// send requests): the image it hands out is writable only in the cluster's device list, the one
// region an LVM command writes (write-window.ts; not the header, heartbeat, node records,
// reservation state or lockspace), and any other device is opened only if the node finds it is
// LVM's — on its own device list, or carrying an LVM2 label (with the PV uuid the cluster's list
// gives it, if listed: a client writes that list, review 5 H1) — or, for pvcreate and pvremove,
// `exclusive`, which the node checks itself; never one the node uses itself (openForClient).

import fs from 'node:fs';
import path from 'node:path';
import { checkRange, isSectorSize, type BlockDevice, type SectorSize } from '../disk/device.js';
import { openDevice, schemeOf } from '../disk/open.js';
import { deviceIdentity, identityOrUndefined } from '../disk/file-identity.js';
import { writesOnlyIn } from '../disk/write-window.js';
import { FENCE_DIR_SUFFIX, type PreemptResult } from '../disk/reservations.js';
import { clientWriteWindow } from '../heartbeat/cluster-image.js';
import { readClusterDevices } from '../volume/cluster-devices.js';
import { LABEL_SCAN_BYTES, scanLabel } from '../format/lvm/label.js';
import { readStable } from '../disk/stable-read.js';
import { openExclusively } from '../volume/lvm-cluster.js';
import { DiskError, FormatError, isSanboxError, SanboxError } from '../errors.js';
import { isNodeId, O2NM_MAX_NODES } from '../format/o2hb-block.js';
import { isLvSpec } from '../volume/resolve.js';
import type { ControlContext, ControlServer } from './control.js';
import { CTL_ANSWER_TIMEOUT_MS, type NodeConnection } from './ctl.js';
import { CONTROL_REQUEST_TIMEOUT_MS_DEFAULT } from '../timing.js';
import type { RunningNode } from './node.js';

/**
 * Bytes one dev-write carries: base64 makes 4 characters of 3 bytes, and a request line is at most
 * 64 KiB (control.ts REQUEST_BYTES_MAX), so 32 KiB (43,692 characters) fits with room for the rest.
 */
export const DEV_WRITE_BYTES_MAX = 32 * 1024;

/** Bytes one dev-read returns: 1 MiB is 1.4 MB of base64, inside a 4 MiB answer line (control.ts ANSWER_BYTES_MAX). */
export const DEV_READ_BYTES_MAX = 1024 * 1024;

/** Devices one connection may have open at once: an LVM command opens each device of its list once. */
export const DEV_HANDLES_MAX = 256;

function handleArg(req: Record<string, unknown>): number {
  const h = req.handle;
  if (typeof h !== 'number' || !Number.isSafeInteger(h) || h < 1) throw new SanboxError('EINVAL', '"handle" must be a positive integer');
  return h;
}

function bytesArg(req: Record<string, unknown>, k: string, max = Number.MAX_SAFE_INTEGER): number {
  const v = req[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > max) throw new SanboxError('EINVAL', `"${k}" must be an integer from 0 to ${max}`);
  return v;
}

/** Registers the dev-* commands on a node's control channel. */
export function registerDeviceCommands(control: ControlServer, node: RunningNode): void {
  const byConnection = new Map<ControlContext, { next: number; open: Map<number, { dev: BlockDevice; own: boolean }> }>();
  // The node holds its image open, so the file (and so its identity) stays while the node runs.
  // An image served over nbd:// has no identity here but its URI.
  const imageIdentity = schemeOf(node.info.path) === undefined ? deviceIdentity(node.info.path) : undefined;
  /** Whether a spec names the cluster image: a path to the same file, through any directory or link; or the image's own URI. */
  const namesImage = async (spec: string): Promise<boolean> => {
    if (schemeOf(spec) !== undefined) return spec === node.info.path;
    // No such file here is not the image (the provider's open says what is wrong).
    return imageIdentity !== undefined && identityOrUndefined(spec) === imageIdentity;
  };
  // The image as a client gets it: the node's own gated device, writable only in the device list.
  const imageView = writesOnlyIn(node.device, clientWriteWindow(node.info), `a client of node ${node.nodeId}`);
  const table = (ctx: ControlContext): { next: number; open: Map<number, { dev: BlockDevice; own: boolean }> } => {
    let t = byConnection.get(ctx);
    if (t === undefined) {
      const created = { next: 1, open: new Map<number, { dev: BlockDevice; own: boolean }>() };
      t = created;
      byConnection.set(ctx, created);
      ctx.onClose(() => {
        byConnection.delete(ctx);
        for (const e of created.open.values()) if (e.own) void e.dev.close().catch(() => undefined);
        created.open.clear();
      });
    }
    return t;
  };
  const deviceOf = (req: Record<string, unknown>, ctx: ControlContext): BlockDevice => {
    const h = handleArg(req);
    const e = byConnection.get(ctx)?.open.get(h);
    if (e === undefined) throw new SanboxError('EINVAL', `no device open as handle ${h} on this connection`);
    return e.dev;
  };

  control.handle('dev-open', async (req, ctx) => {
    const spec = req.spec;
    if (typeof spec !== 'string' || spec.length === 0) throw new SanboxError('EINVAL', '"spec" must be a non-empty string');
    if (req.exclusive !== undefined && typeof req.exclusive !== 'boolean') throw new SanboxError('EINVAL', '"exclusive" must be true or false');
    const exclusive = req.exclusive === true;
    // An LVM command opens disks and image files; an LV is opened by the node for its own users only.
    if (isLvSpec(spec)) throw new SanboxError('EINVAL', `${spec}: dev-open opens a disk or image file, not a logical volume`);
    // Relative to what? The node's cwd is not the client's: a path would name another file, or none.
    if (schemeOf(spec) === undefined && !path.isAbsolute(spec)) throw new SanboxError('EINVAL', `${spec}: dev-open takes an absolute path (the node's directory is not the client's)`);
    const t = table(ctx);
    if (t.open.size >= DEV_HANDLES_MAX) throw new SanboxError('EINVAL', `node ${node.nodeId}: ${DEV_HANDLES_MAX} devices open on this connection already`);
    const isImage = await namesImage(spec);
    if (isImage && exclusive) throw new SanboxError('EBUSY', `${spec}: the cluster image is node ${node.nodeId}'s own device; it is never opened exclusively for a client`, { device: spec });
    const dev = isImage ? imageView : await openForClient(node, spec, exclusive);
    if (byConnection.get(ctx) !== t) {
      // The connection's closers ran while the open was in flight. control.ts runs them only once
      // every request is answered, so this is a guard: were it to happen, nothing else would close
      // this device (it would stay open, the node's key registered on it, until the node exits).
      if (!isImage) await dev.close();
      throw new SanboxError('ECANCELED', `${spec}: the client closed its connection while the node opened the device; closed it again`);
    }
    const handle = t.next++;
    t.open.set(handle, { dev, own: !isImage });
    return { handle, name: dev.name, sizeBytes: dev.sizeBytes, sectorSizeBytes: dev.sectorSizeBytes, readOnly: dev.readOnly };
  });
  control.handle('dev-read', async (req, ctx) => {
    const dev = deviceOf(req, ctx);
    const buf = Buffer.alloc(bytesArg(req, 'lengthBytes', DEV_READ_BYTES_MAX));
    await dev.read(buf, bytesArg(req, 'offsetBytes'));
    return { data: buf.toString('base64') };
  });
  control.handle('dev-write', async (req, ctx) => {
    const dev = deviceOf(req, ctx);
    if (typeof req.data !== 'string') throw new SanboxError('EINVAL', '"data" must be base64');
    const buf = Buffer.from(req.data, 'base64');
    if (buf.length > DEV_WRITE_BYTES_MAX) throw new SanboxError('EINVAL', `"data" is ${buf.length} bytes, more than ${DEV_WRITE_BYTES_MAX}`);
    try {
      await dev.write(buf, bytesArg(req, 'offsetBytes'));
    } catch (err) {
      // A fenced node's refusal is logged as well as answered: the client may be gone (killed by
      // the fence: src/node/clients.ts) with its write still queued on the connection.
      if (isSanboxError(err) && err.code === 'EFENCED') node.log(`a command's write through node ${node.nodeId}: refused: ${err.message}`);
      throw err;
    }
    return {};
  });
  control.handle('dev-flush', async (req, ctx) => {
    await deviceOf(req, ctx).flush();
    return {};
  });
  control.handle('dev-discard', async (req, ctx) => {
    await deviceOf(req, ctx).discard(bytesArg(req, 'offsetBytes'), bytesArg(req, 'lengthBytes'));
    return {};
  });
  control.handle('dev-preempt', async (req, ctx) => {
    const dev = deviceOf(req, ctx);
    const victimNode = req.victimNode;
    if (typeof victimNode !== 'number' || !isNodeId(victimNode)) throw new SanboxError('EINVAL', `"victimNode" must be a node number 0..${O2NM_MAX_NODES - 1}`);
    if (typeof req.victimKey !== 'string' || !/^[0-9a-f]{1,16}$/.test(req.victimKey)) throw new SanboxError('EINVAL', '"victimKey" must be 1 to 16 hex digits');
    const victimKey = BigInt(`0x${req.victimKey}`);
    // Only a key the cluster has fenced (recorded preempted in the cluster image, as `cluster
    // status` shows "fenced"): a command cannot make this node fence a live peer.
    if (!(await node.provider.recordedFenced(node.device.name, victimNode, victimKey))) {
      throw new SanboxError('EINVAL', `node ${victimNode}'s key 0x${req.victimKey} is not recorded fenced in the cluster image: node ${node.nodeId} preempts only a fenced incarnation's key for a command`);
    }
    const what = `preempt of node ${victimNode}'s key 0x${req.victimKey} on ${dev.name} for a command through node ${node.nodeId}`;
    let r: PreemptResult | null;
    try {
      r = await node.provider.preemptAs(dev, victimNode, victimKey);
    } catch (err) {
      node.log(`${what}: refused: ${(err as Error).message}`);
      throw err;
    }
    node.log(`${what}: ${r === null ? `node ${victimNode} holds its fence gate there (stalled inside a write)` : `${r.outcome}, PRgeneration ${r.prGeneration}`}`);
    return r === null ? { held: true } : { outcome: r.outcome, prGeneration: r.prGeneration };
  });
  control.handle('dev-close', async (req, ctx) => {
    const h = handleArg(req);
    const t = byConnection.get(ctx);
    const e = t?.open.get(h);
    if (e === undefined) throw new SanboxError('EINVAL', `no device open as handle ${h} on this connection`);
    t!.open.delete(h);
    if (e.own) await e.dev.close();
    return {};
  });
}

/**
 * Opens `spec` (not the cluster image) for a client of `node`, checked by the node itself: the
 * client is an LVM command that says what it wants, and the node does not take its word for what
 * the device is (review 4, finding 3; review 5, H1: the cluster's device list is in the part of
 * the image a client writes, so being listed there proves nothing). Refused, each in one line
 * naming the path and the reason:
 *   - sanbox's fence state beside a device (DEV.fence/…: reservation state, lock files), by its
 *     real path, and anything in the cluster's run directory: a client rewriting it could clear a
 *     fenced node's preemption;
 *   - writes, without `exclusive`, to a device that is neither on the node's own device list
 *     (--devices, else SANBOX_DEVICES: its operator's) nor an LVM physical volume by its label,
 *     which the node reads itself; a PV the cluster's list names must carry the PV uuid the list
 *     gives it (checkLvmDevice). Such a device, when a list names it, is opened with every write
 *     refused (a scan passes over it); any other such path is not opened at all. A PV outside the
 *     list is still LVM's to write (a VG made without the cluster, a PV pvcreated for a vgcreate or
 *     vgextend, which lists it when it commits);
 *   - `exclusive` (pvcreate, pvremove): a device somebody else has open before, or holds once the
 *     node does (openExclusively), or that this node has open itself (provider.ts refuseClash);
 *   - any device the node has open for its own use (a volume it mounts or heartbeats on) or a
 *     client has open exclusively (provider.ts refuseClash, in turn with every open).
 */
async function openForClient(node: RunningNode, spec: string, exclusive: boolean): Promise<BlockDevice> {
  const remote = schemeOf(spec) !== undefined;
  if (!remote) {
    let real: string;
    try {
      real = await fs.promises.realpath(spec);
    } catch (err) {
      throw new SanboxError('ENOENT', `${spec}: no such device (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { device: spec });
    }
    if (path.basename(path.dirname(real)).endsWith(FENCE_DIR_SUFFIX)) {
      throw new SanboxError('EINVAL', `${spec}: refused: it is fence state of a device (${real}); node ${node.nodeId} never opens that for a client`, { device: spec });
    }
    const runDir = await fs.promises.realpath(node.info.config.runDir).catch(() => node.info.config.runDir);
    if (real.startsWith(runDir + path.sep)) {
      throw new SanboxError('EINVAL', `${spec}: refused: it is in the cluster's run directory ${runDir} (sockets, lock state); node ${node.nodeId} never opens that for a client`, { device: spec });
    }
  }
  if (exclusive) return openExclusively(spec, (s) => node.provider.open(s, undefined, 'exclusive'), node.nodeId);
  const notLvms = await checkLvmDevice(node, spec);
  if (notLvms === undefined) return node.provider.open(spec, undefined, 'client');
  // Not LVM's by what the node knows. A device on the cluster's list is still one the command's
  // scan must read, as lvm2's scan reads every device it is given and passes over one without a
  // label: a listed device wiped or re-made without the cluster must not fail every later command
  // through the node. So it opens, through the provider (a client's open: never a device the node
  // uses itself or one open exclusively), with every write refused in one line. Any other path is
  // refused: the node reads no file for a client that is not the cluster's (review 6, M1).
  const identity = deviceIdentity(spec);
  const listed = (await node.provider.lvmDevices()).some((d) => identityOrUndefined(d) === identity);
  if (!listed) throw new SanboxError('EINVAL', `${spec}: refused: ${notLvms}, and neither node ${node.nodeId}'s --devices list nor the cluster's device list names it; node ${node.nodeId} opens a device for a client only when it is LVM's or listed, or opened exclusively (pvcreate)`, { device: spec });
  const dev = await node.provider.open(spec, undefined, 'client');
  return writesOnlyIn(dev, undefined, `node ${node.nodeId} (${spec}: ${notLvms}; opened read-only for the command's scan: the node writes a device for a client only when it is on the node's own --devices list, is an LVM physical volume, or is opened exclusively, as pvcreate does)`, true);
}

/**
 * Why `spec` is not LVM's by what the node itself knows (undefined: it is): LVM's when on the node's
 * own device list, or carrying an LVM2 label (read by the node) whose PV uuid is the one the
 * cluster's list gives the device, when the list names it.
 */
async function checkLvmDevice(node: RunningNode, spec: string): Promise<string | undefined> {
  const identity = identityOrUndefined(spec);
  if (identity === undefined) throw new SanboxError('ENOENT', `${spec}: no such device`, { device: spec });
  if (node.provider.ownDevices().some((d) => identityOrUndefined(d) === identity)) return undefined;
  let pvId: string | undefined;
  try {
    pvId = await pvIdOf(spec);
  } catch (err) {
    if (!(err instanceof FormatError)) throw err;
    return `its LVM2 label is damaged (${err.message})`;
  }
  if (pvId === undefined) return 'not an LVM physical volume (no LVM2 label in sectors 0-3)';
  const listed = ((await readClusterDevices(node.device)) ?? []).find((e) => e.pvUuid !== pvId && identityOrUndefined(e.device) === identity);
  if (listed !== undefined) return `the cluster's device list names it as PV ${listed.pvUuid}, but it carries PV ${pvId}`;
  return undefined;
}

/**
 * The PV uuid of the device's LVM2 label (undefined: none), read by the node itself (read-only, no
 * lock taken). The label only: damaged metadata areas behind a good label are still LVM's to
 * repair. A read racing a label rewrite is read again (the one torn-read bound).
 */
async function pvIdOf(spec: string): Promise<string | undefined> {
  const dev = await openDevice(spec, { readOnly: true, guard: 'none' });
  try {
    const head = Buffer.alloc(Math.min(LABEL_SCAN_BYTES, dev.sizeBytes));
    const scan = await readStable(dev, head, 0, (b) => scanLabel(b, { device: dev.name, offsetBytes: 0 }), { sameErrorIsDamage: true });
    return scan.kind === 'label' ? scan.label.pvId : undefined;
  } finally {
    await dev.close();
  }
}

/** A node's error answer as a typed error: its code kept (EFENCED above all), the device named. */
function answerError(name: string, err: unknown): Error {
  if (!(err instanceof SanboxError)) return err as Error;
  return new DiskError(err.code, err.message, { device: name, cause: err });
}

/**
 * Opens devices through a running node over `conn` (a connection of their own: requests are
 * answered one at a time, in order). Every device's I/O is done by the node, through its provider.
 */
export class NodeDevices {
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * Bound on one answer: the node may wait out a fencer on its gate (fenceGateWaitMs) and then do
   * the I/O (ioTimeoutMs), or register its key on a device it opens under the same gate.
   */
  private readonly answerBoundMs: number;

  constructor(private readonly conn: NodeConnection) {
    const t = conn.info.timing;
    this.answerBoundMs = CONTROL_REQUEST_TIMEOUT_MS_DEFAULT + t.fenceGateWaitMs + 2 * t.ioTimeoutMs;
  }

  /**
   * One request after the previous one's answer (the control channel answers in order only one at a
   * time). Other requests of the command (its locks) go here too: see `connection`.
   */
  call(req: Record<string, unknown>, timeoutMs = this.answerBoundMs, keepCode = true): Promise<Record<string, unknown>> {
    const run = this.queue.then(() => this.conn.request(req, timeoutMs, keepCode));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Preempts `victimKey` of `victimNode` on `spec` as node N (dev-preempt): the device opened
   * through N (registering N's key there, if it is not yet), the preempt, the device closed again.
   * Null: the victim held its gate on `spec` longer than N's fenceGateWaitMs.
   */
  async preempt(spec: string, victimNode: number, victimKey: bigint): Promise<PreemptResult | null> {
    const dev = await this.open(spec);
    try {
      const ans = await dev.call({ cmd: 'dev-preempt', victimNode, victimKey: victimKey.toString(16) });
      if (ans.held === true) return null;
      const { outcome, prGeneration } = ans;
      if ((outcome !== 'preempted' && outcome !== 'absent') || typeof prGeneration !== 'number') throw new SanboxError('EIO', `${spec}: the node answered dev-preempt without an outcome`);
      return { outcome, prGeneration };
    } finally {
      await dev.close();
    }
  }

  /** `exclusive`: for pvcreate and pvremove; the node checks that nobody else has the device open. */
  async open(spec: string, opts: { exclusive?: boolean } = {}): Promise<NodeDevice> {
    // A file path is the command's, relative to its cwd: the node resolves nothing against its own.
    const sent = schemeOf(spec) === undefined && !isLvSpec(spec) ? path.resolve(spec) : spec;
    const ans = await this.call({ cmd: 'dev-open', spec: sent, ...(opts.exclusive === true ? { exclusive: true } : {}) });
    const { handle, name, sizeBytes, sectorSizeBytes, readOnly } = ans;
    if (typeof handle !== 'number' || typeof name !== 'string' || typeof sizeBytes !== 'number' || typeof sectorSizeBytes !== 'number' || !isSectorSize(sectorSizeBytes)) {
      throw new SanboxError('EIO', `${spec}: the node answered dev-open without a device`);
    }
    return new NodeDevice(this, handle, name, sizeBytes, sectorSizeBytes, readOnly === true);
  }

  /**
   * The connection with its requests in this queue, for the command's locks: a lock tied to the
   * connection is then released by the node only after every write sent before the client went
   * has been answered (control.ts onClose), where on a second connection the node could read the
   * lock connection's close before a write still queued on this one.
   */
  get connection(): NodeConnection {
    // NodeConnection.request's defaults: the usual answer bound, error answers as EINVAL.
    return { ...this.conn, request: (req, timeoutMs = CTL_ANSWER_TIMEOUT_MS, keepCode = false) => this.call(req, timeoutMs, keepCode) };
  }

  close(): void {
    this.conn.close();
  }
}

/** One device opened through a running node (NodeDevices.open): each I/O is a request to the node. */
export class NodeDevice implements BlockDevice {
  private closed = false;

  constructor(
    private readonly node: NodeDevices,
    private readonly handle: number,
    readonly name: string,
    readonly sizeBytes: number,
    readonly sectorSizeBytes: SectorSize,
    readonly readOnly: boolean,
  ) {}

  /** One request about this device (its handle added); the node's error answer as a DiskError naming it. */
  async call(req: Record<string, unknown>): Promise<Record<string, unknown>> {
    if (this.closed) throw new DiskError('ECLOSED', `${this.name}: device is closed`, { device: this.name });
    try {
      return await this.node.call({ ...req, handle: this.handle });
    } catch (err) {
      throw answerError(this.name, err);
    }
  }

  async read(buf: Buffer, offsetBytes: number): Promise<void> {
    checkRange(this, offsetBytes, buf.length);
    for (let done = 0; done < buf.length; ) {
      const lengthBytes = Math.min(DEV_READ_BYTES_MAX, buf.length - done);
      const ans = await this.call({ cmd: 'dev-read', offsetBytes: offsetBytes + done, lengthBytes });
      const data = typeof ans.data === 'string' ? Buffer.from(ans.data, 'base64') : Buffer.alloc(0);
      if (data.length !== lengthBytes) throw new DiskError('ESHORT', `${this.name}: read at offset ${offsetBytes + done} returned ${data.length} of ${lengthBytes} bytes through the node`, { device: this.name, offsetBytes: offsetBytes + done });
      data.copy(buf, done);
      done += lengthBytes;
    }
  }

  async write(buf: Buffer, offsetBytes: number): Promise<void> {
    checkRange(this, offsetBytes, buf.length);
    // Not checkWritable here: a device the node opened read-only is refused by the node, whose
    // answer says why (openForClient: not LVM's by what the node knows).
    for (let done = 0; done < buf.length; done += DEV_WRITE_BYTES_MAX) {
      const piece = buf.subarray(done, Math.min(buf.length, done + DEV_WRITE_BYTES_MAX));
      await this.call({ cmd: 'dev-write', offsetBytes: offsetBytes + done, data: piece.toString('base64') });
    }
  }

  async flush(): Promise<void> {
    await this.call({ cmd: 'dev-flush' });
  }

  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    checkRange(this, offsetBytes, lengthBytes);
    await this.call({ cmd: 'dev-discard', offsetBytes, lengthBytes });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.call({ cmd: 'dev-close' }).catch(() => undefined);
    this.closed = true;
  }
}
