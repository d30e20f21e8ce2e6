// LVM-style commands: pvcreate/pvs/pvremove, vgcreate/vgextend/vgreduce/vgremove/vgs/vgdisplay,
// lvcreate/lvextend/lvreduce/lvrename/lvremove/lvs. Thin shells over src/volume.
//
// Devices: sanbox has no /dev to scan. A command looks at the images named on its command line,
// plus `--devices a.img,b.img`, plus the environment variable SANBOX_DEVICES (same form).
//
// The actions are in lvm-actions.ts, loaded when one runs.

import { Option, type Command } from 'commander';
import { CONTAINER_KINDS } from '../../src/format/container.js';
import { DEVICES_ENV, DEVICES_FILE_ENV } from '../../src/volume/devices-env.js';
import { lazyAction } from './lazy.js';

const actions = () => import('./lvm-actions.js');

const DEVICES_HELP = `comma-separated image files to look for PVs on (also: env ${DEVICES_ENV}; else the devices file, see lvmdevices)`;

function nodeOptions(c: Command, withCluster = true): Command {
  if (withCluster) c.option('--cluster <img>', 'the cluster image of --node');
  return c
    .option('--node <n>', 'run as node N of the cluster --cluster IMG: take the global, VG and LV locks as lvmlockd does (through node N if it runs, else joining as N for the command)')
    .addOption(new Option('--ctl', 'node N must be running (sanbox ctl IMG N lvm …)').hideHelp());
}

export function register(program: Command): void {
  program
    .command('lvmdevices')
    .description(`list or change the devices file (lvm2's format): the devices LVM commands use when neither --devices nor ${DEVICES_ENV} names any`)
    .option('--adddev <image>', 'add an image (or nbd:// URL) to the devices file, with its PV uuid if it holds a PV')
    .option('--deldev <image>', 'remove an image from the devices file')
    .option('--devicesfile <path>', `the devices file (default: $${DEVICES_FILE_ENV}, else ~/.config/sanbox/system.devices)`)
    .option('--json', 'print the entries as JSON', false)
    .action(lazyAction(actions, (m) => m.lvmdevices));

  nodeOptions(program
    .command('pvcreate')
    .description('make image files LVM2 physical volumes (label in sector 1, metadata area at 4 KiB, data at the alignment); refuses a device holding a PV or a filesystem, or in use')
    .argument('<images...>', 'image files')
    .option('--metadatasize <size>', 'size of each metadata area (default unit MiB; default: up to the data alignment)')
    .option('--metadatacopies <n>', 'metadata areas per PV: 1 (at the start) or 2 (also at the end)', '1')
    .option('--dataalignment <size>', 'alignment of the first extent (default unit KiB)', '1m')
    .option('-f, --force', 'overwrite a filesystem, cluster image or other signature on the device (never a PV)', false))
    .action(lazyAction(actions, (m) => m.pvcreate));

  nodeOptions(program
    .command('pvremove')
    .description('wipe the LVM label and metadata-area headers of PVs that belong to no VG')
    .argument('<images...>', 'image files'))
    .action(lazyAction(actions, (m) => m.pvremove));

  reportOptions(
    program
      .command('pvs')
      .description('list physical volumes (lvm2\'s report: default columns PV, VG, Fmt, Attr, PSize, PFree)')
      .argument('[images...]', `image files (default: --devices / ${DEVICES_ENV})`)
  ).action(lazyAction(actions, (m) => m.pvs));

  const vgcreate = program
    .command('vgcreate')
    .description('create a volume group on orphan PVs (seqno 1 written to every metadata area)')
    .argument('<vg>', 'volume group name')
    .argument('<images...>', 'PV image files')
    .option('-s, --physicalextentsize <size>', 'extent size, a power of 2 (default unit MiB)', '4m')
    .option('--container <kind>', `make it a cluster container: ${CONTAINER_KINDS.join(', ')}`)
    .option('--owner <node>', "a private container's owner node")
    .option('--cluster <img>', 'the cluster image the container belongs to')
    .option('--devices <list>', DEVICES_HELP);
  nodeOptions(vgcreate, false).action(lazyAction(actions, (m) => m.vgcreate));

  for (const [cmd, kind, from, what] of [
    ['vgexport', 'deported', ['local', 'private', 'shared'], 'deport a container: no node may use it (lvm2: an exported VG)'],
    ['vgimport', 'local', ['deported'], 'import a deported container: it becomes local'],
  ] as const) {
    nodeOptions(program
      .command(cmd)
      .description(what)
      .argument('<vg>', 'volume group name')
      .option('--devices <list>', DEVICES_HELP)
      .option('--cluster <img>', "the cluster image: deporting a private container reads there whether its owner is alive or fenced; with --node, the command runs as that node"), false)
      .action(lazyAction(actions, (m) => m.deport(cmd, kind, from)));
  }

  nodeOptions(program
    .command('vgextend')
    .description('add orphan PVs to a volume group')
    .argument('<vg>', 'volume group name')
    .argument('<images...>', 'PV image files to add')
    .option('--devices <list>', DEVICES_HELP))
    .action(lazyAction(actions, (m) => m.vgextend));

  nodeOptions(program
    .command('vgreduce')
    .description('remove unused PVs from a volume group (they become orphans)')
    .argument('<vg>', 'volume group name')
    .argument('<images...>', 'PV image files to remove')
    .option('--devices <list>', DEVICES_HELP))
    .action(lazyAction(actions, (m) => m.vgreduce));

  nodeOptions(program
    .command('vgremove')
    .description('remove a volume group; its PVs become orphans. With LVs: asks on a terminal, else needs -y or -f; refused while one of its LVs is open')
    .argument('<vg>', 'volume group name')
    .option('-f, --force', 'also remove its logical volumes, without asking', false)
    .option('-y, --yes', 'answer yes: remove the VG with its logical volumes', false)
    .option('--devices <list>', DEVICES_HELP))
    .action(lazyAction(actions, (m) => m.vgremove));

  const vgchange = program
    .command('vgchange')
    .description('change what sanbox can change in a volume group: tags, the maximum numbers of LVs and PVs')
    .argument('<vg>', 'volume group name')
    .option('-l, --logicalvolume <n>', 'maximum number of logical volumes (0: unlimited)')
    .option('-p, --maxphysicalvolumes <n>', 'maximum number of physical volumes (0: unlimited)')
    .option('--container <kind>', `change the container kind: ${CONTAINER_KINDS.join(', ')}`)
    .option('--owner <node>', "change a private container's owner node (self: the --node making the change); taking it from its owner needs the owner fenced, or its consent: docs/containers.md")
    .option('--cluster <img>', 'the cluster image the container belongs to');
  nodeOptions(changeOptions(vgchange), false).action(lazyAction(actions, (m) => m.vgchange));

  const lvchange = program
    .command('lvchange')
    .description('change what sanbox can change in a logical volume: tags and read-ahead')
    .argument('<vg/lv>', 'logical volume')
    .option('-r, --readahead <sectors>', 'read-ahead: auto, none or a number of 512-byte sectors (rounded down to a multiple of 8)');
  nodeOptions(changeOptions(lvchange)).action(lazyAction(actions, (m) => m.lvchange));

  reportOptions(
    program
      .command('vgs')
      .description('list volume groups (lvm2\'s report: default columns VG, #PV, #LV, #SN, Attr, VSize, VFree)')
      .argument('[vgs...]', 'volume group names (default: all found)')
  ).action(lazyAction(actions, (m) => m.vgs));

  program
    .command('vgdisplay')
    .description('show volume group attributes, one block per VG, as lvm2 prints them')
    .argument('[vgs...]', 'volume group names (default: all found)')
    .option('--devices <list>', DEVICES_HELP)
    .option('--json', 'print as JSON', false)
    .action(lazyAction(actions, (m) => m.vgdisplay));

  program
    .command('pvdisplay')
    .description('show physical volume attributes, one block per PV, as lvm2 prints them (--maps: which LV uses which extents)')
    .argument('[images...]', `image files (default: --devices / ${DEVICES_ENV})`)
    .option('-m, --maps', 'list the physical segments: the LV and logical extents on each range, and the free ranges', false)
    .option('--devices <list>', DEVICES_HELP)
    .option('--json', 'print rows as JSON (lvm2 field names, sizes in bytes)', false)
    .action(lazyAction(actions, (m) => m.pvdisplay));

  program
    .command('lvdisplay')
    .description('show logical volume attributes as lvm2 prints them; --maps adds the segments and, for each linear one, the losetup command that maps it from its image file')
    .argument('[targets...]', 'VG or VG/LV names (default: every LV found)')
    .option('-m, --maps', 'list the segments: extents, PVs and the losetup line of each linear one', false)
    .option('-a, --all', 'include hidden LVs', false)
    .option('--devices <list>', DEVICES_HELP)
    .option('--json', 'print rows as JSON (lvm2 field names, sizes and offsets in bytes)', false)
    .action(lazyAction(actions, (m) => m.lvdisplay));

  const lvcreate = program
    .command('lvcreate')
    .description('create a linear or striped logical volume (allocation never overlaps, spans PVs when needed)')
    .argument('<vg>', 'volume group')
    .requiredOption('-n, --name <lv>', 'logical volume name')
    .option('-L, --size <size>', 'size (default unit MiB), rounded up to whole extents')
    .option('-l, --extents <n>', 'size in extents: N, N%VG or N%FREE')
    .option('-i, --stripes <n>', 'number of stripes (one PV each)')
    .option('-I, --stripesize <size>', 'stripe size (default unit KiB; default 64k)')
    .option('--devices <list>', DEVICES_HELP);
  nodeOptions(lvcreate).action(lazyAction(actions, (m) => m.lvcreate));

  for (const mode of ['extend', 'reduce'] as const) {
    const c = program
      .command(`lv${mode}`)
      .description(mode === 'extend' ? 'grow a logical volume (continues on the same PV when it can)' : 'shrink a logical volume from its end, freeing the extents')
      .argument('<vg/lv>', 'logical volume')
      .option('-L, --size <[+|-]size>', 'new size, or +/- a size (default unit MiB)')
      .option('-l, --extents <[+|-]n>', 'new size in extents, or +/- N; N%VG, N%FREE')
      .option('--devices <list>', DEVICES_HELP);
    if (mode === 'extend') c.option('-i, --stripes <n>', 'stripes for the new segment').option('-I, --stripesize <size>', 'stripe size (KiB)');
    if (mode === 'reduce') c.option('-y, --yes', 'answer yes: reduce it even if it holds a filesystem', false);
    lockoutFlags(c);
    c.action(lazyAction(actions, (m) => m.resize(mode)));
  }

  nodeOptions(program
    .command('lvrename')
    .description('rename a logical volume: lvrename VG/OLD NEW, or lvrename VG OLD NEW')
    .argument('<a>', 'VG/OLD or VG')
    .argument('<b>', 'NEW or OLD')
    .argument('[c]', 'NEW')
    .option('--devices <list>', DEVICES_HELP))
    .action(lazyAction(actions, (m) => m.lvrename));

  const pvmove = program
    .command('pvmove')
    .description('move LVs\' extents off a PV in chunks, while nodes write to them (with --cluster: each chunk under the lock-out); with no PV: resume the moves in progress; --abort: stop them (moved extents stay at the destination)')
    .argument('[src]', 'the PV to move extents off')
    .argument('[dst]', 'the PV to move them to (default: any other PV of the VG with free extents)')
    .option('-n, --name <lv>', 'move only this LV\'s extents')
    .option('--abort', 'stop the moves in progress (of SRC, or all); moved extents stay where they went, as lvm2\'s abort of a non-atomic move', false)
    .option('--devices <list>', DEVICES_HELP);
  lockoutFlags(pvmove).action(lazyAction(actions, (m) => m.pvmove));

  const lvremove = program
    .command('lvremove')
    .description('remove a logical volume, freeing its extents. One that holds a filesystem: asks on a terminal, else needs -y; refused while open')
    .argument('<vg/lv>', 'logical volume')
    .option('-y, --yes', 'answer yes: remove it even if it holds a filesystem', false)
    .option('--devices <list>', DEVICES_HELP);
  lockoutFlags(lvremove).action(lazyAction(actions, (m) => m.lvremove));

  reportOptions(
    program
      .command('lvs')
      .description('list logical volumes (lvm2\'s report: default columns LV, VG, Attr, LSize, Pool, Origin, Data%, Meta%, Move, Log, Cpy%Sync, Convert; with --segments LV, VG, Attr, #Str, Type, SSize)')
      .argument('[targets...]', 'VG or VG/LV names (default: every LV found)')
      .option('--segments', 'one row per segment', false)
      .option('-a, --all', 'include hidden LVs (raid images, lock LVs, …)', false)
  ).action(lazyAction(actions, (m) => m.lvs));
}

const collect = (v: string, prev: string[]): string[] => [...prev, v];

/** lvm2's reporting options, shared by pvs, vgs and lvs (with sanbox's --devices and --json). */
function reportOptions(c: Command): Command {
  return nodeOptions(c)
    .option('--devices <list>', DEVICES_HELP)
    .option('--json', 'print rows as JSON (lvm2 field names, sizes in bytes)', false)
    .option('-o, --options <fields>', "lvm2 field names, comma-separated; '+f' adds to the defaults, '-f' drops one; 'help' lists them", collect, [])
    .option('-O, --sort <fields>', "sort by these fields; '-f' sorts descending", collect, [])
    .option('--noheadings', 'no heading line', false)
    .option('--nosuffix', 'no unit suffix on sizes (with --units other than h/r)', false)
    .option('--units <unit>', 'r h b s k m g t p e (binary), R H K M G T P E (SI); default r: human-readable, < when rounded')
    .option('--separator <text>', 'put TEXT between columns and do not align them')
    .option('--aligned', 'align the columns even with --separator', false)
    .option('--binary', 'print binary fields (allocatable, exported, …) as 1 or 0', false)
    .option('--reportformat <format>', 'basic (columns) or json (lvm2\'s JSON layout, all values strings)', 'basic');
}

/** --cluster C --node N [--nowait]: run the change as node N, locking out the nodes doing I/O through the LV. */
function lockoutFlags(c: Command): Command {
  return c
    .option('--cluster <img>', 'run the change as a node of this cluster: nodes doing I/O through the LV let go first (docs/containers.md)')
    .option('--node <n>', 'the node number to run the change as (with --cluster)')
    .option('--nowait', 'with --cluster: fail at once, naming the nodes, if any node uses the LV (lvmlockd behaviour)', false)
    .addOption(new Option('--ctl', 'node N must be running (sanbox ctl IMG N lvm …)').hideHelp());
}

const NODE_HELP = "the node making the change: a private container's owner consents to losing it by making the change as itself";

/** The options vgchange and lvchange share: tags, the refused -a, the device list. */
function changeOptions(c: Command): Command {
  return c
    .option('--addtag <tag>', 'add a tag (repeatable)', collect, [])
    .option('--deltag <tag>', 'remove a tag (repeatable)', collect, [])
    .option('-a, --activate <y|n>', 'refused: sanbox activates nothing in the kernel')
    .option('--devices <list>', DEVICES_HELP);
}
