// A node writes only its own slot's sectors (src/disk/own-slots.ts): the guard on the devices a
// node writes through refuses, as a sanbox invariant violation, any write or discard that touches
// another node's heartbeat slot or node record, and passes everything else through unchanged.

import test from 'ava';
import path from 'node:path';
import { openDevice } from '../src/disk/open.js';
import { checkOwnSlots, ownSlotsOnly, type SlotTable } from '../src/disk/own-slots.js';
import { isSyncDevice } from '../src/disk/device.js';
import { clusterSlotTables, initClusterImage, nodeRecordOffset } from '../src/heartbeat/cluster-image.js';
import { presetTiming } from '../src/timing.js';
import { readFileAt, tempDir } from './helpers/tmp.js';

const table: SlotTable = { what: 'heartbeat', offsetBytes: 4096, slotBytes: 512, slotCount: 4 };

test('checkOwnSlots: own slot and outside the table pass; a neighbour, a straddle or the whole table do not', (t) => {
  const own = 4096 + 2 * 512;
  t.notThrows(() => checkOwnSlots('d', [table], 2, own, 512));
  t.notThrows(() => checkOwnSlots('d', [table], 2, own + 100, 12));
  t.notThrows(() => checkOwnSlots('d', [table], 2, 0, 4096)); // ends where the table starts
  t.notThrows(() => checkOwnSlots('d', [table], 2, 4096 + 4 * 512, 512)); // starts where it ends
  t.notThrows(() => checkOwnSlots('d', [table], 2, own + 512, 0)); // empty
  t.throws(() => checkOwnSlots('d', [table], 2, own + 512, 512), { message: /sanbox invariant violated: d: node 2 writes \[5632, 6144\) in the heartbeat table, outside its own slot \[5120, 5632\)/ });
  t.throws(() => checkOwnSlots('d', [table], 2, own - 1, 2), { message: /invariant/ });
  t.throws(() => checkOwnSlots('d', [table], 2, 0, 1 << 20), { message: /invariant/ });
});

test('a node device over a cluster image writes its own slots, refuses the others and leaves them untouched', async (t) => {
  const img = path.join(tempDir(t), 'c.img');
  const info = await initClusterImage(img, { clusterName: 'own', nodeCount: 3, timing: presetTiming('local') });
  const raw = await openDevice(img, { guard: 'none' });
  const dev = ownSlotsOnly(raw, 1, clusterSlotTables(info));
  t.teardown(() => dev.close());
  t.is(isSyncDevice(dev), isSyncDevice(raw));
  const hb = info.regions.get('heartbeat')!.payloadOffsetBytes;
  const s = info.header.sectorSizeBytes;
  const sector = Buffer.alloc(s, 0x5a);
  await dev.write(sector, hb + 1 * s);
  await dev.write(sector, nodeRecordOffset(info, 1));
  await t.throwsAsync(dev.write(sector, hb + 2 * s), { message: /node 1 writes .* in the heartbeat table/ });
  await t.throwsAsync(dev.write(sector, nodeRecordOffset(info, 0)), { message: /node 1 writes .* in the node records table/ });
  await t.throwsAsync(dev.discard(hb, 2 * s), { message: /invariant/ });
  // A slot beyond the configured nodes is someone else's too (an o2hb region has 255).
  await t.throwsAsync(dev.write(sector, hb + 200 * s), { message: /invariant/ });
  if (isSyncDevice(dev)) t.throws(() => dev.writeSync(sector, hb), { message: /invariant/ });
  // Outside the tables (the lockspace) writes pass.
  const ls = info.regions.get('lockspace')!.payloadOffsetBytes;
  await dev.write(sector, ls);
  // The disk holds exactly the allowed writes.
  t.deepEqual(readFileAt(img, hb + s, s), sector);
  t.deepEqual(readFileAt(img, nodeRecordOffset(info, 1), s), sector);
  t.deepEqual(readFileAt(img, ls, s), sector);
  for (const off of [hb, hb + 2 * s, hb + 200 * s, nodeRecordOffset(info, 0)]) t.deepEqual(readFileAt(img, off, s), Buffer.alloc(s), `offset ${off}`);
});
