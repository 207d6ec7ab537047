// The seed's JSON contract: POST {user_id, session_id, message, context, session_origin},
// answer {"text": "..."} (also `message`, `reply`, `response`).
//
// A 2xx whose body is not JSON, or has no text field, is a non-retryable error: the agent did
// receive and (probably) act on the message, and asking again would most likely get the same
// malformed answer. A body cut by the network fails while reading and is retryable.

import { baseHeaders, type EndpointOptions, guarded, post, seedBody } from './http.ts';
import type { AgentClient, AgentEvent, AgentRequest } from './types.ts';
import { AgentError } from './types.ts';

const TEXT_FIELDS = ['text', 'message', 'reply', 'response'] as const;

/**
 * Reply text from a seed JSON answer, or an AgentError explaining why there is none. The error
 * describes the body (its size) but never quotes it: traces are read through the API.
 */
export function replyFromJson(raw: string, status?: number): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new AgentError(
      `agent answered invalid JSON: ${raw.trim() ? `${raw.length} characters` : '(empty body)'}`,
      false,
      status,
    );
  }
  if (typeof parsed === 'string') return parsed;
  if (parsed && typeof parsed === 'object') {
    for (const f of TEXT_FIELDS) {
      const v = (parsed as Record<string, unknown>)[f];
      if (typeof v === 'string') return v;
    }
  }
  throw new AgentError(`agent answer has no text field (expected one of ${TEXT_FIELDS.join(', ')})`, false, status);
}

export class JsonAgentClient implements AgentClient {
  constructor(private readonly ep: EndpointOptions) {}

  run(req: AgentRequest, signal: AbortSignal): AsyncIterable<AgentEvent> {
    const ep = this.ep;
    return guarded(signal, { ...ep, idleTimeoutMs: 0 }, async function* (guard) {
      const res = await post(ep, guard, ep.url, baseHeaders(ep, req.idempotencyKey, 'application/json'), seedBody(req));
      yield { type: 'start' };
      const raw = await res.text();
      yield { type: 'final', text: replyFromJson(raw, res.status) };
    });
  }
}
