// One argument style for images: every command takes its image positionally; commands that nodes
// use (node, lock, ctl, dlm ls, cluster status) also take `--cluster IMG`, the form `sanbox node`
// and `sanbox lock` were first written with. Both given must name the same image.

import { UsageError } from '../src/errors.js';
import { isNodeId, O2NM_MAX_NODES } from '../src/format/o2hb-block.js';
import { DEVICES_ENV } from '../src/volume/devices-env.js';

/** The option that names a cluster image, added to every command that takes one positionally too. */
export const CLUSTER_OPTION = '--cluster <image>';
export const CLUSTER_OPTION_HELP = 'cluster image (the same as giving it positionally)';

/** The image from the positional argument and/or `--cluster`; a usage error if neither or both, differing. */
export function clusterImage(positional: string | undefined, option: string | undefined): string {
  if (positional !== undefined && option !== undefined && positional !== option) {
    throw new UsageError(`the cluster image is given twice, differently: '${positional}' and --cluster '${option}'`);
  }
  const image = positional ?? option;
  if (image === undefined) throw new UsageError("missing required argument 'image' (or --cluster IMAGE)");
  return image;
}


/** `--devices` of the commands whose TARGET may be a VG/LV (fs, ocfs2 and bench commands). */
export const TARGET_DEVICES_HELP = `image files holding the PVs when TARGET is VG/LV (comma-separated; default ${DEVICES_ENV})`;

/** NODE, `sanbox ctl`'s operand: a node number (usage error otherwise). */
export function nodeNumber(text: string): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`NODE must be a node number (0, 1, …), not '${text}'`);
  return Number(text);
}

/** `--node N`: a node number 0..254 (O2NM_MAX_NODES, src/format/o2hb-block.ts); anything else is a usage error. */
export function nodeNumberArg(text: string, flag = '--node'): number {
  const n = /^\d{1,3}$/.test(text) ? Number(text) : NaN;
  if (!isNodeId(n)) throw new UsageError(`${flag} takes a node number, not '${text}' (0..${O2NM_MAX_NODES - 1})`);
  return n;
}
