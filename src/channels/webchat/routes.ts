// The visitor API of a web chat instance, under /webchat/{instance}/ (no API key: a signed visitor
// token instead), plus the embeddable script /webchat.js.
//
//   POST /webchat/{instance}/session                      start, or resume with {token}
//   POST /webchat/{instance}/messages                     {clientMessageId, text}; answered after the inbox commit
//   GET  /webchat/{instance}/conversations/{id}/messages  the visitor's own history
//   GET  /webchat/{instance}/conversations/{id}/stream    live reply (SSE: the /ws frames, same seq/resync rules)
//
// Order of checks on every route: instance (404) → Origin (403) → IP budget (429) → token (401) →
// conversation (404) → visitor budget (429) → size (413).

import {
  DomainError,
  Forbidden,
  NotFound,
  RateLimited,
  Unauthorized,
  Unavailable,
  Validation,
} from '../../core/errors.ts';
import type { Instance } from '../../core/instance.ts';
import type { InboundMessage } from '../../core/message.ts';
import { conversationIdFor } from '../../services/inbox.ts';
import type { PublicRequest, PublicRoute, PublicRouteDeps } from '../public.ts';
import { originAllowed, settingsOf, type WebchatSettings } from './config.ts';
import { Buckets } from './limits.ts';
import { issueToken, newVisitorId, verifyToken } from './token.ts';
import { widgetScript } from './widget-build.ts';

export const WIDGET_PATH = '/webchat.js';
const PREFIX = '/webchat/:instance';
const HISTORY_LIMIT = 100;
/** A comment line this often keeps proxies and the server's idle timeout from closing a quiet stream. */
const KEEPALIVE_MS = 8_000;
/** Bytes queued for a slow stream before the hub treats it as lagging (then it gets a resync). */
const STREAM_HIGH_WATER = 64 * 1024;

class PayloadTooLarge extends DomainError {
  constructor(message: string, details: unknown) {
    super('PAYLOAD_TOO_LARGE', message, details);
  }
}

const json = (body: unknown, status = 200) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });

/** The part of a request every route checks first. */
interface Checked {
  inst: Instance;
  s: WebchatSettings;
}

/** Live streams one conversation may hold open at once (tabs of one visitor). */
const MAX_STREAMS_PER_CONVERSATION = 5;

export function webchatRoutes(kind: string, deps: PublicRouteDeps): PublicRoute[] {
  const buckets = new Buckets(deps.clock);
  // Live streams open per conversation (a visitor's tabs): each holds a hub subscriber and a
  // timer until its client goes, so one token must not open them without end.
  const openStreams = new Map<string, number>();

  /** The instance (a web chat one, active), the Origin (CORS headers set when allowed), the IP budget. */
  const admit = (req: PublicRequest): Checked => {
    const inst = deps.instanceByName(req.params.instance ?? '');
    if (inst?.channel !== kind) throw new NotFound(`No web chat named '${req.params.instance}'`);
    const s = settingsOf(inst);
    const origin = req.request.headers.get('origin');
    if (!originAllowed(s, origin, req.request, deps.publicUrl)) {
      // The refused page may read why (and nothing else); a preflight gets no such header, so a
      // request that needs one never leaves the browser.
      if (origin && req.request.method !== 'OPTIONS') {
        req.headers['access-control-allow-origin'] = origin;
        req.headers.vary = 'Origin';
      }
      throw new Forbidden(`Origin ${origin} may not use this chat (see the instance's allowed origins)`);
    }
    if (origin) {
      req.headers['access-control-allow-origin'] = origin;
      req.headers['access-control-expose-headers'] = 'retry-after';
      req.headers.vary = 'Origin';
    }
    if (req.request.method !== 'OPTIONS') {
      const ip = buckets.take(`ip|${inst.id}|${req.ip ?? '?'}`, s.ipRequestsPerMinute);
      if (!ip.allowed)
        throw new RateLimited(
          `Too many requests from this address; retry in ${ip.retryAfterSeconds}s`,
          { limit: s.ipRequestsPerMinute, per: 'minute', scope: 'ip' },
          ip.retryAfterSeconds,
        );
    }
    if (!inst.isActive) throw new Unavailable('This chat is not available right now', null, 60);
    return { inst, s };
  };

  const presentedToken = (req: PublicRequest): string | null => {
    const auth = req.request.headers.get('authorization');
    if (auth?.startsWith('Bearer ')) return auth.slice(7).trim();
    return req.query.token ?? null;
  };

  const visitor = (req: PublicRequest, inst: Instance, token = presentedToken(req)) => {
    if (!token) throw new Unauthorized('A visitor token is required (POST …/session issues one)');
    const v = verifyToken(inst, token, deps.clock.now());
    if (v === 'forged') throw new Unauthorized('Visitor token is not valid for this chat');
    if (v === 'expired') throw new Unauthorized('Visitor token has expired; start a new session');
    return v;
  };

  const conversationOf = (inst: Instance, visitorId: string) =>
    conversationIdFor(inst.id, { chatId: visitorId, kind: 'direct' });

  /** The conversation in the path must be the visitor's own: any other is "not found". */
  const ownConversation = (req: PublicRequest, inst: Instance) => {
    const v = visitor(req, inst);
    const conversationId = conversationOf(inst, v.visitorId);
    if (req.params.conversation !== conversationId) throw new NotFound('Conversation not found');
    return { ...v, conversationId };
  };

  const parseBody = (req: PublicRequest, maxBytes: number): Record<string, unknown> => {
    if (req.body.length > maxBytes)
      throw new PayloadTooLarge(`Request body exceeds ${maxBytes} bytes`, { limit: maxBytes });
    if (!req.body.trim()) return {};
    let v: unknown;
    try {
      v = JSON.parse(req.body);
    } catch {
      throw new Validation('Request body is not valid JSON', null);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      throw new Validation('Request body must be a JSON object', [{ field: '(body)', problem: 'must be an object' }]);
    return v as Record<string, unknown>;
  };

  const preflight = (path: string): PublicRoute => ({
    method: 'OPTIONS',
    path,
    handle(req) {
      admit(req);
      return new Response(null, {
        status: 204,
        headers: {
          'access-control-allow-methods': 'GET, POST',
          'access-control-allow-headers': 'authorization, content-type',
          'access-control-max-age': '600',
        },
      });
    },
  });

  const session: PublicRoute = {
    method: 'POST',
    path: `${PREFIX}/session`,
    docs: {
      summary: 'Start or resume a web chat visitor session',
      description:
        'Body {} starts a new visitor; {token} resumes one (same visitor id and conversation, fresh token). A forged or expired token is 401. Answers the visitor id, conversation id, token (expiresAt) and the chat settings the widget shows (title, welcome text, longest message).',
    },
    handle(req) {
      const { inst, s } = admit(req);
      const body = parseBody(req, 4096);
      if (body.token !== undefined && typeof body.token !== 'string')
        throw new Validation('token must be a string', [{ field: 'token', problem: 'must be a string' }]);
      const visitorId = body.token ? visitor(req, inst, body.token as string).visitorId : newVisitorId();
      const { token, expiresAt } = issueToken(inst, visitorId, deps.clock.now());
      return json({
        visitorId,
        conversationId: conversationOf(inst, visitorId),
        token,
        expiresAt: new Date(expiresAt).toISOString(),
        resumed: Boolean(body.token),
        title: s.title,
        welcome: s.welcome,
        maxMessageChars: s.maxMessageChars,
      });
    },
  };

  const send: PublicRoute = {
    method: 'POST',
    path: `${PREFIX}/messages`,
    docs: {
      summary: 'Send a web chat message',
      description:
        'Body {clientMessageId, text} with the visitor token (Authorization: Bearer). Answered after the durable inbox write; the same clientMessageId again is answered "duplicate" and does nothing else. The reply streams on …/stream with turnId = messageId. 413 over the instance\'s longest message; 429 + Retry-After over the per-visitor or per-IP budget.',
    },
    async handle(req) {
      const { inst, s } = admit(req);
      const v = visitor(req, inst);
      const limit = buckets.take(`v|${inst.id}|${v.visitorId}`, s.visitorMessagesPerMinute);
      if (!limit.allowed)
        throw new RateLimited(
          `Too many messages; retry in ${limit.retryAfterSeconds}s`,
          { limit: s.visitorMessagesPerMinute, per: 'minute', scope: 'visitor' },
          limit.retryAfterSeconds,
        );
      // JSON escapes can make the body several times the text; the text's own limit is checked below.
      const body = parseBody(req, s.maxMessageChars * 6 + 1024);
      const { clientMessageId, text } = body;
      const problems = [];
      if (typeof clientMessageId !== 'string' || !/^[A-Za-z0-9_.:-]{1,100}$/.test(clientMessageId))
        problems.push({ field: 'clientMessageId', problem: 'must be 1–100 letters, digits or _ . : -' });
      if (typeof text !== 'string' || !text.trim())
        problems.push({ field: 'text', problem: 'must be a non-blank string' });
      if (problems.length) throw new Validation(problems.map((p) => `${p.field} ${p.problem}`).join('; '), problems);
      if ((text as string).length > s.maxMessageChars)
        throw new PayloadTooLarge(`Message exceeds ${s.maxMessageChars} characters`, { limit: s.maxMessageChars });
      const msg: InboundMessage = {
        instanceId: inst.id,
        providerMessageId: `${v.visitorId}:${clientMessageId}`,
        chat: { chatId: v.visitorId, kind: 'direct' },
        sender: { id: v.visitorId, name: 'Web visitor' },
        text: text as string,
        contentType: 'text',
        timestamp: deps.clock.now(),
      };
      const result = await deps.ingest(msg);
      if (result.status !== 'duplicate' && result.shed)
        throw new RateLimited(
          'This conversation has too many unanswered messages; retry later',
          { messageId: result.traceId },
          5,
        );
      return json({ status: result.status, messageId: result.traceId, conversationId: result.conversationId });
    },
  };

  const history: PublicRoute = {
    method: 'GET',
    path: `${PREFIX}/conversations/:conversation/messages`,
    docs: {
      summary: "Read the visitor's web chat history",
      description: `The visitor's own conversation, oldest first (the last ${HISTORY_LIMIT} messages and their replies). Any other conversation is 404.`,
    },
    handle(req) {
      const { inst } = admit(req);
      const { conversationId } = ownConversation(req, inst);
      return json({ conversationId, items: deps.history(conversationId, HISTORY_LIMIT) });
    },
  };

  const stream: PublicRoute = {
    method: 'GET',
    path: `${PREFIX}/conversations/:conversation/stream`,
    docs: {
      summary: 'Follow the web chat reply live (SSE)',
      description:
        'text/event-stream; each data line is a /ws frame: {"type":"subscribed"}, {"type":"event","channel":"conversations","payload":{AG-UI event, turnId, seq}} (seq is gap-free per turn), {"type":"resync","snapshot":{turnId, seq, text, status}} after the stream lagged or when joining mid-reply, and {"type":"message.status","traceId","status"} when a message ends. Token in Authorization: Bearer or ?token= (EventSource).',
    },
    handle(req) {
      const { inst } = admit(req);
      const { conversationId } = ownConversation(req, inst);
      const open = openStreams.get(conversationId) ?? 0;
      if (open >= MAX_STREAMS_PER_CONVERSATION)
        throw new RateLimited(
          `At most ${MAX_STREAMS_PER_CONVERSATION} live streams per conversation; close one first`,
          { limit: MAX_STREAMS_PER_CONVERSATION },
          5,
        );
      openStreams.set(conversationId, open + 1);
      return liveStream(deps, inst, conversationId, () => {
        const n = (openStreams.get(conversationId) ?? 1) - 1;
        if (n > 0) openStreams.set(conversationId, n);
        else openStreams.delete(conversationId);
      });
    },
  };

  const widget: PublicRoute = {
    method: 'GET',
    path: WIDGET_PATH,
    async handle() {
      const js = await widgetScript(deps.log);
      return new Response(js, {
        status: js.startsWith('/*build failed') ? 500 : 200,
        headers: {
          'content-type': 'text/javascript; charset=utf-8',
          'cache-control': 'public, max-age=300',
          // Embedded by other sites: allowed to load cross-origin, never sniffed as anything else.
          'cross-origin-resource-policy': 'cross-origin',
          'x-content-type-options': 'nosniff',
        },
      });
    },
  };

  return [
    widget,
    session,
    send,
    history,
    stream,
    preflight(session.path),
    preflight(send.path),
    preflight(history.path),
    preflight(stream.path),
  ];
}

/** An SSE response attached to the stream hub for one conversation. */
function liveStream(deps: PublicRouteDeps, inst: Instance, conversationId: string, onEnd: () => void): Response {
  const encoder = new TextEncoder();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let closed = false;
  let handle: ReturnType<PublicRouteDeps['attachStream']> | null = null;
  let unwatch: (() => void) | null = null;
  let keepalive: ReturnType<typeof setInterval> | null = null;

  const end = () => {
    if (closed) return;
    closed = true;
    onEnd();
    handle?.detach();
    unwatch?.();
    if (keepalive) clearInterval(keepalive);
  };
  /** Bun's send semantics for the hub: -1 once the queue is over its high-water mark (lagging). */
  const write = (chunk: string): number => {
    if (closed) return 0;
    const bytes = encoder.encode(chunk);
    try {
      controller.enqueue(bytes);
    } catch {
      end();
      return 0;
    }
    return (controller.desiredSize ?? 1) <= 0 ? -1 : bytes.length;
  };

  const body = new ReadableStream<Uint8Array>(
    {
      start(c) {
        controller = c;
        handle = deps.attachStream(
          {
            send: (data) => write(`data: ${data}\n\n`),
            close: () => {
              end();
              try {
                controller.close();
              } catch {
                // already closed
              }
            },
            // A comment is the stream's ping; a write that succeeds shows the client is still there.
            ping: () => {
              if (write(': ping\n\n') !== 0) handle?.onPong();
            },
          },
          { instanceIds: [inst.id] },
        );
        // A message that ends without a reply (blocked, dead-lettered, an API send) is announced too.
        unwatch = deps.watchConversation(conversationId, (t) => {
          write(`data: ${JSON.stringify({ type: 'message.status', traceId: t.traceId, status: t.status })}\n\n`);
        });
        handle.onMessage({ type: 'subscribe', channels: ['conversations'], filters: { conversationId } });
        keepalive = setInterval(() => {
          if (write(': keepalive\n\n') !== 0) handle?.onPong();
        }, KEEPALIVE_MS);
        keepalive.unref?.();
      },
      pull() {
        // The client caught up: a lagging subscriber gets its resync now.
        handle?.onDrain();
      },
      cancel() {
        end();
      },
    },
    { highWaterMark: STREAM_HIGH_WATER, size: (chunk) => chunk?.byteLength ?? 0 },
  );
  return new Response(body, {
    headers: {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
    },
  });
}
