// Fault injection as a wrapper device. Rules choose byte ranges and/or "after N operations" and
// then fail with EIO, add latency, stall until released, or tear a write (only a prefix of its
// sectors lands, then the write fails as a crash mid-write would). Rules come from the API (tests)
// or from a JSON control file that a separate node process re-reads while it runs, named by the
// environment variable SANBOX_FAULTS (see openDevice), so a test can break a node it spawned.
//
// Control file shape: {"rules": [FaultRule, ...]}. Removing a stall rule from the file releases it.

import fs from 'node:fs';
import { DiskError } from '../errors.js';
import { checkRange, isSyncDevice, isSyncFit, syncFitChanged, type BlockDevice, type SectorSize, type SyncBlockDevice, type SyncFitness } from './device.js';
import { sleepMs, sleepSyncMs } from './sleep.js';
import { FAULT_CONTROL_POLL_MS } from '../timing.js';

export type FaultOp = 'read' | 'write' | 'any';
export type FaultAction = 'eio' | 'latency' | 'stall' | 'torn';

export interface FaultRule {
  /** Names the rule, so `release(id)` or an edit of the control file can remove it. */
  id?: string;
  op?: FaultOp;
  action: FaultAction;
  /** Only I/O overlapping [offsetBytes, offsetBytes+lengthBytes) matches. Absent: all I/O. */
  offsetBytes?: number;
  lengthBytes?: number;
  /** Only devices whose name contains this string match (a control file may serve many devices). */
  device?: string;
  /** The rule fires from the (afterOps+1)-th matching operation on. Default 0. */
  afterOps?: number;
  /** Fires at most this many times. Default: unlimited. */
  count?: number;
  /** For 'latency': added delay per operation. */
  latencyMs?: number;
  /** For 'torn': how many leading sectors of the write land. Default: half of them. */
  tornSectors?: number;
}


interface RuleState {
  rule: FaultRule;
  seenOps: number;
  fired: number;
}

export class FaultDevice implements SyncBlockDevice, SyncFitness {
  readonly name: string;
  readonly sizeBytes: number;
  readonly sectorSizeBytes: SectorSize;
  readonly readOnly: boolean;
  readonly sync = true as const;
  private states: RuleState[] = [];
  private controlCheckedAtMs = 0;
  private controlStamp = '';
  private warnedStamp = '';

  constructor(
    private readonly inner: BlockDevice,
    private readonly controlFile?: string,
  ) {
    this.name = inner.name;
    this.sizeBytes = inner.sizeBytes;
    this.sectorSizeBytes = inner.sectorSizeBytes;
    this.readOnly = inner.readOnly;
  }

  /** Installs a rule; returns its id. */
  inject(rule: FaultRule): string {
    validateRule(rule, this.name);
    const id = rule.id ?? `r${Math.random().toString(36).slice(2, 10)}`;
    this.states.push({ rule: { ...rule, id }, seenOps: 0, fired: 0 });
    syncFitChanged();
    return id;
  }

  /** Removes a rule (and so releases operations it stalls). */
  release(id: string): void {
    this.states = this.states.filter((s) => s.rule.id !== id);
    syncFitChanged();
  }

  clear(): void {
    this.states = [];
    syncFitChanged();
  }

  get rules(): FaultRule[] {
    return this.states.map((s) => s.rule);
  }

  private reloadControl(force = false): void {
    if (this.controlFile === undefined) return;
    const now = Date.now();
    if (!force && now - this.controlCheckedAtMs < FAULT_CONTROL_POLL_MS) return;
    this.controlCheckedAtMs = now;
    // The file is replaced by rename, so inode + mtime + size identify a version of it.
    let stamp: string;
    try {
      const st = fs.statSync(this.controlFile);
      stamp = `${st.ino}:${st.mtimeMs}:${st.size}`;
    } catch {
      stamp = 'none'; // no file: no rules
    }
    if (stamp === this.controlStamp) return;
    let rules: FaultRule[];
    try {
      rules = stamp === 'none' ? [] : readControlFile(this.controlFile);
    } catch (err) {
      // A half-written or invalid control file changes nothing (and must not fail the I/O that
      // happened to look at it): keep the rules we have, say so once, and look again next poll.
      if (!(err instanceof DiskError)) throw err;
      if (this.warnedStamp !== stamp) process.stderr.write(`sanbox: ignoring fault control file: ${err.message}\n`);
      this.warnedStamp = stamp;
      return;
    }
    this.controlStamp = stamp;
    // Keep counters of rules that are still there, keyed by their content.
    const old = new Map(this.states.map((s) => [JSON.stringify(s.rule), s]));
    this.states = rules.map((rule, i) => {
      const withId = { ...rule, id: rule.id ?? `file${i}` };
      return old.get(JSON.stringify(withId)) ?? { rule: withId, seenOps: 0, fired: 0 };
    });
    syncFitChanged();
  }

  /** The first rule that fires for this operation (counting it against every matching rule). */
  private match(op: 'read' | 'write', offsetBytes: number, lengthBytes: number): FaultRule | undefined {
    this.reloadControl();
    let hit: FaultRule | undefined;
    for (const s of this.states) {
      const r = s.rule;
      if (r.op !== undefined && r.op !== 'any' && r.op !== op) continue;
      if (r.device !== undefined && !this.name.includes(r.device)) continue;
      if (r.offsetBytes !== undefined) {
        const end = r.offsetBytes + (r.lengthBytes ?? this.sizeBytes);
        if (offsetBytes + lengthBytes <= r.offsetBytes || offsetBytes >= end) continue;
      }
      s.seenOps++;
      if (hit !== undefined) continue;
      if (s.seenOps <= (r.afterOps ?? 0)) continue;
      if (r.count !== undefined && s.fired >= r.count) continue;
      s.fired++;
      hit = r;
    }
    return hit;
  }

  private stillInstalled(id: string | undefined): boolean {
    this.reloadControl(true);
    return this.states.some((s) => s.rule.id === id);
  }

  private eio(op: string, offsetBytes: number, lengthBytes: number, what: string): DiskError {
    return new DiskError('EIO', `${this.name}: ${op} failed at offset ${offsetBytes} length ${lengthBytes}: ${what}`, {
      device: this.name,
      offsetBytes,
    });
  }

  private tornLength(rule: FaultRule, lengthBytes: number): number {
    const sectors = Math.floor(lengthBytes / this.sectorSizeBytes);
    const keep = Math.min(rule.tornSectors ?? Math.floor(sectors / 2), sectors);
    return keep * this.sectorSizeBytes;
  }

  private innerSync(): SyncBlockDevice {
    if (!isSyncDevice(this.inner)) throw new DiskError('EINVAL', `${this.name}: synchronous I/O on a device that has only the promise form`);
    return this.inner;
  }

  readSync(buf: Buffer, offsetBytes: number): void {
    // No rule: nothing to match; the device below checks the range under the same name and size.
    if (this.ruleless) return this.innerSync().readSync(buf, offsetBytes);
    checkRange(this, offsetBytes, buf.length);
    const rule = this.match('read', offsetBytes, buf.length);
    if (rule) this.applySync(rule, 'read', offsetBytes, buf.length);
    this.innerSync().readSync(buf, offsetBytes);
  }

  writeSync(buf: Buffer, offsetBytes: number): void {
    if (this.ruleless) return this.innerSync().writeSync(buf, offsetBytes);
    checkRange(this, offsetBytes, buf.length);
    const rule = this.match('write', offsetBytes, buf.length);
    if (rule?.action === 'torn') {
      const keep = this.tornLength(rule, buf.length);
      if (keep > 0) this.innerSync().writeSync(buf.subarray(0, keep), offsetBytes);
      throw this.eio('write', offsetBytes, buf.length, `torn write injected (${keep} of ${buf.length} bytes landed)`);
    }
    if (rule) this.applySync(rule, 'write', offsetBytes, buf.length);
    this.innerSync().writeSync(buf, offsetBytes);
  }

  private applySync(rule: FaultRule, op: string, offsetBytes: number, lengthBytes: number): void {
    switch (rule.action) {
      case 'eio':
        throw this.eio(op, offsetBytes, lengthBytes, 'injected I/O error');
      case 'latency':
        sleepSyncMs(rule.latencyMs ?? 0);
        return;
      case 'stall':
        // Blocks the calling thread, as a hung device does; only the control file can release it.
        while (this.stillInstalled(rule.id)) sleepSyncMs(FAULT_CONTROL_POLL_MS);
        return;
      case 'torn':
        return; // reads are not torn
    }
  }

  private async apply(rule: FaultRule, op: string, offsetBytes: number, lengthBytes: number): Promise<void> {
    switch (rule.action) {
      case 'eio':
        throw this.eio(op, offsetBytes, lengthBytes, 'injected I/O error');
      case 'latency':
        await sleepMs(rule.latencyMs ?? 0);
        return;
      case 'stall':
        while (this.stillInstalled(rule.id)) await sleepMs(FAULT_CONTROL_POLL_MS);
        return;
      case 'torn':
        return;
    }
  }

  /** No rule and no control file: nothing to match (the fast path of every node's device). */
  private get ruleless(): boolean {
    return this.states.length === 0 && this.controlFile === undefined;
  }

  /** The synchronous form sleeps for a latency or stall rule: fit only with no rule (and no control file that may add one). Every change of the rules calls syncFitChanged. */
  get syncFit(): boolean {
    return this.ruleless && isSyncFit(this.inner);
  }

  read(buf: Buffer, offsetBytes: number): Promise<void> {
    if (!this.ruleless) return this.readRuled(buf, offsetBytes);
    try {
      checkRange(this, offsetBytes, buf.length);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.inner.read(buf, offsetBytes);
  }

  write(buf: Buffer, offsetBytes: number): Promise<void> {
    if (!this.ruleless) return this.writeRuled(buf, offsetBytes);
    try {
      checkRange(this, offsetBytes, buf.length);
    } catch (err) {
      return Promise.reject(err as Error);
    }
    return this.inner.write(buf, offsetBytes);
  }

  private async readRuled(buf: Buffer, offsetBytes: number): Promise<void> {
    checkRange(this, offsetBytes, buf.length);
    const rule = this.match('read', offsetBytes, buf.length);
    if (rule) await this.apply(rule, 'read', offsetBytes, buf.length);
    await this.inner.read(buf, offsetBytes);
  }

  private async writeRuled(buf: Buffer, offsetBytes: number): Promise<void> {
    checkRange(this, offsetBytes, buf.length);
    const rule = this.match('write', offsetBytes, buf.length);
    if (rule?.action === 'torn') {
      const keep = this.tornLength(rule, buf.length);
      if (keep > 0) await this.inner.write(buf.subarray(0, keep), offsetBytes);
      throw this.eio('write', offsetBytes, buf.length, `torn write injected (${keep} of ${buf.length} bytes landed)`);
    }
    if (rule) await this.apply(rule, 'write', offsetBytes, buf.length);
    await this.inner.write(buf, offsetBytes);
  }

  flushSync(): void {
    this.innerSync().flushSync();
  }
  discardSync(offsetBytes: number, lengthBytes: number): void {
    this.innerSync().discardSync(offsetBytes, lengthBytes);
  }
  closeSync(): void {
    this.innerSync().closeSync();
  }
  async flush(): Promise<void> {
    await this.inner.flush();
  }
  async discard(offsetBytes: number, lengthBytes: number): Promise<void> {
    await this.inner.discard(offsetBytes, lengthBytes);
  }
  async close(): Promise<void> {
    await this.inner.close();
  }
}

const ACTIONS: readonly FaultAction[] = ['eio', 'latency', 'stall', 'torn'];
const OPS: readonly FaultOp[] = ['read', 'write', 'any'];

function validateRule(rule: FaultRule, where: string): void {
  const bad = (why: string): never => {
    throw new DiskError('EINVAL', `${where}: bad fault rule ${JSON.stringify(rule)}: ${why}`);
  };
  if (typeof rule !== 'object' || rule === null) bad('not an object');
  if (!ACTIONS.includes(rule.action)) bad(`action must be one of ${ACTIONS.join(', ')}`);
  if (rule.op !== undefined && !OPS.includes(rule.op)) bad(`op must be one of ${OPS.join(', ')}`);
  for (const k of ['offsetBytes', 'lengthBytes', 'afterOps', 'count', 'latencyMs', 'tornSectors'] as const) {
    const v = rule[k];
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) bad(`${k} must be a non-negative integer`);
  }
}

/** Reads and validates a control file; anything but a valid {"rules": [...]} is a DiskError. */
export function readControlFile(path: string): FaultRule[] {
  let text: string;
  try {
    // Reading a FIFO (or a device) would block until a writer comes: only regular files are read.
    if (fs.existsSync(path) && !fs.statSync(path).isFile()) throw new DiskError('EINVAL', `${path}: cannot read fault control file: not a regular file`);
    text = fs.readFileSync(path, 'utf8');
  } catch (err) {
    if (err instanceof DiskError) throw err;
    throw new DiskError('EINVAL', `${path}: cannot read fault control file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new DiskError('EINVAL', `${path}: fault control file is not valid JSON`);
  }
  const rules = typeof parsed === 'object' && parsed !== null ? (parsed as { rules?: unknown }).rules : undefined;
  if (!Array.isArray(rules)) throw new DiskError('EINVAL', `${path}: fault control file must be {"rules": [...]}`);
  for (const r of rules) validateRule(r as FaultRule, path);
  return rules as FaultRule[];
}

/** Writes a control file atomically (rename), so a reader never sees half of it. */
export function writeControlFile(path: string, rules: FaultRule[]): void {
  for (const r of rules) validateRule(r, path);
  const tmp = `${path}.tmp${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify({ rules }));
  fs.renameSync(tmp, path);
}

/**
 * The rule that shadows rules[i], if any: an earlier rule that fires on every operation rules[i]
 * could match (FaultDevice.match gives an operation to the first rule that fires), so rules[i]
 * never fires. An earlier rule shadows only if it is unlimited (no afterOps, no count) and covers
 * rules[i]'s op, device filter and byte range.
 */
export function shadowingRule(rules: readonly FaultRule[], i: number): FaultRule | undefined {
  const b = rules[i];
  if (b === undefined) return undefined;
  const bStart = b.offsetBytes ?? 0;
  const bEnd = b.offsetBytes === undefined || b.lengthBytes === undefined ? Infinity : b.offsetBytes + b.lengthBytes;
  for (const a of rules.slice(0, i)) {
    if ((a.afterOps ?? 0) > 0 || a.count !== undefined) continue;
    const aOp = a.op ?? 'any';
    if (aOp !== 'any' && aOp !== (b.op ?? 'any')) continue;
    // Every name containing b.device contains a.device when a.device is a substring of b.device.
    if (a.device !== undefined && (b.device === undefined || !b.device.includes(a.device))) continue;
    const aStart = a.offsetBytes ?? 0;
    const aEnd = a.offsetBytes === undefined || a.lengthBytes === undefined ? Infinity : a.offsetBytes + a.lengthBytes;
    if (aStart > bStart || aEnd < bEnd) continue;
    return a;
  }
  return undefined;
}
