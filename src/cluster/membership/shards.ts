// Shard arithmetic: which shard a key belongs to, and which live node should own a shard
// (rendezvous hashing: every node computes the same answer from the same member list, and a
// membership change moves only the shards of the node that came or went).
import { createHash } from 'node:crypto';

function h32(s: string): number {
  return createHash('sha1').update(s).digest().readUInt32BE(0);
}

export function shardOf(key: string, shards: number): number {
  return h32(key) % shards;
}

export function ownerOf(shard: number, nodes: readonly string[]): string | null {
  let best: string | null = null;
  let bestScore = -1;
  for (const n of nodes) {
    const score = h32(`${n}\u0000${shard}`);
    if (score > bestScore || (score === bestScore && best !== null && n < best)) {
      best = n;
      bestScore = score;
    }
  }
  return best;
}

/** Shards a node should own given the live member list. */
export function desiredShards(node: string, nodes: readonly string[], shards: number): Set<number> {
  const out = new Set<number>();
  for (let s = 0; s < shards; s++) if (ownerOf(s, nodes) === node) out.add(s);
  return out;
}
