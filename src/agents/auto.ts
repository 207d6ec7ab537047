// `auto`: send the seed JSON body, accept either a stream or JSON, and decide by the answer's
// Content-Type. For text/event-stream the first event tells the protocol: AG-UI (a known `type`
// or event name), OpenAI (`choices`), else plain text where every `data:` is the next delta.

import { AGUI_TEXT_EVENTS, AguiStream, aguiEventOf } from './agui.ts';
import {
  baseHeaders,
  type EndpointOptions,
  guarded,
  post,
  type StreamInterpreter,
  seedBody,
  streamEvents,
} from './http.ts';
import { replyWithMediaFromJson } from './json.ts';
import { OpenAiStream } from './openai.ts';
import type { AgentClient, AgentEvent, AgentRequest } from './types.ts';
import { AgentError } from './types.ts';

/**
 * Plain SSE text: each event's data is appended as is; `[DONE]` ends it. A JSON event carrying a
 * string `delta`/`text`/`content` contributes that field. Without an end marker, the end of the
 * body is the end of the reply (plain streams have no way to tell a cut).
 */
export class PlainStream implements StreamInterpreter {
  private readonly parts: string[] = [];

  get text(): string {
    return this.parts.join('');
  }

  handle(item: { event?: string; data: string }): AgentEvent[] {
    if (item.data === '[DONE]') return [{ type: 'final', text: this.text }];
    let text = item.data;
    if (text.startsWith('{')) {
      try {
        const v = JSON.parse(text);
        const field = [v?.delta, v?.text, v?.content].find((x) => typeof x === 'string');
        if (field !== undefined) text = field;
      } catch {
        // plain text that happens to start with a brace
      }
    }
    if (!text) return NONE;
    this.parts.push(text);
    return [{ type: 'delta', text }];
  }

  finish(): AgentEvent {
    return { type: 'final', text: this.text };
  }
}

const NONE: AgentEvent[] = [];

export type SniffedProtocol = 'agui' | 'openai' | 'plain';

export function sniffProtocol(item: { event?: string; data: string }): SniffedProtocol {
  const ev = aguiEventOf(item);
  if (ev && AGUI_TEXT_EVENTS.has(ev.type)) return 'agui';
  try {
    const v = JSON.parse(item.data);
    if (v && typeof v === 'object' && Array.isArray(v.choices)) return 'openai';
  } catch {
    // not JSON
  }
  return 'plain';
}

/** Decides the protocol on the first event, then delegates. */
export class SniffingStream implements StreamInterpreter {
  private inner: StreamInterpreter | null = null;
  protocol: SniffedProtocol | null = null;

  handle(item: { event?: string; data: string }): AgentEvent[] {
    if (!this.inner) {
      this.protocol = sniffProtocol(item);
      this.inner =
        this.protocol === 'agui'
          ? new AguiStream()
          : this.protocol === 'openai'
            ? new OpenAiStream()
            : new PlainStream();
    }
    return this.inner.handle(item);
  }

  finish(): AgentEvent {
    return this.inner ? this.inner.finish() : { type: 'final', text: '' };
  }
}

export class AutoAgentClient implements AgentClient {
  constructor(private readonly ep: EndpointOptions) {}

  run(req: AgentRequest, signal: AbortSignal): AsyncIterable<AgentEvent> {
    const ep = this.ep;
    return guarded(signal, ep, async function* (guard) {
      const headers = baseHeaders(ep, req.idempotencyKey, 'text/event-stream, application/json');
      const res = await post(ep, guard, ep.url, headers, seedBody(req));
      const type = (res.headers.get('content-type') ?? '').toLowerCase();
      yield { type: 'start' };
      if (type.includes('text/event-stream')) {
        // Only a stream has "events" to be idle between; a JSON agent gets the whole timeout.
        guard.armIdle();
        if (!res.body) throw new AgentError('agent answered without a body', true, res.status);
        yield* streamEvents(res.body, guard, new SniffingStream());
        return;
      }
      const reply = replyWithMediaFromJson(await res.text(), res.status);
      yield { type: 'final', text: reply.text, ...(reply.media.length ? { media: reply.media } : {}) };
    });
  }
}
