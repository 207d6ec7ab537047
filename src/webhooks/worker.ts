// The delivery worker: sends due outbox rows, at most one at a time per (subscription, order key)
// so each conversation's events arrive in order, with many keys and subscribers in flight at once
// so no conversation waits for another. A slow subscriber can hold at most `perSubscription` of
// the `concurrency` slots, so it never slows the others; the message pipeline never waits for any
// of this (it only inserts outbox rows).
//
// An attempt: POST with the Standard Webhooks headers through the outbound policy (gw.fetch,
// redirects not followed), a 10 s timeout, the answer's body read up to a few KiB and dropped
// (never stored or shown: the URL may be an internal service). 2xx = delivered. 410 = the
// subscription is disabled. Anything else retries with exponential backoff and jitter (or after
// the receiver's Retry-After) until the retry period since the first attempt is over; then the
// row is given up, and a subscription that had no success during that whole period is disabled.
import type { Logger } from 'pino';
import { backoffDelay } from '../../actors/runtime/backoff.ts';
import type { Clock, Timer } from '../../actors/runtime/clock.ts';
import { crashPoint } from '../services/crash.ts';
import type { DeliveryOutbox, DeliveryRow } from './outbox.ts';
import { signedHeaders } from './signing.ts';
import type { SubscriptionStore } from './subscriptions.ts';

/** How often an idle worker looks at the outbox anyway. */
const IDLE_RECHECK_MS = 300_000;

export interface WorkerOptions {
  /** How long a delivery keeps being retried after its first attempt (ms). */
  retryPeriodMs: number;
  /** Finished deliveries are kept this long (ms). */
  retentionMs: number;
  timeoutMs?: number;
  /** First retry delay and the cap of the exponential backoff (ms). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  concurrency?: number;
  perSubscription?: number;
  /** Longest wait between two looks at the outbox (rows written by another path, clock drift). */
  pollMs?: number;
  /** Bytes of a receiver's answer read before the connection is dropped. */
  maxResponseBytes?: number;
  random?: () => number;
}

interface Outcome {
  code: number | null;
  error: string | null;
  retryAfterMs: number | null;
}

/** Retry-After as seconds or an HTTP date → ms from now; null when absent or unreadable. */
export function retryAfterMs(header: string | null, now: number): number | null {
  if (!header) return null;
  const s = header.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  const at = Date.parse(s);
  return Number.isNaN(at) ? null : Math.max(0, at - now);
}

/** Reads at most `limit` bytes of a body and drops the rest (a receiver may answer endlessly). */
async function drain(res: Response, limit: number): Promise<void> {
  const reader = res.body?.getReader();
  if (!reader) return;
  let seen = 0;
  try {
    while (seen < limit) {
      const { done, value } = await reader.read();
      if (done) return;
      seen += value.byteLength;
    }
    await reader.cancel();
  } catch {
    // A body cut short does not change the status the receiver answered.
  }
}

export class DeliveryWorker {
  private timer: Timer | null = null;
  private timerAt = Number.POSITIVE_INFINITY;
  private stopped = true;
  private ticking = false;
  private again = false;
  private lastPrune = 0;
  /** Order keys (subscription + key) with an attempt in flight, and attempts per subscription. */
  private busyKeys = new Set<string>();
  private perSub = new Map<string, number>();
  private inFlight = new Set<Promise<void>>();
  private abort = new AbortController();
  private o: Required<WorkerOptions>;

  constructor(
    private outbox: DeliveryOutbox,
    private subscriptions: SubscriptionStore,
    private fetchFn: typeof fetch,
    private clock: Clock,
    private log: Logger,
    opts: WorkerOptions,
  ) {
    this.o = {
      timeoutMs: 10_000,
      retryBaseMs: 5_000,
      retryMaxMs: 3_600_000,
      concurrency: 64,
      perSubscription: 8,
      pollMs: 5_000,
      maxResponseBytes: 4096,
      random: Math.random,
      ...opts,
    };
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.abort = new AbortController();
    this.kick();
  }

  /** Stops taking rows and cancels attempts in flight (they stay pending: retried after a restart). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
    this.abort.abort(new Error('gateway shutting down'));
    await Promise.allSettled([...this.inFlight]);
  }

  /** Looks at the outbox soon (new rows were committed, an attempt finished). */
  kick(): void {
    this.schedule(0);
  }

  /** Number of attempts in flight (tests, metrics). */
  get busy(): number {
    return this.inFlight.size;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    const at = this.clock.monotonic() + Math.max(0, delayMs);
    if (this.timer && this.timerAt <= at) return;
    this.timer?.cancel();
    this.timerAt = at;
    this.timer = this.clock.setTimeout(() => {
      this.timer = null;
      this.timerAt = Number.POSITIVE_INFINITY;
      this.tick();
    }, delayMs);
  }

  private tick(): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.again = true;
      return;
    }
    this.ticking = true;
    try {
      do {
        this.again = false;
        this.fill();
      } while (this.again && !this.stopped);
      this.maybePrune();
    } catch (err) {
      // The database is closing or broken; the next look tries again.
      this.log.warn({ err: String(err) }, 'webhooks: reading the outbox failed');
    } finally {
      this.ticking = false;
    }
    // Rows due now that were not started wait for a slot or for an earlier row of their key: the
    // attempt that frees it looks again when it ends. Otherwise: when the next retry falls due.
    const now = this.clock.now();
    let next: number | null = null;
    try {
      next = this.outbox.nextDue(now);
    } catch {
      // as above
    }
    // Nothing due: every new row is followed by a kick from the writer (same process), so the
    // idle look is only a backstop and need not run often (an idle gateway does no work for it).
    const wait = next === null ? IDLE_RECHECK_MS : Math.min(this.o.pollMs, next - now);
    this.schedule(wait);
  }

  private fill(): void {
    // A few rounds: a subscription that reaches its share in one round is left out of the next,
    // so its backlog never hides other subscribers' rows.
    for (let round = 0; round < 4; round++) {
      const free = this.o.concurrency - this.inFlight.size;
      if (free <= 0) return;
      const full = [...this.perSub].filter(([, n]) => n >= this.o.perSubscription).map(([id]) => id);
      let started = 0;
      let passedOver = 0;
      for (const row of this.outbox.dueHeads(this.busyKeys.size + free * 2, full)) {
        if (this.inFlight.size >= this.o.concurrency) return;
        const key = `${row.subscription_id}\u0000${row.order_key}`;
        const subBusy = this.perSub.get(row.subscription_id) ?? 0;
        if (this.busyKeys.has(key)) continue;
        if (subBusy >= this.o.perSubscription) {
          passedOver++;
          continue;
        }
        this.launch(row, key, subBusy);
        started++;
      }
      if (started === 0 || passedOver === 0) return;
    }
  }

  private launch(row: DeliveryRow, key: string, subBusy: number): void {
    this.busyKeys.add(key);
    this.perSub.set(row.subscription_id, subBusy + 1);
    const p = this.attempt(row).finally(() => {
      this.busyKeys.delete(key);
      const n = (this.perSub.get(row.subscription_id) ?? 1) - 1;
      if (n <= 0) this.perSub.delete(row.subscription_id);
      else this.perSub.set(row.subscription_id, n);
      this.inFlight.delete(p);
      this.kick();
    });
    this.inFlight.add(p);
  }

  private async attempt(row: DeliveryRow): Promise<void> {
    const sub = this.subscriptions.get(row.subscription_id);
    if (sub?.active !== 1) return;
    const outcome = await this.send(sub.url, row, this.subscriptions.secrets(sub));
    // Shutting down: the attempt did not finish here; the row stays pending for the next start.
    if (this.stopped && outcome.error === 'aborted') return;
    crashPoint('webhook_after_response');
    try {
      this.settle(row, outcome);
    } catch (err) {
      this.log.warn({ err: String(err), delivery: row.id }, 'webhooks: recording an attempt failed');
    }
  }

  private async send(url: string, row: DeliveryRow, secrets: string[]): Promise<Outcome> {
    const ac = new AbortController();
    const onStop = () => ac.abort(new Error('aborted'));
    this.abort.signal.addEventListener('abort', onStop, { once: true });
    const timeout = this.clock.setTimeout(() => ac.abort(new Error('timeout')), this.o.timeoutMs);
    try {
      const res = await this.fetchFn(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Switchboard-Webhooks/1.0',
          ...signedHeaders(row.msg_id, row.payload_json, secrets),
        },
        body: row.payload_json,
        redirect: 'manual',
        signal: ac.signal,
      });
      await drain(res, this.o.maxResponseBytes);
      if (res.status >= 200 && res.status < 300) return { code: res.status, error: null, retryAfterMs: null };
      const redirect = res.status >= 300 && res.status < 400 ? ' (redirects are not followed)' : '';
      return {
        code: res.status,
        error: `HTTP ${res.status}${redirect}`,
        retryAfterMs: retryAfterMs(res.headers.get('retry-after'), Date.now()),
      };
    } catch (err) {
      const reason = ac.signal.aborted ? (ac.signal.reason as Error)?.message : null;
      if (reason === 'aborted') return { code: null, error: 'aborted', retryAfterMs: null };
      if (reason === 'timeout')
        return { code: null, error: `no answer within ${this.o.timeoutMs / 1000} s`, retryAfterMs: null };
      return { code: null, error: err instanceof Error ? err.message : String(err), retryAfterMs: null };
    } finally {
      timeout.cancel();
      this.abort.signal.removeEventListener('abort', onStop);
    }
  }

  private settle(row: DeliveryRow, o: Outcome): void {
    if (o.error === null) {
      this.outbox.attempted(row.seq, { status: 'delivered', code: o.code, error: null });
      return;
    }
    const now = this.clock.now();
    if (o.code === 410) {
      this.outbox.attempted(row.seq, { status: 'failed', code: 410, error: 'HTTP 410: the receiver is gone' });
      this.subscriptions.disable(row.subscription_id, 'the receiver answered 410 Gone');
      this.log.warn({ subscription: row.subscription_id }, 'webhooks: subscription disabled (410 Gone)');
      return;
    }
    // A first attempt starts the retry period (outbox.attempted stores it).
    const windowStart = row.attempts === 0 ? now : row.window_start;
    if (now - windowStart >= this.o.retryPeriodMs) {
      this.outbox.attempted(row.seq, { status: 'failed', code: o.code, error: o.error });
      this.log.warn(
        { subscription: row.subscription_id, delivery: row.id, attempts: row.attempts + 1, error: o.error },
        'webhooks: delivery given up after its retry period',
      );
      const last = this.outbox.lastSuccess(row.subscription_id);
      if (last === null || last < windowStart) {
        const hours = Math.round((this.o.retryPeriodMs / 3_600_000) * 10) / 10;
        this.subscriptions.disable(row.subscription_id, `every delivery failed for the retry period (${hours} h)`);
        this.log.warn(
          { subscription: row.subscription_id },
          'webhooks: subscription disabled: failing for its whole retry period',
        );
      }
      return;
    }
    const backoff = backoffDelay(
      row.attempts,
      { baseMs: this.o.retryBaseMs, maxMs: this.o.retryMaxMs, jitter: 0.5 },
      this.o.random,
    );
    const delay = o.retryAfterMs !== null ? Math.min(o.retryAfterMs, this.o.retryPeriodMs) : backoff;
    this.outbox.attempted(row.seq, { status: 'pending', code: o.code, error: o.error, retryAt: now + delay });
  }

  private maybePrune(): void {
    const now = this.clock.now();
    if (now - this.lastPrune < 3_600_000) return;
    this.lastPrune = now;
    const n = this.outbox.prune(now - this.o.retentionMs);
    if (n) this.log.info({ deliveries: n }, 'webhooks: pruned finished deliveries past retention');
  }
}
