// sanbox's own record formats, byte for byte: fixed inputs encode to the SHA-256 prefixes recorded
// when the codecs were folded onto one fail/CRC/string helper (issue 14 item 5). A codec change
// that moves a byte of an on-disk record fails here, whatever its round trip says.

import test from 'ava';
import crypto from 'node:crypto';
import { encodeClusterHeader, encodeConfig, encodeRegionHeader, planRegions } from '../src/format/cluster-image.js';
import { encodeNodeRecord } from '../src/format/node-record.js';
import { encodeO2hbBlock } from '../src/format/o2hb-block.js';
import { emptyReservations, encodeReservations } from '../src/format/reservations.js';

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex').slice(0, 16);

test('cluster image header, region header, config and the region plan are unchanged', (t) => {
  const uuid = Buffer.alloc(16, 7);
  const plan = planRegions({ sectorSizeBytes: 512, nodeCount: 4, lockspaceBytes: 1 << 20 });
  t.deepEqual(
    plan.regions.map((r) => [r.name, r.offsetBytes, r.sizeBytes]),
    [
      ['config', 4096, 24576],
      ['heartbeat', 28672, 135168],
      ['nodes', 163840, 135168],
      ['reservations', 299008, 20480],
      ['lockspace', 319488, 1052672],
      // Added by issue 18 item 7 after the others, which keep their places.
      ['devices', 1372160, 135168],
    ],
  );
  t.is(sha(encodeClusterHeader({ version: 1, sectorSizeBytes: 512, imageSizeBytes: plan.imageSizeBytes, clusterUuid: uuid, regions: plan.regions })), 'e6172847b1fd27cb');
  t.is(sha(encodeRegionHeader({ name: 'lockspace', version: 1, payloadBytes: 4096, clusterUuid: uuid })), 'dc864545fa63b9fe');
  const config = { clusterName: 'abc', nodeCount: 3, intervalMs: 100, deadThreshold: 5, ioTimeoutMs: 300, timingPreset: 'local', runDir: '/tmp/x', nodeNames: ['a', 'bb', ''] };
  t.is(sha(encodeConfig(config)), '6375b6ba490f2e7b');
});

test('node record, reservations record and o2hb block are unchanged', (t) => {
  const rec = { nodeId: 3, generation: 5n, pid: 77, pidStartTicks: 9n, bootId: Buffer.alloc(16, 1), joinedAtMs: 1234, prKey: 0x55n, name: 'n3', hostname: 'host' };
  t.is(sha(encodeNodeRecord(rec)), 'c9b3dee35378f1ce');
  const s = emptyReservations();
  s.registered[3] = 0x1234n;
  s.preempted[7] = 9n;
  s.updateSeq = 5n;
  s.prGeneration = 3;
  s.reservationKey = 0x1234n;
  s.reservationType = 5;
  t.is(sha(encodeReservations(s)), 'bacae177a63d8be1');
  t.is(sha(encodeO2hbBlock({ seq: 99n, nodeId: 4, generation: 0xabcn, deadMs: 3000 }, 512)), '3a29cbfcf3604c21');
});
