// Quorum, o2quo-style (reference/ocfs2.md §4.7), adapted to a cluster whose only channel is the
// disk. The rule (docs/heartbeat.md):
//
//   base  = the nodes of the last settled membership, including us: every node we saw come up,
//           minus the nodes whose death has been fenced;
//   alive = the members of base that we currently see heartbeating (we count ourselves);
//   N = |base|, C = |alive|.
//   N odd:  quorum iff C >= (N + 1) / 2.
//   N even: quorum iff C > N / 2, or C == N / 2 and the lowest-numbered node of base is alive
//           (the two-node tie-break: of two nodes, only the lower-numbered one may act on the
//           other's death; an exact half keeps the half that holds the lowest node).
//
// A node acts on another's death (fences it, recovers its journal, takes its locks) only with
// quorum. Pure function.

export function hasQuorum(base: ReadonlySet<number>, alive: ReadonlySet<number>): boolean {
  const n = base.size;
  if (n <= 1) return true;
  let c = 0;
  for (const id of base) if (alive.has(id)) c++;
  if (n % 2 === 1) return c >= (n + 1) / 2;
  if (c > n / 2) return true;
  if (c < n / 2) return false;
  const lowest = Math.min(...base);
  return alive.has(lowest);
}
