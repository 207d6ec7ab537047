// Server-Sent Events from bytes: a streaming UTF-8 decoder (a character split across network
// chunks is held until complete) feeding eventsource-parser (handles \r\n, \r, comments,
// multi-line data and `event:` names). Incomplete events at the end of the stream are dropped,
// as the SSE spec says: a cut stream must not produce half an event.
import { createParser, type EventSourceParser } from 'eventsource-parser';

export type SseItem =
  | { kind: 'event'; event?: string; data: string; id?: string }
  /** Comments (`: keepalive`) carry no data but prove the server is alive. */
  | { kind: 'comment'; text: string };

/** Synchronous byte → SSE item decoder; reusable by tests and benchmarks without I/O. */
export class SseDecoder {
  private readonly text = new TextDecoder('utf-8');
  private readonly parser: EventSourceParser;
  private pending: SseItem[] = [];

  constructor(maxBufferSize = 8 * 1024 * 1024) {
    this.parser = createParser({
      maxBufferSize,
      onEvent: (m) => this.pending.push({ kind: 'event', event: m.event, data: m.data, id: m.id }),
      onComment: (c) => this.pending.push({ kind: 'comment', text: c }),
    });
  }

  /** Feed bytes; returns the items completed by them. */
  push(bytes: Uint8Array): SseItem[] {
    const s = this.text.decode(bytes, { stream: true });
    if (s) this.parser.feed(s);
    return this.take();
  }

  /** Feed already-decoded text (for callers holding strings). */
  pushText(s: string): SseItem[] {
    this.parser.feed(s);
    return this.take();
  }

  /** End of stream: flush the decoder; an unterminated event is discarded. */
  end(): SseItem[] {
    const rest = this.text.decode();
    if (rest) this.parser.feed(rest);
    return this.take();
  }

  private take(): SseItem[] {
    if (this.pending.length === 0) return EMPTY;
    const out = this.pending;
    this.pending = [];
    return out;
  }
}

const EMPTY: SseItem[] = [];

/**
 * Reads an HTTP body as SSE items. Aborting `signal` cancels the body (which closes the HTTP
 * connection) and makes the iteration throw `signal.reason`.
 */
export async function* readSse(body: ReadableStream<Uint8Array>, signal: AbortSignal): AsyncGenerator<SseItem> {
  const reader = body.getReader();
  const decoder = new SseDecoder();
  const onAbort = () => {
    reader.cancel(signal.reason).catch(() => {});
  };
  signal.addEventListener('abort', onAbort, { once: true });
  let drained = false;
  try {
    for (;;) {
      if (signal.aborted) throw signal.reason;
      const { done, value } = await reader.read();
      if (signal.aborted) throw signal.reason;
      if (done) {
        drained = true;
        break;
      }
      for (const item of decoder.push(value)) yield item;
    }
    for (const item of decoder.end()) yield item;
  } finally {
    signal.removeEventListener('abort', onAbort);
    // The consumer stopped early: close the connection instead of leaving it half-read.
    if (!drained) reader.cancel().catch(() => {});
    else reader.releaseLock();
  }
}
