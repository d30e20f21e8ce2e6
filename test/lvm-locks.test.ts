// LVM's cluster locks (src/volume/lvm-locks.ts): names as lvmlockd names them, the val_blk codec
// (with seeded fuzz), and the locks over real Lockspace instances on one image (one per simulated
// node, test/helpers/fake-lockspaces.ts). The multi-process proof is test/lvm-cluster.test.ts.
import test from 'ava';
import { Mode } from '../src/dlm/compat-matrix.js';
import { FormatError } from '../src/errors.js';
import { decodeValBlk, encodeValBlk, VAL_BLK_BYTES, VAL_BLK_VERSION, VBF_REMOVED } from '../src/format/lvm-val-blk.js';
import { RESOURCE_NAME_BYTES_MAX } from '../src/format/lockspace.js';
import { dlmMode, GLOBAL_LOCK, holdersOf, lockLv, LvLockConflict, lvLockResource, lvOpenClaimResource, parseLvLockResource, vgLockResource, withGlobalLock, withVgLock } from '../src/volume/lvm-locks.js';
import { fuzzRandom, onlyFormatError } from './helpers/fuzz.js';
import { setupLockspaces } from './helpers/fake-lockspaces.js';

const UUID = 'Dld9ukHeDMFZJ5P8GJvOwHwXMnEfzlxl';

test('names: GLLK in lvm_global, VGLK and the dashed LV uuid in lvm_<VG>; sh is PR, ex is EX', (t) => {
  t.is(GLOBAL_LOCK, 'lvm_global:GLLK');
  t.is(vgLockResource('vg0'), 'lvm_vg0:VGLK');
  t.is(lvLockResource('vg0', UUID), 'lvm_vg0:Dld9uk-HeDM-FZJ5-P8GJ-vOwH-wXMn-Efzlxl');
  t.is(lvLockResource('vg0', 'Dld9uk-HeDM-FZJ5-P8GJ-vOwH-wXMn-Efzlxl'), lvLockResource('vg0', UUID));
  t.is(dlmMode('sh'), Mode.PR);
  t.is(dlmMode('ex'), Mode.EX);
  // Long VG names are cut so the resource fits the DLM's 64 bytes; the uuid is never cut.
  const long = 'v'.repeat(127);
  t.is(vgLockResource(long).length, RESOURCE_NAME_BYTES_MAX);
  t.is(lvLockResource(long, UUID).length, RESOURCE_NAME_BYTES_MAX);
  t.true(lvLockResource(long, UUID).endsWith(':Dld9uk-HeDM-FZJ5-P8GJ-vOwH-wXMn-Efzlxl'));
  t.throws(() => lvLockResource('vg0', 'short'));
  // An open claim (src/volume/open-claim.ts) is no LV lock: its own name, cut to fit, never parsed as an LV lock.
  t.is(lvOpenClaimResource('vg0', UUID), 'lvm_vg0:Dld9uk-HeDM-FZJ5-P8GJ-vOwH-wXMn-Efzlxl:plain');
  t.is(lvOpenClaimResource(long, UUID).length, RESOURCE_NAME_BYTES_MAX);
  t.true(lvOpenClaimResource(long, UUID).endsWith(':Dld9uk-HeDM-FZJ5-P8GJ-vOwH-wXMn-Efzlxl:plain'));
  t.is(parseLvLockResource(lvOpenClaimResource('vg0', UUID)), undefined);
  t.deepEqual(parseLvLockResource(lvLockResource('vg0', UUID)), { vgPrefix: 'vg0', lvUuid: 'Dld9uk-HeDM-FZJ5-P8GJ-vOwH-wXMn-Efzlxl' });
});

test('val_blk: 8 bytes LE {version 0x0101, flags, seqno}; zero is "never written"; bad bytes are FormatErrors naming the offset', (t) => {
  const b = encodeValBlk({ seqno: 6, removed: false }, 32);
  t.is(b.length, 32);
  t.deepEqual([...b.subarray(0, VAL_BLK_BYTES)], [0x01, 0x01, 0, 0, 6, 0, 0, 0]);
  t.deepEqual(decodeValBlk(b), { seqno: 6, removed: false });
  t.deepEqual(decodeValBlk(encodeValBlk({ seqno: 0xffff_fffe, removed: true })), { seqno: 0xffff_fffe, removed: true });
  t.is(encodeValBlk({ seqno: 1, removed: true }).readUInt16LE(2), VBF_REMOVED);
  t.is(decodeValBlk(Buffer.alloc(32)), undefined);
  const badVersion = Buffer.from(b);
  badVersion.writeUInt16LE(0x0102, 0);
  t.throws(() => decodeValBlk(badVersion, { device: 'lvm_vg0:VGLK' }), { instanceOf: FormatError, message: /lvm_vg0:VGLK: val_blk version 0x0102 is not 0x101 at offset 0/ });
  const badFlags = Buffer.from(b);
  badFlags.writeUInt16LE(0x8000, 2);
  t.throws(() => decodeValBlk(badFlags), { instanceOf: FormatError, message: /unknown bits at offset 2/ });
  const tail = Buffer.from(b);
  tail[20] = 1;
  t.throws(() => decodeValBlk(tail), { instanceOf: FormatError, message: /at offset 20/ });
  t.throws(() => decodeValBlk(Buffer.alloc(4)), { instanceOf: FormatError });
  t.throws(() => encodeValBlk({ seqno: 2 ** 32, removed: false }), { instanceOf: RangeError });
  t.throws(() => encodeValBlk({ seqno: 1, removed: false }, 4), { instanceOf: RangeError });
  t.is(VAL_BLK_VERSION, 0x0101);
});

test('val_blk fuzz: mutated and random blocks decode or throw FormatError, and what decodes re-encodes to the same bytes', (t) => {
  const r = fuzzRandom(t);
  for (let i = 0; i < 5000; i++) {
    let buf: Buffer;
    if (r.next() < 0.5) {
      buf = encodeValBlk({ seqno: r.int(0, 2 ** 31), removed: r.next() < 0.5 }, [8, 16, 32][r.int(0, 3)]);
      for (let k = r.int(1, 4); k > 0; k--) buf[r.int(0, buf.length)] = r.int(0, 256);
    } else {
      buf = Buffer.from(Array.from({ length: r.int(0, 40) }, () => (r.next() < 0.3 ? r.int(0, 256) : 0)));
    }
    let decoded: ReturnType<typeof decodeValBlk>;
    if (onlyFormatError(t, `val_blk ${buf.toString('hex')}`, () => (decoded = decodeValBlk(buf))) !== 'parsed') continue;
    if (decoded !== undefined) t.deepEqual(encodeValBlk(decoded, buf.length), buf);
  }
  t.pass();
});

test('VG lock: an ex holder publishes its seqno at release; the next holder reads it; removed sets VBF_REMOVED', async (t) => {
  const { open } = await setupLockspaces(t);
  const [a, b] = [await open(0), await open(1)];
  await withVgLock(a, 'vg0', 'ex', async (h) => {
    t.is(h.value, undefined);
    h.committed(7);
  });
  t.deepEqual(await withVgLock(b, 'vg0', 'sh', async (h) => h.value), { seqno: 7, removed: false });
  // An ex holder that changed nothing leaves the value alone; a failing one too.
  await withVgLock(a, 'vg0', 'ex', async () => undefined);
  await t.throwsAsync(withVgLock(a, 'vg0', 'ex', async (h) => {
    h.committed(8);
    throw new Error('commit failed');
  }), { message: 'commit failed' });
  t.deepEqual(await withVgLock(b, 'vg0', 'sh', async (h) => h.value), { seqno: 7, removed: false });
  await withVgLock(b, 'vg0', 'ex', async (h) => h.removed());
  t.deepEqual(await withVgLock(a, 'vg0', 'sh', async (h) => h.value), { seqno: 7, removed: true });
  // A sh holder cannot publish.
  await t.throwsAsync(withVgLock(a, 'vg0', 'sh', async (h) => h.committed(9)));
});

test('VG and global locks exclude as lvmlockd\'s do: ex waits for sh readers, sh readers share', async (t) => {
  const { open } = await setupLockspaces(t);
  const [a, b, c] = [await open(0), await open(1), await open(2)];
  const order: string[] = [];
  let releaseReaders!: () => void;
  const readersHold = new Promise<void>((r) => (releaseReaders = r));
  const r1 = withVgLock(a, 'vg0', 'sh', async () => {
    order.push('a sh');
    await readersHold;
  });
  const r2 = withVgLock(b, 'vg0', 'sh', async () => {
    order.push('b sh');
    await readersHold;
  });
  while (order.length < 2) await new Promise((r) => setTimeout(r, 5));
  const w = withVgLock(c, 'vg0', 'ex', async () => void order.push('c ex'), { timeoutMs: 5000 });
  await new Promise((r) => setTimeout(r, 100));
  t.deepEqual(order.sort(), ['a sh', 'b sh']);
  releaseReaders();
  await Promise.all([r1, r2, w]);
  t.is(order[2], 'c ex');
  await t.throwsAsync(withGlobalLock(b, 'ex', () => withGlobalLock(a, 'ex', async () => undefined, { timeoutMs: 200 })), { message: /timed out|ETIMEDOUT|within/i });
});

test('LV lock: ex conflicts fail at once naming the holder; sh holders share; ex after sh is refused', async (t) => {
  const { open } = await setupLockspaces(t);
  const [a, b, c] = [await open(0), await open(1), await open(2)];
  const lv = { name: 'lv0', uuid: UUID };
  const held = await lockLv(a, 'vg0', lv, 'ex');
  const t0 = performance.now();
  const err = await t.throwsAsync(lockLv(b, 'vg0', lv, 'ex'), { instanceOf: LvLockConflict });
  t.true(performance.now() - t0 < 2000, 'a conflict is not queued');
  t.regex(err!.message, /^vg0\/lv0: LV locked by node 0 \(exclusive\); exclusive activation refused on node 1$/);
  t.deepEqual(err!.holders, [{ nodeId: 0, mode: 'EX' }]);
  await held.unlock();
  const s1 = await lockLv(b, 'vg0', lv, 'sh');
  const s2 = await lockLv(c, 'vg0', lv, 'sh');
  const err2 = await t.throwsAsync(lockLv(a, 'vg0', lv, 'ex'), { instanceOf: LvLockConflict });
  t.deepEqual(err2!.holders.map((h) => h.nodeId).sort(), [1, 2]);
  await s1.unlock();
  await s2.unlock();
});

test('holdersOf refuses to answer for a lock service that cannot list holders (never "nobody holds it")', async (t) => {
  const blind = { nodeId: 3, lock: () => Promise.reject(new Error('not used')) };
  await t.throwsAsync(holdersOf(blind, lvOpenClaimResource('vg0', 'x'.repeat(38))), { message: /cannot list the holders/ });
});
