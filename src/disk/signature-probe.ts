// Reading a device's first bytes and asking the one signature table (src/format/signatures.ts)
// what the device holds. Pure reads; no writes.

import { SanboxError } from '../errors.js';
import { describeSignature, findSignatures, SIGNATURE_PROBE_BYTES, type SignatureHit } from '../format/signatures.js';
import type { BlockDevice } from './device.js';

/** The device's first bytes, as many as a probe needs (fewer on a small device). */
export async function readProbeHead(dev: BlockDevice): Promise<Buffer> {
  const head = Buffer.alloc(Math.min(SIGNATURE_PROBE_BYTES, dev.sizeBytes));
  if (head.length > 0) await dev.read(head, 0);
  return head;
}

/** Every known signature on the device, strongest first. */
export async function probeSignatures(dev: BlockDevice): Promise<SignatureHit[]> {
  return findSignatures(await readProbeHead(dev));
}

/** "X is an ocfs2 volume (signature at offset 4096), not a sanbox cluster image". */
export async function describeDevice(dev: BlockDevice, expected: string): Promise<string> {
  return describeSignature(dev.name, await readProbeHead(dev), expected);
}

/**
 * Refuses to overwrite a device that holds any known signature (destructive commands without
 * --force): the error names what is there and where. Nothing is written.
 */
export async function refuseSignatures(dev: BlockDevice, action: string): Promise<void> {
  const hits = await probeSignatures(dev);
  if (hits.length === 0) return;
  const what = hits.map((h) => `${h.description} (${h.type} signature at byte ${h.offsetBytes})`).join(', ');
  throw new SanboxError('EEXIST', `${dev.name}: already holds ${what}; ${action} would destroy it: use --force to overwrite it`, { device: dev.name, offsetBytes: hits[0]!.offsetBytes });
}

export type { SignatureHit };
