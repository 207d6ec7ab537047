// Cluster mode: link and unlink decisions form one ordered log shared by every node (a Redis list,
// `<prefix>persons:log`). The node that takes a link or unlink appends it; every node applies the
// entries it has not applied yet, in order, before it answers a persons read (one LLEN when there
// is nothing new) and every `pollMs`. All nodes thus move the same rows to the same persons, and a
// node that first sees a linked identity later (after a failover) puts it in the linked person.
// Loaded only in cluster mode (ioredis is imported on first use).
import type Redis from 'ioredis';
import type { Logger } from 'pino';
import type { PersonOp, PersonService } from '../services/persons.ts';

const PULL_BATCH = 1000;

export interface PersonLogOptions {
  redisUrl: string;
  prefix: string;
  persons: PersonService;
  log: Logger;
  pollMs?: number;
}

export class PersonLog {
  readonly key: string;
  private redis: Promise<Redis> | null = null;
  private current: Promise<void> | null = null;
  private next: Promise<void> | null = null;
  private timer: ReturnType<typeof setInterval> | null = null;
  private lastWarn = 0;

  constructor(private o: PersonLogOptions) {
    this.key = `${o.prefix}persons:log`;
  }

  private conn(): Promise<Redis> {
    this.redis ??= import('ioredis').then(({ default: Redis }) => {
      const r = new Redis(this.o.redisUrl, { connectTimeout: 2000, maxRetriesPerRequest: 1, commandTimeout: 2000, connectionName: 'sb-persons' });
      r.on('error', () => {});
      return r;
    });
    return this.redis;
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
      this.o.log.warn({ err: String(err) }, 'persons: reading the cluster person log failed; answering from this node\'s decisions');
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    if (this.redis) (await this.redis).disconnect();
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
    await (await this.conn()).rpush(this.key, JSON.stringify(op));
  }

  private async pull(): Promise<void> {
    const r = await this.conn();
    const { persons } = this.o;
    const len = await r.llen(this.key);
    let applied = persons.logApplied(this.key);
    if (len < applied) {
      // Redis lost the log (restarted without persistence): what was applied stays, the new log is read from its start.
      this.o.log.warn({ len, applied }, 'persons: the cluster person log is shorter than what was applied; reading it again from the start');
      persons.resetLog(this.key, 0);
      applied = 0;
    }
    while (applied < len) {
      const batch = (await r.lrange(this.key, applied, Math.min(len, applied + PULL_BATCH) - 1)).map((s) => JSON.parse(s) as PersonOp);
      if (batch.length === 0) return;
      persons.applyLog(this.key, applied, batch);
      applied = persons.logApplied(this.key);
    }
  }
}
