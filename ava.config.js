// ava's configuration (a file, not package.json, because sortTestFiles is a function).
//
// The suite's wall time on a 2-core machine is set by two things: the CPU the tests need, and
// the long files (crash enumerations, kernel boots under QEMU, the 60 s load test) that mostly
// wait — on heartbeat rounds, on a guest's o2hb timers, on killed processes. ava starts files in
// order, `concurrency` at a time: started last, a 2-minute file alone makes the run's tail.
// So the long files start first (longest first), and the short ones fill the gaps around them.

/**
 * Files whose wall time in a whole-suite run is 25 s or more, longest first (measured in the
 * fresh-clone CI log of 2026-12-06 and per-file runs, docs/test-time.md). A file not listed
 * starts after these, in name order; a renamed file only loses its place.
 */
const LONG_FIRST = [
  'lvm-pvmove-crash',
  'journal-crash',
  'kernel-judge',
  'heartbeat-load',
  'kernel-orphans',
  'cli-adversarial',
  'lvm-manners',
  'fs-file-ops',
  'container-failover',
  'kernel-fs-extents',
  'lvm-cluster',
  'lvm-lockout',
  'kernel-crash',
  'lvm-pvmove',
  'kernel-fs-dirs',
  'lvm-pvmove-striped',
  'node-remote-device',
  'node-recovery',
  'kernel-fs-ops',
  'lvm-report',
  'quorum-io',
  'kernel-mount',
  'lvm-volume',
];

const rank = (file) => {
  const name = file.replace(/^.*\//, '').replace(/\.test\.js$/, '');
  const i = LONG_FIRST.indexOf(name);
  return i < 0 ? LONG_FIRST.length : i;
};

export default {
  files: ['dist/test/**/*.test.js'],
  timeout: '120s',
  // Most of the long files wait rather than compute (guests' o2hb timers, heartbeat rounds,
  // killed processes): a third file at once fills the idle core time.
  concurrency: 3,
  workerThreads: false,
  sortTestFiles: (a, b) => rank(a) - rank(b) || a.localeCompare(b),
};
