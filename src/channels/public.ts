// Public routes of a channel: HTTP endpoints reached without an API key (e.g. a web chat's
// visitor API and its embeddable script). A channel declares them framework-free; the HTTP layer
// (src/api/public-routes.ts) mounts every channel's routes in one place and renders thrown domain
// errors with the API's envelope, adding the route's own headers (CORS) to errors too.
import type { Logger } from 'pino';
import type { Clock } from '../../actors/runtime/clock.ts';
import type { Instance } from '../core/instance.ts';
import type { InboundMessage, IngestResult } from '../core/message.ts';
import type { StreamPrincipal, StreamSocket, SubscriberHandle } from '../stream/hub.ts';

/** One message of a conversation's history, oldest first. */
export interface HistoryEntry {
  /** The inbox row (trace) id; for an inbound message it is also the live stream's turn id. */
  id: string;
  /** `in`: written by the user; `out`: sent to the user (the agent's reply or an API send). */
  direction: 'in' | 'out';
  text: string;
  at: string;
  /** For `in`: pending | processing | completed | failed | blocked | dead_lettered | shed. */
  status: string;
}

/** A message of a conversation reached a terminal state (completed, blocked, dead-lettered, …). */
export interface ConversationTerminal {
  traceId: string;
  status: string;
}

/** What public routes may use of the gateway. */
export interface PublicRouteDeps {
  /** By name (the public URL names the instance); null when there is none. */
  instanceByName(name: string): Instance | null;
  /** The durable inbox write; resolves after the commit (throws Overloaded at the global bound). */
  ingest(msg: InboundMessage): Promise<IngestResult & { conversationId: string; shed: boolean }>;
  /** The conversation's messages, oldest first (at most `limit`, the newest ones). */
  history(conversationId: string, limit: number): HistoryEntry[];
  /** Calls `fn` when a message of the conversation ends; returns the removal. */
  watchConversation(conversationId: string, fn: (t: ConversationTerminal) => void): () => void;
  /** The live stream hub (the same seq/resync rules as /ws). */
  attachStream(sock: StreamSocket, principal: StreamPrincipal): SubscriberHandle;
  clock: Clock;
  log: Logger;
  /** PUBLIC_URL, when set (the gateway's own origin besides the request's). */
  publicUrl: string | null;
}

/** The request as a public route sees it. */
export interface PublicRequest {
  request: Request;
  params: Record<string, string>;
  query: Record<string, string | undefined>;
  /** The body as text ('' when none); the route parses it. */
  body: string;
  /** Client address (X-Forwarded-For only from trusted proxies). */
  ip: string | null;
  /** Added to the answer, errors included (e.g. CORS headers once the origin is checked). */
  headers: Record<string, string>;
}

export interface PublicRoute {
  method: 'GET' | 'POST' | 'OPTIONS';
  /** Path with `:name` parameters, e.g. /webchat/:instance/session. */
  path: string;
  /** OpenAPI summary and description; omitted = not API surface (a script, a preflight). */
  docs?: { summary: string; description: string };
  /** Answers, or throws a core DomainError (rendered with the envelope and `req.headers`). */
  handle(req: PublicRequest): Response | Promise<Response>;
}

export interface ChannelPublicRoutes {
  /** Path of the channel's embeddable script, if any (the console's "Try it" panel embeds it). */
  widget?: string;
  routes(deps: PublicRouteDeps): PublicRoute[];
}
