// The failover rule as a table (src/node/failover.ts): which owner states let a private container
// be taken, and which change takes it at all. The multi-process version is
// test/container-failover.test.ts.

import test from 'ava';
import { ownerChangeRefusal } from '../src/node/failover.js';
import type { SlotStatus } from '../src/node/status.js';
import { ownerTakenFrom, type ContainerState } from '../src/volume/container.js';
import type { ContainerRecord } from '../src/format/container.js';
import type { NodeState } from '../src/heartbeat/membership-api.js';

const slot = (state: NodeState, ageMs: number | null = 150): SlotStatus => ({
  node: 1,
  name: 'node1',
  pid: null,
  seq: '0',
  generation: '0000000000000001',
  state,
  ageMs,
  deadMs: 2000,
  checksumOk: true,
});

test('fenced, left and free owners may be taken over by anyone; a live one only with its consent; a dead unfenced one never', (t) => {
  for (const s of ['fenced', 'left', 'free'] as const) {
    t.is(ownerChangeRefusal('vg0', slot(s), 2), undefined, s);
    t.is(ownerChangeRefusal('vg0', slot(s), undefined), undefined, `${s}, no --node`);
  }
  t.is(ownerChangeRefusal('vg0', slot('up'), 1), undefined, 'the owner itself: consent');
  t.is(
    ownerChangeRefusal('vg0', slot('up'), 2),
    'volume group vg0: its owner node 1 is alive (last heartbeat 0.1 s ago): a takeover without its consent is refused; make the change as node 1 (--node 1), or stop node 1 first',
  );
  t.regex(ownerChangeRefusal('vg0', slot('up'), undefined)!, /owner node 1 is alive/);
  t.regex(ownerChangeRefusal('vg0', slot('up', null), 2)!, /last heartbeat at an unknown time/);
  for (const requester of [1, 2, undefined]) {
    t.is(
      ownerChangeRefusal('vg0', slot('dead', 3600), requester),
      'volume group vg0: its owner node 1 is not fenced yet: last heartbeat 3.6 s ago, dead after 2.0 s; a node with quorum must fence it before its container is taken over (cluster status shows it fenced then)',
      `requester ${requester}: even the owner's number does not skip the fence (its old incarnation may be stalled)`,
    );
  }
});

test('an owner whose heartbeat block fails its checksum is of unknown state: no takeover, whatever the slot reads', (t) => {
  for (const s of ['fenced', 'left', 'free', 'dead', 'up'] as const) {
    for (const requester of [2, undefined]) {
      t.is(
        ownerChangeRefusal('vg0', { ...slot(s), seq: '17', checksumOk: false }, requester),
        'volume group vg0: the heartbeat block of its owner node 1 fails its checksum: whether node 1 is alive is unknown, so a takeover is refused',
        `${s}, requester ${requester}`,
      );
    }
  }
  // A slot never written (all zero) fails the checksum too, and is free.
  t.is(ownerChangeRefusal('vg0', { ...slot('free'), seq: '0', generation: '0', checksumOk: false }, 2), undefined);
});

test('what takes a private container from its owner: a new owner or another kind; nothing else does', (t) => {
  const rec = (kind: ContainerRecord['kind'], ownerNode?: number): ContainerRecord => ({
    sequence: 1,
    kind,
    lockType: kind === 'shared' ? 'dlm' : undefined,
    ownerNode,
    vgName: 'vg0',
    vgUuid: 'x'.repeat(32),
    clusterName: 'lab',
    clusterUuid: Buffer.alloc(16, 1),
    pvUuids: [],
  });
  const state = (r: ContainerRecord | undefined): ContainerState => ({ record: r, lvmKind: r?.kind ?? 'local', inSync: true, badCopies: [] });
  t.is(ownerTakenFrom(state(rec('private', 1)), rec('private', 2)), 1);
  t.is(ownerTakenFrom(state(rec('private', 1)), rec('shared')), 1);
  t.is(ownerTakenFrom(state(rec('private', 1)), rec('deported')), 1);
  t.is(ownerTakenFrom(state(rec('private', 1)), rec('private', 1)), undefined, 'no change of owner');
  t.is(ownerTakenFrom(state(rec('shared')), rec('private', 2)), undefined, 'a shared container has no owner to take from');
  t.is(ownerTakenFrom(state(undefined), rec('private', 2)), undefined, 'a local VG neither');
});
