// The seed's JSON contract: POST {user_id, session_id, message, context, session_origin},
// answer {"text": "..."} (also `message`, `reply`, `response`).
//
// A 2xx whose body is not JSON, or has no text field, is a non-retryable error: the agent did
// receive and (probably) act on the message, and asking again would most likely get the same
// malformed answer. A body cut by the network fails while reading and is retryable.

import { baseHeaders, type EndpointOptions, guarded, post, seedBody } from './http.ts';
import type { AgentClient, AgentEvent, AgentRequest, ReplyMedia } from './types.ts';
import { AgentError } from './types.ts';

const TEXT_FIELDS = ['text', 'message', 'reply', 'response'] as const;

/**
 * Reply text from a seed JSON answer, or an AgentError explaining why there is none. The error
 * describes the body (its size) but never quotes it: traces are read through the API.
 */
export function replyFromJson(raw: string, status?: number): string {
  return textOf(parseAnswer(raw, status), status);
}

function parseAnswer(raw: string, status?: number): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    throw new AgentError(
      `agent answered invalid JSON: ${raw.trim() ? `${raw.length} characters` : '(empty body)'}`,
      false,
      status,
    );
  }
}

function textOf(parsed: unknown, status?: number): string {
  if (typeof parsed === 'string') return parsed;
  if (parsed && typeof parsed === 'object') {
    for (const f of TEXT_FIELDS) {
      const v = (parsed as Record<string, unknown>)[f];
      if (typeof v === 'string') return v;
    }
  }
  throw new AgentError(`agent answer has no text field (expected one of ${TEXT_FIELDS.join(', ')})`, false, status);
}

/**
 * The reply text and the reply's media (`media: [{url | base64, type, filename?, caption?,
 * voiceNote?}]`). Items that are not objects with a string url or base64 are left out; a reply
 * with media may have an empty text. The body is parsed once.
 */
export function replyWithMediaFromJson(raw: string, status?: number): { text: string; media: ReplyMedia[] } {
  const parsed = parseAnswer(raw, status);
  const media = mediaOfReply(parsed);
  if (media.length > 0 && parsed && typeof parsed === 'object') {
    const o = parsed as Record<string, unknown>;
    if (!TEXT_FIELDS.some((f) => typeof o[f] === 'string')) return { text: '', media };
  }
  return { text: textOf(parsed, status), media };
}

function mediaOfReply(parsed: unknown): ReplyMedia[] {
  const list = parsed && typeof parsed === 'object' ? (parsed as Record<string, unknown>).media : undefined;
  if (!Array.isArray(list)) return [];
  const out: ReplyMedia[] = [];
  for (const m of list.slice(0, 10)) {
    if (!m || typeof m !== 'object') continue;
    const o = m as Record<string, unknown>;
    const s = (k: string) => (typeof o[k] === 'string' && o[k] !== '' ? (o[k] as string) : undefined);
    const url = s('url');
    const base64 = s('base64');
    if (!url && !base64) continue;
    out.push({
      ...(url ? { url } : { base64 }),
      ...(s('type') ? { type: s('type') } : {}),
      ...(s('filename') ? { filename: s('filename') } : {}),
      ...(s('caption') ? { caption: s('caption') } : {}),
      ...(typeof o.voiceNote === 'boolean' ? { voiceNote: o.voiceNote } : {}),
    });
  }
  return out;
}

export class JsonAgentClient implements AgentClient {
  constructor(private readonly ep: EndpointOptions) {}

  run(req: AgentRequest, signal: AbortSignal): AsyncIterable<AgentEvent> {
    const ep = this.ep;
    return guarded(signal, { ...ep, idleTimeoutMs: 0 }, async function* (guard) {
      const res = await post(ep, guard, ep.url, baseHeaders(ep, req.idempotencyKey, 'application/json'), seedBody(req));
      yield { type: 'start' };
      const raw = await res.text();
      const reply = replyWithMediaFromJson(raw, res.status);
      yield { type: 'final', text: reply.text, ...(reply.media.length ? { media: reply.media } : {}) };
    });
  }
}
