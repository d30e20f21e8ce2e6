// The compatibility matrix (src/dlm/compat-matrix.ts) against the table of reference/locking.md
// §2.1 (the kernel's fs/dlm/lock.c matrix and dlmconstants.h values), independently of the model
// checker: the table below is that section's text, parsed here; every one of the 36 pairs is then
// checked on compatible() and on the real lock manager (two nodes on one region, NOQUEUE: the
// second request is granted exactly when the table says 1).

import test from 'ava';
import path from 'node:path';
import { createImage, FileDisk } from '../src/disk/index.js';
import { viewOf } from '../src/disk/view-device.js';
import { compatible, isDownConversion, Mode, MODE_NAMES, MODES, parseMode } from '../src/dlm/compat-matrix.js';
import { DlmError, Lockspace } from '../src/dlm/lock-manager.js';
import { lockspaceRegionBytes } from '../src/format/lockspace.js';
import type { Membership } from '../src/heartbeat/membership-api.js';
import { tempDir } from './helpers/tmp.js';

// reference/locking.md §2.1, verbatim.
const MODES_TABLE = `
| mode | value | meaning |
|---|---|---|
| IV | −1 | invalid / none |
| NL | 0 | null (hold a handle, cache mastery) |
| CR | 1 | concurrent read |
| CW | 2 | concurrent write |
| PR | 3 | protected read (shared read) |
| PW | 4 | protected write (one writer, concurrent CR readers) |
| EX | 5 | exclusive |
`;
const COMPAT_TABLE = `
| | NL | CR | CW | PR | PW | EX |
|---|---|---|---|---|---|---|
| **NL** | 1 | 1 | 1 | 1 | 1 | 1 |
| **CR** | 1 | 1 | 1 | 1 | 1 | 0 |
| **CW** | 1 | 1 | 1 | 0 | 0 | 0 |
| **PR** | 1 | 1 | 0 | 1 | 0 | 0 |
| **PW** | 1 | 1 | 0 | 0 | 0 | 0 |
| **EX** | 1 | 0 | 0 | 0 | 0 | 0 |
`;

function rows(table: string): string[][] {
  return table
    .trim()
    .split('\n')
    .filter((l) => !/^\|[-|]+\|$/.test(l))
    .map((l) =>
      l
        .slice(1, -1)
        .split('|')
        .map((c) => c.trim().replace(/\*\*/g, '')),
    );
}

function parseCompat(): Map<string, boolean> {
  const [head, ...body] = rows(COMPAT_TABLE);
  const cols = head!.slice(1);
  const out = new Map<string, boolean>();
  for (const r of body) for (let i = 0; i < cols.length; i++) out.set(`${r[0]}/${cols[i]}`, r[i + 1] === '1');
  return out;
}

test('mode names and values are the kernel\'s (dlmconstants.h)', (t) => {
  const [, ...body] = rows(MODES_TABLE);
  const named = body.filter((r) => r[0] !== 'IV');
  t.deepEqual(named.map((r) => r[0]), [...MODE_NAMES]);
  for (const [name, value] of named) {
    t.is(parseMode(name!), Number(value), name);
    t.is(Mode[name as keyof typeof Mode], Number(value), name);
  }
  t.is(parseMode('IV'), undefined, 'IV is not a mode one can request');
});

test('compatible() is the table of §2.1, all 36 pairs, and symmetric', (t) => {
  const table = parseCompat();
  t.is(table.size, 36);
  for (const a of MODES) {
    for (const b of MODES) {
      t.is(compatible(a, b), table.get(`${MODE_NAMES[a]}/${MODE_NAMES[b]}`) === true, `${MODE_NAMES[a]} with ${MODE_NAMES[b]}`);
      t.is(compatible(a, b), compatible(b, a));
    }
  }
  // The conversion order derived from the matrix: NL < CR < CW < PW < EX and CR < PR < PW; CW and
  // PR are incomparable (neither is a down-conversion of the other).
  for (const [from, to] of [['EX', 'PW'], ['PW', 'CW'], ['CW', 'CR'], ['CR', 'NL'], ['PW', 'PR'], ['PR', 'CR'], ['EX', 'NL']]) {
    t.true(isDownConversion(parseMode(from!)!, parseMode(to!)!), `${from}->${to} is down`);
    t.false(isDownConversion(parseMode(to!)!, parseMode(from!)!), `${to}->${from} is up`);
  }
  t.false(isDownConversion(Mode.PR, Mode.CW));
  t.false(isDownConversion(Mode.CW, Mode.PR));
});

test('the lock manager grants a second node exactly the modes the table allows beside a held one', async (t) => {
  const dir = tempDir(t);
  const img = path.join(dir, 'm.img');
  const regionBytes = lockspaceRegionBytes(512, 2, 64);
  createImage(img, { sizeBytes: regionBytes, sectorSizeBytes: 512 });
  const member = (nodeId: number): Membership => ({
    localNodeId: nodeId,
    localGeneration: BigInt(nodeId + 1),
    members: () => [0, 1].map((n) => ({ nodeId: n, generation: BigInt(n + 1), state: 'up' as const })),
    hasQuorum: () => true,
    isFenced: () => false,
    subscribe: () => () => undefined,
  });
  const disks = [FileDisk.open(img, { guard: 'none' }), FileDisk.open(img, { guard: 'none' })];
  const a = await Lockspace.open(viewOf(disks[0]!, 0, regionBytes), { membership: member(0) });
  const b = await Lockspace.open(viewOf(disks[1]!, 0, regionBytes), { membership: member(1) });
  t.teardown(async () => {
    await a.close();
    await b.close();
    for (const d of disks) d.closeSync();
  });
  const table = parseCompat();
  for (const held of MODES) {
    for (const want of MODES) {
      const res = `m-${held}-${want}`;
      const h = await a.lock(res, held);
      let granted: boolean;
      try {
        const l = await b.lock(res, want, { noqueue: true });
        granted = true;
        await l.unlock();
      } catch (err) {
        if (!(err instanceof DlmError) || err.code !== 'EAGAIN') throw err;
        granted = false;
      }
      await h.unlock();
      t.is(granted, table.get(`${MODE_NAMES[held]}/${MODE_NAMES[want]}`) === true, `node 1 asks ${MODE_NAMES[want]} while node 0 holds ${MODE_NAMES[held]}`);
    }
  }
});
