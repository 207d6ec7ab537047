// AG-UI over SSE. Request: a RunAgentInput. Response: events framed as `data: <json>` (the
// reference encoder) or with an `event:` name; we read the type from either.
//
// A run is complete at RUN_FINISHED; a stream with no RUN_* events at all is complete when its
// last text message ended (TEXT_MESSAGE_END). Anything else that just stops is a cut stream:
// a retryable error, so the pipeline asks again with the same Idempotency-Key.

import { type EndpointOptions, errorEvent, guarded, post, type StreamInterpreter, streamEvents } from './http.ts';
import type { AgentClient, AgentEvent, AgentRequest } from './types.ts';
import { AgentError } from './types.ts';

export const AGUI_TEXT_EVENTS = new Set([
  'RUN_STARTED',
  'RUN_FINISHED',
  'RUN_ERROR',
  'TEXT_MESSAGE_START',
  'TEXT_MESSAGE_CONTENT',
  'TEXT_MESSAGE_END',
  'TEXT_MESSAGE_CHUNK',
]);

/** runId is derived from our message id so every attempt of one message names the same run. */
export function aguiRunId(messageId: string): string {
  return `run_${messageId}`;
}

export function runAgentInput(req: AgentRequest): Record<string, unknown> {
  return {
    threadId: req.sessionId,
    runId: aguiRunId(req.messageId),
    // A batched turn is its messages as consecutive user messages; media ride with the request's message (the last).
    messages: req.messages
      ? req.messages.map((m, i, all) => ({
          id: m.id,
          role: 'user',
          content: i === all.length - 1 && req.media?.length ? aguiContent({ ...req, message: m.text }) : m.text,
        }))
      : [{ id: req.messageId, role: 'user', content: req.media?.length ? aguiContent(req) : req.message }],
    tools: [],
    context: [],
    state: {},
    forwardedProps: {},
  };
}

/**
 * A user message with media as AG-UI input content: a text part, then per item a `binary` part
 * (mimeType, the signed url, the bytes as `data` when inlined, filename); a voice note's
 * transcript is the text itself, its audio still follows as a part.
 */
function aguiContent(req: AgentRequest): unknown[] {
  const parts: unknown[] = [];
  if (req.message) parts.push({ type: 'text', text: req.message });
  for (const m of req.media ?? []) {
    parts.push({
      type: 'binary',
      mimeType: m.mimeType,
      id: m.id,
      url: m.url,
      ...(m.base64 ? { data: m.base64 } : {}),
      ...(m.filename ? { filename: m.filename } : {}),
    });
  }
  return parts;
}

/** Parse an SSE message as an AG-UI event: type from JSON `type`, else from `event:`. */
export function aguiEventOf(item: { event?: string; data: string }): { type: string; [k: string]: unknown } | null {
  let obj: Record<string, unknown> | null = null;
  try {
    const v = JSON.parse(item.data);
    if (v && typeof v === 'object' && !Array.isArray(v)) obj = v as Record<string, unknown>;
  } catch {
    // not JSON: only meaningful if the event name carries the type (e.g. a bare RUN_FINISHED)
  }
  const type = typeof obj?.type === 'string' ? (obj.type as string) : item.event;
  if (!type) return null;
  return { ...(obj ?? {}), type };
}

export class AguiStream implements StreamInterpreter {
  private readonly parts: string[] = [];
  private currentId: string | undefined;
  /** Whether the current message has produced text (a break is only needed between texts). */
  private currentHasText = false;
  private anyText = false;
  private sawRun = false;
  private openMessage = false;
  private sawMessageEnd = false;

  get text(): string {
    return this.parts.join('');
  }

  handle(item: { event?: string; data: string }): AgentEvent[] {
    const ev = aguiEventOf(item);
    if (!ev) return NONE;
    switch (ev.type) {
      case 'RUN_STARTED':
        this.sawRun = true;
        return NONE;
      case 'TEXT_MESSAGE_START':
        this.openMessage = true;
        this.beginMessage(str(ev.messageId), ev.role === 'user', true);
        return NONE;
      case 'TEXT_MESSAGE_CONTENT':
      case 'TEXT_MESSAGE_CHUNK': {
        const id = str(ev.messageId);
        const out: AgentEvent[] = [];
        if (id !== undefined && id !== this.currentId) this.beginMessage(id, ev.role === 'user', false);
        if (this.skipping) return NONE;
        const text = typeof ev.delta === 'string' ? ev.delta : typeof ev.content === 'string' ? ev.content : '';
        if (text) {
          if (this.anyText && !this.currentHasText && this.parts.length > 0) {
            this.parts.push('\n\n');
            out.push({ type: 'message_break' });
          }
          this.parts.push(text);
          this.currentHasText = true;
          this.anyText = true;
          out.push({ type: 'delta', text });
        }
        return out;
      }
      case 'TEXT_MESSAGE_END':
        this.openMessage = false;
        this.sawMessageEnd = true;
        return NONE;
      case 'RUN_FINISHED':
        return [{ type: 'final', text: this.text }];
      case 'RUN_ERROR': {
        const msg = typeof ev.message === 'string' && ev.message ? ev.message : 'run failed';
        const code = typeof ev.code === 'string' || typeof ev.code === 'number' ? ` (${ev.code})` : '';
        // The agent gave up on this run; a new attempt (bounded by the pipeline) may succeed.
        return [errorEvent(new AgentError(`agent run error${code}: ${msg}`, true))];
      }
      default:
        return NONE; // tool calls, state, reasoning, custom...: not part of the reply text
    }
  }

  finish(): AgentEvent {
    if (!this.sawRun && this.sawMessageEnd && !this.openMessage) return { type: 'final', text: this.text };
    const where = this.sawRun ? 'before RUN_FINISHED' : 'before the text message ended';
    return errorEvent(new AgentError(`agent stream cut ${where} (${this.text.length} chars received)`, true));
  }

  private skipping = false;

  private beginMessage(id: string | undefined, isUser: boolean, explicitStart: boolean): void {
    // Echoed user messages are not part of the reply.
    this.skipping = isUser;
    // A repeated START for the same id is not a new message; a START without id always is.
    if (id !== undefined && id === this.currentId) return;
    if (!explicitStart && id === undefined) return;
    this.currentId = id;
    this.currentHasText = false;
  }
}

const NONE: AgentEvent[] = [];

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

export class AguiAgentClient implements AgentClient {
  constructor(
    private readonly ep: EndpointOptions,
    /** Leo swaps in its own headers and 401 message. */
    private readonly auth: {
      headers: (req: AgentRequest) => Record<string, string>;
      mapStatus?: (res: Response) => Promise<AgentError>;
    } = { headers: (req) => aguiHeaders(ep, req) },
  ) {}

  run(req: AgentRequest, signal: AbortSignal): AsyncIterable<AgentEvent> {
    const { ep, auth } = this;
    return guarded(signal, ep, async function* (guard) {
      guard.armIdle();
      const res = await post(ep, guard, ep.url, auth.headers(req), runAgentInput(req), auth.mapStatus);
      guard.touch();
      if (!res.body) throw new AgentError('agent answered without a body', true, res.status);
      yield { type: 'start', runId: aguiRunId(req.messageId) };
      yield* streamEvents(res.body, guard, new AguiStream());
    });
  }
}

export function aguiHeaders(ep: EndpointOptions, req: AgentRequest): Record<string, string> {
  const h: Record<string, string> = { ...ep.headers };
  if (ep.apiKey) {
    h['x-api-key'] = ep.apiKey;
    h.authorization = `Bearer ${ep.apiKey}`;
  }
  h['content-type'] = 'application/json';
  h.accept = 'text/event-stream';
  h['idempotency-key'] = req.idempotencyKey;
  return h;
}
