// The fence policies a node can run with (`sanbox node --fence`), apart from the fencer that runs
// them (src/heartbeat/fencer.ts): `sanbox`'s help names them without loading the fencing code.

export type FencePolicy = 'disk' | 'power' | 'both';
export const FENCE_POLICIES: readonly FencePolicy[] = ['disk', 'power', 'both'];
