// OpenAI-compatible chat completions with `stream: true`: `data: {choices:[{delta:{content}}]}`
// events ending in `data: [DONE]`. A stream that stops before [DONE] (or a finish_reason) is cut.

import {
  type EndpointOptions,
  errorEvent,
  guarded,
  post,
  preview,
  type StreamInterpreter,
  streamEvents,
} from './http.ts';
import type { AgentClient, AgentEvent, AgentRequest } from './types.ts';
import { AgentError } from './types.ts';

export function chatCompletionsUrl(url: string): string {
  const trimmed = url.replace(/\/+$/, '');
  return /\/chat\/completions$/.test(trimmed) ? trimmed : `${trimmed}/chat/completions`;
}

export class OpenAiStream implements StreamInterpreter {
  private readonly parts: string[] = [];
  private finished = false;

  get text(): string {
    return this.parts.join('');
  }

  handle(item: { event?: string; data: string }): AgentEvent[] {
    const data = item.data.trim();
    if (data === '[DONE]') return [{ type: 'final', text: this.text }];
    let obj: any;
    try {
      obj = JSON.parse(data);
    } catch {
      return NONE;
    }
    if (obj?.error) {
      // The error's own message only (the protocol's field), never the rest of the object.
      const msg =
        typeof obj.error === 'string'
          ? obj.error
          : typeof obj.error.message === 'string'
            ? obj.error.message
            : 'unknown';
      return [errorEvent(new AgentError(`agent stream error: ${preview(String(msg))}`, true))];
    }
    const choice = obj?.choices?.[0];
    if (!choice) return NONE;
    if (choice.finish_reason) this.finished = true;
    const text = choice.delta?.content;
    if (typeof text === 'string' && text) {
      this.parts.push(text);
      return [{ type: 'delta', text }];
    }
    return NONE;
  }

  finish(): AgentEvent {
    // Some compatible servers omit [DONE] but do send a finish_reason.
    if (this.finished) return { type: 'final', text: this.text };
    return errorEvent(new AgentError(`agent stream cut before [DONE] (${this.text.length} chars received)`, true));
  }
}

const NONE: AgentEvent[] = [];

/**
 * Chat-completions content parts: the text (a voice note's transcript), an `image_url` part per
 * image (a data URL when the bytes are inlined, else the signed gateway URL), and for other media
 * a line of text naming it and its URL (chat models take images and text).
 */
export function openAiContent(req: AgentRequest): unknown[] {
  const parts: unknown[] = [];
  if (req.message) parts.push({ type: 'text', text: req.message });
  for (const m of req.media ?? []) {
    if (m.type === 'image' || m.type === 'sticker') {
      const url = m.base64 ? `data:${m.mimeType};base64,${m.base64}` : m.url;
      parts.push({ type: 'image_url', image_url: { url } });
    } else if (m.type === 'audio' && m.transcript) {
      if (m.transcript !== req.message) parts.push({ type: 'text', text: `[audio transcript] ${m.transcript}` });
    } else {
      parts.push({ type: 'text', text: `[${m.type}${m.filename ? `: ${m.filename}` : ''}] ${m.url}` });
    }
  }
  return parts;
}

export class OpenAiAgentClient implements AgentClient {
  constructor(
    private readonly ep: EndpointOptions,
    private readonly model: string | null,
  ) {}

  run(req: AgentRequest, signal: AbortSignal): AsyncIterable<AgentEvent> {
    const { ep, model } = this;
    return guarded(signal, ep, async function* (guard) {
      guard.armIdle();
      const headers: Record<string, string> = { ...ep.headers };
      if (ep.apiKey) headers.authorization = `Bearer ${ep.apiKey}`;
      headers['content-type'] = 'application/json';
      headers.accept = 'text/event-stream';
      headers['idempotency-key'] = req.idempotencyKey;
      const body = {
        model: model ?? 'default',
        stream: true,
        // A batched turn is its messages as consecutive user messages; media ride with the last.
        messages: req.messages
          ? req.messages.map((m, i, all) => ({
              role: 'user',
              content: i === all.length - 1 && req.media?.length ? openAiContent({ ...req, message: m.text }) : m.text,
            }))
          : [{ role: 'user', content: req.media?.length ? openAiContent(req) : req.message }],
        user: req.userId,
      };
      const res = await post(ep, guard, chatCompletionsUrl(ep.url), headers, body);
      guard.touch();
      if (!res.body) throw new AgentError('agent answered without a body', true, res.status);
      yield { type: 'start' };
      yield* streamEvents(res.body, guard, new OpenAiStream());
    });
  }
}
