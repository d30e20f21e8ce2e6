// The power fence: SIGKILL a node process on this machine and wait until it is gone. The victim is
// named by pid AND process start time (field 22 of /proc/PID/stat, clock ticks after boot) AND the
// boot id of the machine, all recorded when the node joined, so pid reuse can never make us kill a
// stranger or take a stranger's exit as the victim's (ARCHITECTURE.md, "Kill the right process").

import fs from 'node:fs';
import { SanboxError } from '../errors.js';
import type { NodeClient } from '../format/node-record.js';
import { LOCAL_TIMING } from '../timing.js';

/** How often the fencer looks for the victim to be gone, unless told (timing.powerFencePollMs). */
const POLL_MS_DEFAULT = LOCAL_TIMING.powerFencePollMs;
/** Bound on the /proc entries one group scan looks at (a machine has at most pid_max processes; 4M on 64-bit Linux). */
const PROC_ENTRIES_MAX = 4_194_304;

export interface ProcessIdentity {
  pid: number;
  /** /proc/PID/stat field 22. */
  startTicks: bigint;
  /** /proc/sys/kernel/random/boot_id as 16 bytes. */
  bootId: Buffer;
}

export interface ProcStat {
  state: string;
  startTicks: bigint;
  /** Process group (field 5). */
  pgrp: number;
}

/** Reads state (field 3) and start time (field 22) of a pid; null if there is no such process. */
export function readProcStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (err) {
    // Only "no such process" means gone (ESRCH: it exited while we read). Any other failure
    // (EMFILE, EACCES, …) must not be taken for the victim's death, or a live node would be
    // reported fenced.
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') return null;
    throw err;
  }
  // comm (field 2) is in parentheses and may itself contain spaces and ')': split after the LAST ')'.
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const rest = text.slice(close + 2).split(' ');
  // rest[0] is field 3 (state); field 22 is rest[19].
  const start = rest[19];
  if (rest[0] === undefined || start === undefined || !/^\d+$/.test(start)) return null;
  const pgrp = Number(rest[2]);
  return { state: rest[0], startTicks: BigInt(start), pgrp: Number.isInteger(pgrp) ? pgrp : -1 };
}

let cachedBootId: Buffer | undefined;
export function bootId(): Buffer {
  if (cachedBootId === undefined) {
    const text = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'latin1').trim().replace(/-/g, '');
    if (!/^[0-9a-f]{32}$/.test(text)) throw new SanboxError('EINVAL', `unexpected boot id '${text}'`);
    cachedBootId = Buffer.from(text, 'hex');
  }
  return cachedBootId;
}

/** The identity of this process, recorded in its node record at join. */
export function selfIdentity(): ProcessIdentity {
  const st = readProcStat(process.pid);
  if (st === null) throw new SanboxError('EINVAL', 'cannot read /proc/self/stat');
  return { pid: process.pid, startTicks: st.startTicks, bootId: bootId() };
}

/** True while exactly this process (same pid, same start time) exists and has not exited. */
export function isRunning(id: ProcessIdentity): boolean {
  if (!id.bootId.equals(bootId())) return false;
  const st = readProcStat(id.pid);
  // Z (zombie) and X (dead) have exited: they write nothing more and only wait to be reaped.
  return st !== null && st.startTicks === id.startTicks && st.state !== 'Z' && st.state !== 'X';
}

export interface PowerFenceResult {
  /** 'killed': we sent SIGKILL and saw it go; 'gone': it was not running any more. */
  outcome: 'killed' | 'gone';
  waitedMs: number;
}

/**
 * Sends SIGKILL to exactly this process if it runs: false if it was not running (exited, or its
 * pid is now another process's). Throws EFENCED if it is on another machine or cannot be signalled.
 */
function sendKill(id: ProcessIdentity, what: string): boolean {
  if (!id.bootId.equals(bootId())) {
    throw new SanboxError('EFENCED', `power fence: ${what} pid ${id.pid} ran on another machine (boot id ${id.bootId.toString('hex')}); cannot kill it from here`);
  }
  if (!isRunning(id)) return false;
  try {
    process.kill(id.pid, 'SIGKILL');
  } catch (err) {
    // ESRCH: it exited between the check and the kill; it is gone as the wait will see.
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw new SanboxError('EFENCED', `power fence: cannot kill ${what} pid ${id.pid}: ${(err as Error).message}`, { cause: err });
  }
  return true;
}

/**
 * SIGKILLs the process and waits (bounded by waitMs) until it is gone. SIGKILL also ends a
 * stopped (SIGSTOP) process. Throws if the process is on another machine or survives waitMs.
 */
export async function powerFence(id: ProcessIdentity, waitMs: number, pollMs = POLL_MS_DEFAULT): Promise<PowerFenceResult> {
  const t0 = performance.now();
  if (!sendKill(id, 'node')) return { outcome: 'gone', waitedMs: 0 };
  while (isRunning(id)) {
    if (performance.now() - t0 > waitMs) throw new SanboxError('EFENCED', `power fence: pid ${id.pid} still running ${waitMs} ms after SIGKILL`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
  return { outcome: 'killed', waitedMs: performance.now() - t0 };
}

/** What killClients' one pass did to one client: SIGKILL sent, gone already, or it could not be signalled (why). */
export interface ClientSignal {
  pid: number;
  outcome: 'sigkill' | 'gone' | 'survived';
  /** Why it could not be signalled. */
  why?: string;
}

/** What ending one client came to: killed, gone (not running: exited, or its pid now another process's), or survived (why). */
export interface ClientEnd {
  pid: number;
  outcome: PowerFenceResult['outcome'] | 'survived';
  /** Why it survived. */
  why?: string;
}

/** "client pid P killed" (gone, was not ended: why): one client's end, as fencers and nodes log it. */
export function describeClientEnd(e: ClientEnd): string {
  return `client pid ${e.pid} ${e.outcome === 'survived' ? `was not ended: ${e.why ?? ''}` : e.outcome}`;
}

export interface ClientKill {
  /** Per client, in order, what the one pass did: it returns once every SIGKILL is sent. */
  sent: ClientSignal[];
  /**
   * Settles once every signalled client is gone or one shared deadline (waitMs after the pass)
   * has passed, with each client's end in the same order. Never rejects.
   */
  ended: Promise<ClientEnd[]>;
}

/**
 * SIGKILLs a node's clients (src/node/clients.ts), as the power fence kills a node: each named by
 * pid and start time, so a reused pid is never killed and one that exited is `gone`, and by the
 * boot id of the node's record (clients run on their node's machine): a foreign one is refused
 * (EFENCED), as powerFence refuses a node elsewhere, since pid and start ticks (10 ms-granular
 * since boot) can repeat on another machine booted the same way. All are signalled in one pass,
 * and the caller gets the SIGKILLs' outcome at once and the wait for the processes to go apart:
 * ending clients is never a condition of a fence (every write of theirs goes through their fenced
 * node), so nobody has to wait for one that cannot die at once (stuck in the kernel, D state: its
 * SIGKILL stays pending) — and whoever waits, waits once for all, not waitMs per client. A client
 * that cannot be ended (another user's process, one still there at the deadline) is `survived`
 * with why, not an exception.
 */
export function killClients(clients: readonly NodeClient[], clientsBootId: Buffer, waitMs: number, pollMs = POLL_MS_DEFAULT): ClientKill {
  if (!clientsBootId.equals(bootId())) {
    throw new SanboxError('EFENCED', `cannot kill clients of a node on another machine (boot id ${clientsBootId.toString('hex')}) from here`);
  }
  const t0 = performance.now();
  const sent: ClientSignal[] = [];
  for (const c of clients) {
    try {
      sent.push({ pid: c.pid, outcome: sendKill({ pid: c.pid, startTicks: c.startTicks, bootId: clientsBootId }, 'client') ? 'sigkill' : 'gone' });
    } catch (err) {
      sent.push({ pid: c.pid, outcome: 'survived', why: (err as Error).message });
    }
  }
  /** A signalled client still there; a /proc read that fails counts as still there (never taken for its death). */
  const running = (i: number): boolean => {
    try {
      return isRunning({ pid: clients[i]!.pid, startTicks: clients[i]!.startTicks, bootId: clientsBootId });
    } catch {
      return true;
    }
  };
  const ended = (async (): Promise<ClientEnd[]> => {
    const signalled = sent.flatMap((s, i) => (s.outcome === 'sigkill' ? [i] : []));
    while (signalled.some(running) && performance.now() - t0 <= waitMs) await new Promise((r) => setTimeout(r, pollMs));
    return sent.map((s, i): ClientEnd => {
      if (s.outcome !== 'sigkill') return s.why === undefined ? { pid: s.pid, outcome: 'gone' } : { pid: s.pid, outcome: 'survived', why: s.why };
      return running(i) ? { pid: s.pid, outcome: 'survived', why: `still running ${waitMs} ms after SIGKILL` } : { pid: s.pid, outcome: 'killed' };
    });
  })();
  return { sent, ended };
}

/** Live (not zombie) processes of process group `pgid` on this machine. */
export function groupMembers(pgid: number): number[] {
  const out: number[] = [];
  const entries = fs.readdirSync('/proc');
  if (entries.length > PROC_ENTRIES_MAX) throw new SanboxError('EINVAL', `/proc lists ${entries.length} entries, more than ${PROC_ENTRIES_MAX}`);
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const st = readProcStat(Number(e));
    if (st !== null && st.pgrp === pgid && st.state !== 'Z' && st.state !== 'X') out.push(Number(e));
  }
  return out;
}

/**
 * SIGKILLs a node's command process group and waits (bounded by waitMs) until none of it is left.
 * The group is named by its leader's pid and start time: if the leader is alive with another start
 * time, the number belongs to a stranger and nothing is killed. (While any member of the node's
 * group lives, Linux reuses neither its pid nor its group id, so the members found are the node's.)
 */
export async function killGroup(id: ProcessIdentity, waitMs: number, pollMs = POLL_MS_DEFAULT): Promise<PowerFenceResult> {
  const t0 = performance.now();
  if (!id.bootId.equals(bootId())) throw new SanboxError('EFENCED', `power fence: process group ${id.pid} is on another machine; cannot kill it from here`);
  const leader = readProcStat(id.pid);
  if (leader !== null && leader.startTicks !== id.startTicks) return { outcome: 'gone', waitedMs: 0 };
  if (groupMembers(id.pid).length === 0) return { outcome: 'gone', waitedMs: 0 };
  try {
    process.kill(-id.pid, 'SIGKILL');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw new SanboxError('EFENCED', `power fence: cannot kill process group ${id.pid}: ${(err as Error).message}`, { cause: err });
  }
  while (groupMembers(id.pid).length > 0) {
    if (performance.now() - t0 > waitMs) throw new SanboxError('EFENCED', `power fence: process group ${id.pid} still has processes ${waitMs} ms after SIGKILL`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
  return { outcome: 'killed', waitedMs: performance.now() - t0 };
}
