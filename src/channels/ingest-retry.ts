// Socket-fed adapters (Discord gateway, Baileys, Slack Socket Mode) cannot answer "503, retry" to
// the platform the way a webhook can: the platform considers the message delivered once it reached
// the socket. So when the inbox is momentarily full (Overloaded, 503) they retry the write with a
// short bounded backoff instead of dropping the message.
import type { Logger } from 'pino';
import type { Clock } from '../../actors/runtime/clock.ts';
import type { InboundMessage, IngestResult } from '../core/message.ts';
import type { AdapterContext } from './types.ts';

/** Waits between attempts: ~31 s in total, then the error is raised (and logged by the caller). */
export const INGEST_RETRY_DELAYS_MS = [250, 500, 1000, 2000, 4000, 8000, 15_000];

/** The inbox's Overloaded error has code UNAVAILABLE (checked by shape: no import of services here). */
export function isOverloaded(err: unknown): boolean {
  return (err as { code?: string } | null)?.code === 'UNAVAILABLE';
}

export async function ingestWithRetry(
  ctx: Pick<AdapterContext, 'ingest'>,
  msg: InboundMessage,
  opts: { clock: Clock; log?: Logger | null; delaysMs?: readonly number[]; signal?: AbortSignal },
): Promise<IngestResult> {
  const delays = opts.delaysMs ?? INGEST_RETRY_DELAYS_MS;
  for (let attempt = 0; ; attempt++) {
    try {
      return await ctx.ingest(msg);
    } catch (err) {
      if (!isOverloaded(err) || attempt >= delays.length || opts.signal?.aborted) throw err;
      opts.log?.warn(
        { id: msg.providerMessageId, attempt: attempt + 1, delayMs: delays[attempt] },
        'inbox full; retrying the write',
      );
      await opts.clock.sleep(delays[attempt], opts.signal);
    }
  }
}

/**
 * Serialises ingests so that a message waiting out an overload is not overtaken by the next one
 * (conversation order is the order of inbox writes).
 */
export class OrderedIngest {
  private chain: Promise<unknown> = Promise.resolve();
  constructor(private opts: { clock: Clock; log?: () => Logger | null | undefined; delaysMs?: readonly number[] }) {}

  push(ctx: Pick<AdapterContext, 'ingest'>, msg: InboundMessage): Promise<IngestResult> {
    const run = this.chain.then(() =>
      ingestWithRetry(ctx, msg, { clock: this.opts.clock, log: this.opts.log?.(), delaysMs: this.opts.delaysMs }),
    );
    this.chain = run.catch(() => undefined);
    return run;
  }
}
