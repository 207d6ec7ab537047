// Dead letters: a stream entry that can never be ingested (malformed, not sealed by a node of this
// cluster, or for an instance still unknown after the grace for configuration lag) is logged, kept
// in the bounded list `<prefix>deadletter` and XDEL'd under the epoch check, in one call. A record
// keeps the entry sealed with the cluster secret (it may carry message text and tokens); admins
// list (masked), replay or delete records through /api/v2/cluster/dead-letters. A replay takes the
// record out of the list and appends the entry again to the stream of its instance's shard in one
// call; the owner then reads it like any new entry (and commits it under its epoch). A list value
// that is no sealed record (written into Redis by anyone else) is never shown or replayed.
import { Conflict, NotFound } from '../../core/errors.ts';
import { isoNow, newId } from '../../services/ids.ts';
import { type ClusterContext, viaStore } from '../context.ts';
import { parseEntry } from '../handoff/entry.ts';
import { DEAD_LETTER, DEAD_LETTER_REPLAY } from '../lua.ts';
import { masked } from './mask.ts';

/** Records kept in `<prefix>deadletter`. */
const DEAD_LETTER_KEEP = 1000;

/** A stream entry that could not be handled, as kept in `<prefix>deadletter`: the entry itself only sealed. */
interface DeadLetterRecord {
  /** Unique (entry ids repeat across shards). */
  id: string;
  shard: number;
  entryId: string;
  reason: string;
  node: string;
  at: string;
  /** The entry's fields (JSON), sealed with the cluster secret. */
  sealed: string;
}

export interface DeadLetterView extends Omit<DeadLetterRecord, 'sealed'> {
  kind: 'inbound' | 'send' | null;
  /** The message with tokens, keys and inline media masked; null when it is not one. */
  message: Record<string, unknown> | null;
  replayable: boolean;
  /** Why it cannot be replayed. */
  problem: string | null;
}

/** What a record's entry is sealed for: bound to the record, so it opens in no other place. */
export function deadLetterContext(id: string): string {
  return `deadletter\n${id}`;
}

/** A list value as a sealed record, or null when it is none. */
function parseRecord(raw: string): DeadLetterRecord | null {
  try {
    const v = JSON.parse(raw) as Partial<DeadLetterRecord> | null;
    return typeof v?.sealed === 'string' && typeof v.id === 'string' ? (v as DeadLetterRecord) : null;
  } catch {
    return null;
  }
}

export class DeadLetters {
  constructor(
    private ctx: ClusterContext,
    /** The epoch of the shard's current ownership period; undefined when this node does not hold it. */
    private epochOf: (shard: number) => number | undefined,
  ) {}

  /** Logs, keeps a record (bounded; the entry sealed) and deletes the entry, epoch-checked. False when fenced. */
  async record(shard: number, entryId: string, fields: string[], reason: string): Promise<boolean> {
    const { ctx } = this;
    const epoch = this.epochOf(shard);
    if (epoch === undefined) return false;
    const id = newId();
    const record: DeadLetterRecord = {
      id,
      shard,
      entryId,
      reason,
      node: ctx.node,
      at: isoNow(),
      sealed: ctx.keys.seal(JSON.stringify(fields), deadLetterContext(id)),
    };
    const ok = (await ctx.cmd.eval(
      DEAD_LETTER,
      0,
      ctx.o.prefix,
      ctx.node,
      shard,
      epoch,
      entryId,
      JSON.stringify(record),
      DEAD_LETTER_KEEP,
    )) as number;
    if (ok !== 1) {
      ctx.counters.fencedWrites++;
      return false;
    }
    ctx.counters.deadLettered++;
    ctx.host.log.error(
      { node: ctx.node, shard, entry: entryId, reason },
      'cluster: stream entry dead-lettered (kept in the deadletter list)',
    );
    return true;
  }

  /** Every record, newest first (the list is bounded, so it is read whole). Messages are shown with their secrets masked. */
  async list(): Promise<DeadLetterView[]> {
    const raw = await viaStore(() => this.ctx.cmd.lrange(this.ctx.k('deadletter'), 0, -1));
    const views: DeadLetterView[] = [];
    for (const r of raw) {
      const rec = parseRecord(r);
      if (rec) views.push(this.view(rec));
    }
    return views.sort((a, b) => (a.at === b.at ? (a.id < b.id ? 1 : -1) : a.at < b.at ? 1 : -1));
  }

  /** Takes the record out of the list and appends its entry to the stream of its instance's shard again (one call). */
  async replay(id: string): Promise<{ id: string; shard: number; entryId: string }> {
    const { ctx } = this;
    const { raw, record } = await this.find(id);
    const view = this.view(record);
    if (!view.replayable) throw new Conflict(`This dead letter cannot be replayed: ${view.problem}`, { id });
    const fields = this.open(record)!;
    const instanceId = String(view.message!.instanceId);
    const shard = ctx.shardOfInstance(instanceId);
    const entryId = (await viaStore(() => ctx.cmd.eval(DEAD_LETTER_REPLAY, 0, ctx.o.prefix, raw, shard, ...fields))) as
      | string
      | number;
    if (entryId === 0) throw new NotFound('Dead letter not found (already replayed or deleted)', { id });
    ctx.host.log.info({ node: ctx.node, deadLetter: id, shard, entry: entryId }, 'cluster: dead letter replayed');
    return { id, shard, entryId: String(entryId) };
  }

  async delete(id: string): Promise<void> {
    const { raw } = await this.find(id);
    if ((await viaStore(() => this.ctx.cmd.lrem(this.ctx.k('deadletter'), 1, raw))) === 0)
      throw new NotFound('Dead letter not found (already replayed or deleted)', { id });
  }

  private async find(id: string): Promise<{ raw: string; record: DeadLetterRecord }> {
    for (const raw of await viaStore(() => this.ctx.cmd.lrange(this.ctx.k('deadletter'), 0, -1))) {
      const rec = parseRecord(raw);
      if (rec && rec.id === id) return { raw, record: rec };
    }
    throw new NotFound('Dead letter not found', { id });
  }

  private open(rec: DeadLetterRecord): string[] | null {
    const text = this.ctx.keys.open(rec.sealed, deadLetterContext(rec.id));
    const fields = text === null ? null : (JSON.parse(text) as unknown);
    return Array.isArray(fields) ? fields.map(String) : null;
  }

  private view(rec: DeadLetterRecord): DeadLetterView {
    const base = { id: rec.id, shard: rec.shard, entryId: rec.entryId, reason: rec.reason, node: rec.node, at: rec.at };
    const fields = this.open(rec);
    if (!fields)
      return {
        ...base,
        kind: null,
        message: null,
        replayable: false,
        problem: "the record does not open with this node's CLUSTER_SECRET",
      };
    const parsed = parseEntry(rec.entryId, fields, this.ctx.keys);
    if (typeof parsed === 'string') return { ...base, kind: null, message: null, replayable: false, problem: parsed };
    const message = masked(parsed.msg) as Record<string, unknown>;
    // Replayed for an instance still unknown, it would only wait out the grace and come back here.
    if (!this.ctx.host.instances.get(parsed.msg.instanceId))
      return {
        ...base,
        kind: parsed.kind,
        message,
        replayable: false,
        problem: `instance ${parsed.msg.instanceId} is unknown; create it first`,
      };
    return { ...base, kind: parsed.kind, message, replayable: true, problem: null };
  }
}
