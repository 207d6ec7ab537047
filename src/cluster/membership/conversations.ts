// Which instance (and so which shard) a conversation belongs to: a bounded cache (LRU) in front
// of this node's conversations table, consulted on every ownership check of a conversation.
import type { ClusterContext } from '../context.ts';

/** conversation → instance entries kept in memory (the conversations table answers the rest). */
const CONV_CACHE_MAX = 50_000;

export class ConversationShards {
  /** conversation id → instance id, most recently used last. */
  private convInstance = new Map<string, string>();

  constructor(private ctx: ClusterContext) {}

  instanceOf(conversationId: string): string | null {
    const inst = this.convInstance.get(conversationId);
    if (inst) {
      // Most recently used last, so eviction takes the longest unused.
      this.convInstance.delete(conversationId);
      this.convInstance.set(conversationId, inst);
      return inst;
    }
    const r = this.ctx.host.db
      .query<{ instance_id: string }, [string]>('SELECT instance_id FROM conversations WHERE id = ?')
      .get(conversationId);
    if (!r) return null;
    this.remember(conversationId, r.instance_id);
    return r.instance_id;
  }

  remember(conversationId: string, instanceId: string): void {
    this.convInstance.delete(conversationId);
    this.convInstance.set(conversationId, instanceId);
    if (this.convInstance.size > CONV_CACHE_MAX) this.convInstance.delete(this.convInstance.keys().next().value!);
  }

  /** Conversations with a live actor whose instance is on this shard. */
  activeOf(shard: number): string[] {
    return this.ctx.host.pipeline.conversations.activeKeys().filter((k) => {
      const inst = this.instanceOf(k);
      return !!inst && this.ctx.shardOfInstance(inst) === shard;
    });
  }
}
