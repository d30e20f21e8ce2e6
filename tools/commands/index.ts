// Every command group registers itself here; one line per module.

import type { Command } from 'commander';
import { register as bench } from './bench.js';
import { register as demo } from './demo.js';
import { register as disk } from './disk.js';
import { register as dlm } from './dlm.js';
import { register as fault } from './fault.js';
import { register as fs } from './fs.js';
import { register as cluster } from './cluster.js';
import { register as ctl } from './ctl.js';
import { register as lvm } from './lvm.js';
import { register as ocfs2 } from './ocfs2.js';

export const commandGroups: ((program: Command) => void)[] = [demo, disk, fault, cluster, ctl, lvm, ocfs2, fs, dlm, bench];
