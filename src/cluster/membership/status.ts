// GET /api/v2/cluster: members and shards as Redis holds them (every lease with its holder, epoch
// and age), read in one pipeline, so any node answers the same.
import type { ClusterContext } from '../context.ts';
import { parseInfo } from '../peers/peers.ts';

export interface ClusterStatus {
  node: string;
  shards: number;
  leaseMs: number;
  nodes: Array<{
    id: string;
    self: boolean;
    info: Record<string, unknown> | null;
    shards: Array<{ shard: number; epoch: number; leaseAgeMs: number | null; acquiredAt: string | null }>;
  }>;
  unowned: number[];
  counters: Record<string, number>;
}

export async function readStatus(ctx: ClusterContext, counters: Record<string, number>): Promise<ClusterStatus> {
  const { cmd, o } = ctx;
  const live = (await cmd.smembers(ctx.k('nodes'))).sort();
  const infos = live.length ? await cmd.mget(...live.map((n) => ctx.k(`node:${n}`))) : [];
  const meta = await cmd.hgetall(ctx.k('leasemeta'));
  const pipe = cmd.pipeline();
  for (let s = 0; s < o.shards; s++)
    pipe
      .get(ctx.k(`lease:${s}`))
      .pttl(ctx.k(`lease:${s}`))
      .get(ctx.k(`epoch:${s}`));
  const r = ((await pipe.exec()) ?? []).map(([, v]) => v);
  const byNode = new Map<string, ClusterStatus['nodes'][number]['shards']>();
  const unowned: number[] = [];
  for (let s = 0; s < o.shards; s++) {
    const holder = r[s * 3] as string | null;
    const pttl = r[s * 3 + 1] as number;
    const epoch = Number(r[s * 3 + 2] ?? 0);
    if (!holder) {
      unowned.push(s);
      continue;
    }
    const m = meta[String(s)]?.split('|');
    const list = byNode.get(holder) ?? [];
    list.push({
      shard: s,
      epoch,
      leaseAgeMs: pttl >= 0 ? o.leaseMs - pttl : null,
      acquiredAt: m?.[2] ? new Date(Number(m[2]) * 1000).toISOString() : null,
    });
    byNode.set(holder, list);
  }
  const ids = new Set([...live.filter((_, i) => infos[i] !== null), ...byNode.keys()]);
  return {
    node: ctx.node,
    shards: o.shards,
    leaseMs: o.leaseMs,
    nodes: [...ids].sort().map((id) => {
      const i = live.indexOf(id);
      return {
        id,
        self: id === ctx.node,
        info: i >= 0 && infos[i] ? parseInfo(infos[i]!) : null,
        shards: byNode.get(id) ?? [],
      };
    }),
    unowned,
    counters,
  };
}
