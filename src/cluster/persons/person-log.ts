// Cluster mode: link and unlink decisions form one ordered log shared by every node (a Redis list,
// `<prefix>persons:log`). The node that takes a link or unlink appends it; every node applies the
// entries it has not applied yet, in order, before it answers a persons read (one LLEN when there
// is nothing new) and every `pollMs`. All nodes thus move the same rows to the same persons, and a
// node that first sees a linked identity later (after a failover) puts it in the linked person.
// Generations: `<prefix>persons:log:gen` holds a random id, set by the first node that looks (SET
// NX). A Redis that loses its data loses it with the log, so the next look makes a new one, and a
// node counts what it applied per generation (person_log row `<log key>#<generation>`): a new log
// is read from its start, also when it has grown past the old count before this node looks.
// An entry that is not a well-formed link or unlink is skipped, counted and logged, never applied.
// Owned by the Cluster (its command connection).
import { randomUUID } from 'node:crypto';
import type Redis from 'ioredis';
import type { Logger } from 'pino';
import type { PersonOp, PersonService } from '../../services/persons.ts';

const PULL_BATCH = 1000;

export interface PersonLogOptions {
  /** A command connection (the Cluster's). */
  redis: Redis;
  prefix: string;
  persons: PersonService;
  log: Logger;
  pollMs?: number;
}

export class PersonLog {
  readonly key: string;
  private readonly generationKey: string;
  /** Entries skipped because they are no link or unlink. */
  readonly counters = { skipped: 0 };
  private current: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private lastWarn = 0;

  constructor(private o: PersonLogOptions) {
    this.key = `${o.prefix}persons:log`;
    this.generationKey = `${this.key}:gen`;
  }

  start(): void {
    this.timer ??= setInterval(() => void this.catchUp(), this.o.pollMs ?? 1000);
    this.timer.unref?.();
  }

  /** sync() for reads: when Redis does not answer, the read goes on with what this node has applied (one warning per 10 s). */
  async catchUp(): Promise<void> {
    try {
      await this.sync();
    } catch (err) {
      if (Date.now() - this.lastWarn < 10_000) return;
      this.lastWarn = Date.now();
      this.o.log.warn(
        { err: String(err) },
        "persons: reading the cluster person log failed; answering from this node's decisions",
      );
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Applies the entries appended since the last pull. Callers share a pull that starts after their call. */
  sync(): Promise<void> {
    if (this.next) return this.next;
    if (!this.current) {
      this.current = this.pull().finally(() => {
        this.current = null;
      });
      return this.current;
    }
    this.next = this.current
      .catch(() => undefined)
      .then(() => {
        this.next = null;
        return this.sync();
      });
    return this.next;
  }

  /** Appends a decision; every node (this one included) applies it at its next sync. */
  async append(op: PersonOp): Promise<void> {
    await this.o.redis.rpush(this.key, JSON.stringify(op));
  }

  private async pull(): Promise<void> {
    const r = this.o.redis;
    const { persons } = this.o;
    const [, [genErr, generation], [lenErr, len]] = (await r
      .multi()
      .set(this.generationKey, randomUUID(), 'NX')
      .get(this.generationKey)
      .llen(this.key)
      .exec())!;
    if (genErr || lenErr || typeof generation !== 'string' || typeof len !== 'number')
      throw genErr ?? lenErr ?? new Error('person log: no generation');
    const name = `${this.key}#${generation}`;
    let applied = persons.logApplied(name);
    if (len < applied) {
      // Shorter than what was applied under the same generation: the list itself was cut. What was applied stays.
      this.o.log.warn(
        { len, applied },
        'persons: the cluster person log is shorter than what was applied; reading it again from the start',
      );
      persons.resetLog(name, 0);
      applied = 0;
    }
    while (applied < len) {
      const batch = await r.lrange(this.key, applied, Math.min(len, applied + PULL_BATCH) - 1);
      if (batch.length === 0) return;
      const next = this.applyBatch(name, applied, batch);
      if (next <= applied) return;
      applied = next;
    }
  }

  /**
   * Applies the entries of `raw` (log index `from` on) in runs of well-formed ones; a bad entry is
   * stepped over. Returns the count applied after it (less than asked when another pull got there first).
   */
  private applyBatch(name: string, from: number, raw: string[]): number {
    const { persons } = this.o;
    let run: PersonOp[] = [];
    let runFrom = from;
    const flush = () => {
      if (run.length) persons.applyLog(name, runFrom, run);
      run = [];
    };
    for (let i = 0; i < raw.length; i++) {
      const parsed = parseOp(raw[i]);
      if (typeof parsed !== 'string') {
        if (!run.length) runFrom = from + i;
        run.push(parsed);
        continue;
      }
      flush();
      if (persons.logApplied(name) !== from + i) break;
      persons.resetLog(name, from + i + 1);
      this.counters.skipped++;
      this.o.log.warn(
        { index: from + i, problem: parsed },
        'persons: an entry of the cluster person log is not a link or unlink; skipped',
      );
    }
    flush();
    return persons.logApplied(name);
  }
}

/** A log entry as a link or unlink, or what is wrong with it (no content: it may name persons). */
export function parseOp(raw: string): PersonOp | string {
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    return 'not JSON';
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return 'not an object';
  const str = (...keys: string[]) => keys.every((k) => typeof v[k] === 'string' && v[k] !== '');
  if (v.op === 'link') {
    const ids = v.identities;
    return str('keeper', 'loser') && Array.isArray(ids) && ids.every((x) => typeof x === 'string')
      ? (v as unknown as PersonOp)
      : 'link without keeper, loser or identities';
  }
  if (v.op === 'unlink')
    return str('identity', 'person', 'at') && typeof v.reason === 'string'
      ? (v as unknown as PersonOp)
      : 'unlink without identity, person, reason or at';
  return `unknown op ${JSON.stringify(String(v.op)).slice(0, 40)}`;
}
