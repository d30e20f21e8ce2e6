// The demo's node counts, apart from the demo (src/node/demo.ts): `sanbox demo --help` names them
// without loading the node code.

/** Node counts the demo runs with: two make a cluster, 16 keep one machine responsive. */
export const DEMO_NODES_MIN = 2;
export const DEMO_NODES_MAX = 16;
