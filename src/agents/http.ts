// What every agent protocol shares: the timeouts, cancellation, the HTTP call, status → error
// mapping, and driving an SSE body through a protocol's stream interpreter.
import type { Clock, Timer } from '../../actors/runtime/clock.ts';
import { OutboundRefused } from '../net/outbound.ts';
import { readSse, type SseItem } from './sse.ts';
import { AgentError, type AgentEvent } from './types.ts';

/** How one agent endpoint is reached; built by createAgentClient from the instance. */
export interface EndpointOptions {
  url: string;
  apiKey: string | null;
  /** Extra headers from the instance (applied before ours, so ours win). */
  headers: Record<string, string>;
  /** Covers the whole call, from request to final event. */
  timeoutMs: number;
  /** Fires when a stream goes this long without an event or comment; 0 = off. */
  idleTimeoutMs: number;
  fetch: typeof fetch;
  clock: Clock;
}

/**
 * One call's deadline, idle timer and cancellation. `signal` goes to fetch and the body reader;
 * whatever ends the call (timer, caller abort, early consumer exit) aborts it, which closes the
 * HTTP connection.
 */
export class CallGuard {
  private readonly controller = new AbortController();
  private reason: AgentError | null = null;
  private totalTimer: Timer | null;
  /**
   * The idle timer is a deadline, not a timer per event: an event only moves `lastEvent`, and the
   * single timer re-arms itself for what is left when it fires early (a stream sends dozens of
   * events per reply; re-creating a timer for each was measurable on the hot path).
   */
  private idleTimer: Timer | null = null;
  private idleArmed = false;
  private idlePaused = false;
  private lastEvent = 0;
  private readonly onCallerAbort = () => this.abort(new AgentError('agent call aborted by the caller', false));

  constructor(
    private readonly caller: AbortSignal,
    private readonly ep: Pick<EndpointOptions, 'timeoutMs' | 'idleTimeoutMs' | 'clock'>,
  ) {
    this.totalTimer =
      ep.timeoutMs > 0
        ? ep.clock.setTimeout(
            () =>
              this.abort(new AgentError(`agent timed out: no complete reply within ${fmtSeconds(ep.timeoutMs)}`, true)),
            ep.timeoutMs,
          )
        : null;
    if (caller.aborted) this.onCallerAbort();
    else caller.addEventListener('abort', this.onCallerAbort, { once: true });
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Start (or restart) the idle timer; streams call this once they expect events. */
  armIdle(): void {
    this.idleArmed = true;
    this.touch();
  }

  /** Something arrived: restart the idle period. */
  touch(): void {
    if (!this.idleArmed || this.ep.idleTimeoutMs <= 0 || this.reason) return;
    this.idlePaused = false;
    this.lastEvent = this.ep.clock.monotonic();
    if (!this.idleTimer) this.scheduleIdle(this.ep.idleTimeoutMs);
  }

  /** While our consumer handles an event, the agent is not the one being slow. */
  pauseIdle(): void {
    this.idlePaused = true;
  }

  private scheduleIdle(ms: number): void {
    this.idleTimer = this.ep.clock.setTimeout(() => {
      this.idleTimer = null;
      if (this.reason) return;
      const left = this.idlePaused
        ? this.ep.idleTimeoutMs
        : this.lastEvent + this.ep.idleTimeoutMs - this.ep.clock.monotonic();
      if (left > 0) this.scheduleIdle(left);
      else this.abort(new AgentError(`agent stream idle: no event for ${fmtSeconds(this.ep.idleTimeoutMs)}`, true));
    }, ms);
  }

  /** Turn anything thrown during the call into the AgentError that explains it. */
  failure(err: unknown): AgentError {
    if (this.reason) return this.reason;
    if (err instanceof AgentError) return err;
    // The policy refuses the same URL every time: no retry.
    if (err instanceof OutboundRefused) return new AgentError(`agent not called: ${err.message}`, false);
    const msg = err instanceof Error ? err.message : String(err);
    return new AgentError(`agent unreachable: ${msg}`, true);
  }

  dispose(): void {
    this.totalTimer?.cancel();
    this.idleTimer?.cancel();
    this.caller.removeEventListener('abort', this.onCallerAbort);
    // Releases the connection if the consumer stopped early; harmless after a normal end. One
    // shared reason: building an Error (with its stack) per call showed up in profiles.
    if (!this.controller.signal.aborted) this.controller.abort(CALL_FINISHED);
  }

  private abort(reason: AgentError): void {
    if (this.reason) return;
    this.reason = reason;
    this.totalTimer?.cancel();
    this.idleTimer?.cancel();
    this.controller.abort(reason);
  }
}

const CALL_FINISHED = new AgentError('agent call finished', false);

function fmtSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))}s`;
}

/**
 * Non-2xx → AgentError: 5xx, 429 and 408 are worth retrying; other 4xx are not. The message names
 * the status and a reason of our own, never the body: traces are read through the API, and an
 * agent URL may point at a service whose answers the caller must not read.
 */
export async function statusError(res: Response, who = 'agent'): Promise<AgentError> {
  await res.body?.cancel().catch(() => {});
  const retryable = res.status >= 500 || res.status === 429 || res.status === 408;
  return new AgentError(`${who} answered HTTP ${res.status} (${statusReason(res.status)})`, retryable, res.status);
}

/** A short reason for an HTTP status, in our words (the remote's status text is not echoed either). */
export function statusReason(status: number): string {
  if (status === 401 || status === 403) return 'credentials refused';
  if (status === 404) return 'not found';
  if (status === 408) return 'request timeout';
  if (status === 413) return 'request too large';
  if (status === 429) return 'rate limited';
  if (status >= 500) return 'server error';
  if (status >= 300 && status < 400) return 'redirect not followed';
  return 'request refused';
}

export function preview(s: string, max = 200): string {
  const one = s.replace(/\s+/g, ' ').trim();
  return one.length > max ? `${one.slice(0, max)}…` : one;
}

export function errorEvent(e: AgentError): AgentEvent {
  return { type: 'error', message: e.message, retryable: e.retryable, status: e.status };
}

/** The seed JSON request body, shared by `json` and `auto`. */
export function seedBody(req: import('./types.ts').AgentRequest): Record<string, unknown> {
  return {
    user_id: req.userId,
    session_id: req.sessionId,
    // The guide's example body names the session too: one name per instance and sender.
    session_name: `${req.context.instance}_${req.userId}`,
    message: req.message,
    context: req.context,
    session_origin: req.sessionOrigin,
    // A batched turn also lists its messages (id, text, time); a single message has no such field.
    ...(req.messages ? { messages: req.messages } : {}),
    // Only when there is media: a text message's body stays the seed's.
    ...(req.media?.length ? { media: req.media } : {}),
    ...(req.transcribed ? { transcribed: true } : {}),
  };
}

/** Instance headers first, then the key (both spellings the seed accepts), then ours. */
export function baseHeaders(ep: EndpointOptions, idempotencyKey: string, accept: string): Record<string, string> {
  const h: Record<string, string> = { ...ep.headers };
  if (ep.apiKey) {
    h['x-api-key'] = ep.apiKey;
    h.authorization = `Bearer ${ep.apiKey}`;
  }
  h['content-type'] = 'application/json';
  h.accept = accept;
  h['idempotency-key'] = idempotencyKey;
  return h;
}

/**
 * A protocol's view of an SSE stream. `handle` returns the events one SSE message produces;
 * a returned `final` or `error` ends the call. `finish` is asked when the body ended without one.
 */
export interface StreamInterpreter {
  handle(item: { event?: string; data: string }): AgentEvent[];
  finish(): AgentEvent;
}

export function isTerminal(e: AgentEvent): boolean {
  return e.type === 'final' || e.type === 'error';
}

/** Drive an SSE body through an interpreter, keeping the idle timer honest. */
export async function* streamEvents(
  body: ReadableStream<Uint8Array>,
  guard: CallGuard,
  interp: StreamInterpreter,
): AsyncGenerator<AgentEvent> {
  for await (const item of readSse(body, guard.signal)) {
    guard.touch();
    if (item.kind === 'comment') continue;
    const events = interp.handle(item);
    if (events.length === 0) continue;
    guard.pauseIdle();
    for (const ev of events) {
      yield ev;
      if (isTerminal(ev)) return;
    }
    guard.touch();
  }
  yield interp.finish();
}

export type { SseItem };

/**
 * Runs one call under a CallGuard: the protocol body yields events; any throw (network, timer,
 * abort) becomes exactly one `error` event; the iteration always ends with `final` or `error`.
 */
export async function* guarded(
  signal: AbortSignal,
  ep: Pick<EndpointOptions, 'timeoutMs' | 'idleTimeoutMs' | 'clock'>,
  body: (guard: CallGuard) => AsyncGenerator<AgentEvent>,
): AsyncGenerator<AgentEvent> {
  const guard = new CallGuard(signal, ep);
  try {
    for await (const ev of body(guard)) {
      yield ev;
      if (isTerminal(ev)) return;
    }
    yield errorEvent(new AgentError('agent call ended without a reply', true));
  } catch (e) {
    yield errorEvent(guard.failure(e));
  } finally {
    guard.dispose();
  }
}

/** POST under the guard's signal; non-2xx becomes an AgentError (thrown). */
export async function post(
  ep: EndpointOptions,
  guard: CallGuard,
  url: string,
  headers: Record<string, string>,
  body: unknown,
  mapStatus: (res: Response) => Promise<AgentError> = (r) => statusError(r),
): Promise<Response> {
  const res = await ep.fetch(url, { method: 'POST', headers, body: JSON.stringify(body), signal: guard.signal });
  if (!res.ok) throw await mapStatus(res);
  return res;
}
