// GET /ws: authenticated WebSocket feed backed by a StreamHub.
//
// The key comes from the `x-api-key` header or `?apiKey=` (browsers cannot set headers on a
// WebSocket). A bad key is accepted and then closed with 4401 so the client sees the reason —
// an HTTP 401 on the upgrade would surface in a browser only as an opaque 1006.
//
// An open stream keeps being checked against its key: when any key changes (revoked, deleted,
// scopes or instances narrowed — here or replicated from another node) and once a minute (expiry),
// every stream whose key no longer grants what it was opened with is closed with 4401.

import { Elysia } from 'elysia';
import { type StreamHub, type StreamPrincipal, type SubscriberHandle, WS_CLOSE_UNAUTHORIZED } from './hub.ts';

export interface WsRoutesDeps {
  hub: StreamHub;
  /** Returns the principal for a key, or null when the key is missing/unknown/revoked. */
  authenticate(key: string | null): StreamPrincipal | null;
  /** Registers a callback for "some key changed"; returns its removal. */
  onKeysChanged?(listener: () => void): () => void;
  /** How often open streams are re-checked without a change (a backstop for expiry). */
  recheckEveryMs?: number;
  /** When the key stops being valid (ms since the epoch), or null: the stream is closed then. */
  expiresAt?(key: string): number | null;
  /**
   * Called for an authenticated open (rate limit and audit): resolves to null to admit, or to the
   * close reason (the stream is then closed with 4429).
   */
  admit?(
    key: string,
    client: { ip: string | null; forwardedFor: string | null; userAgent: string | null },
  ): Promise<string | null>;
}

export const WS_CLOSE_RATE_LIMITED = 4429;
/** Messages kept while a stream's admission is decided (a client has no reason to send more than a few). */
const EARLY_MESSAGES_MAX = 32;

const RECHECK_EVERY_MS = 60_000;

interface OpenStream {
  key: string;
  instanceIds: string;
  close(): void;
  /** Fires at the key's expiry. */
  expiryTimer: ReturnType<typeof setTimeout> | null;
}

/** setTimeout's longest delay; a later expiry is reached in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The parts of Bun's ServerWebSocket the route uses (ElysiaWS.raw). */
interface RawSocket {
  send(data: string): number;
  close(code?: number, reason?: string): void;
  getBufferedAmount(): number;
  ping(): number;
}

export function wsRoutes(deps: WsRoutesDeps) {
  // Elysia hands a fresh ElysiaWS wrapper to every callback; the Bun socket underneath is stable.
  const handles = new WeakMap<object, SubscriberHandle>();
  const open = new Map<object, OpenStream>();
  /** Sockets whose admission is being decided, with the messages they sent meanwhile. */
  const early = new Map<object, unknown[]>();
  let recheckTimer: ReturnType<typeof setInterval> | null = null;
  let recheckQueued = false;
  const recheck = () => {
    recheckQueued = false;
    for (const [raw, s] of open) {
      let p: StreamPrincipal | null = null;
      try {
        p = deps.authenticate(s.key);
      } catch {
        p = null;
      }
      if (!p || JSON.stringify(p.instanceIds) !== s.instanceIds) {
        open.delete(raw);
        if (s.expiryTimer) clearTimeout(s.expiryTimer);
        s.close();
      }
    }
    if (open.size === 0 && recheckTimer) {
      clearInterval(recheckTimer);
      recheckTimer = null;
    }
  };
  const stopListening = deps.onKeysChanged?.(() => {
    if (recheckQueued || open.size === 0) return;
    recheckQueued = true;
    queueMicrotask(recheck); // after the change is committed; several changes → one pass
  });

  const attach = (id: object, raw: RawSocket, key: string, principal: StreamPrincipal) => {
    const handle = deps.hub.attach(
      {
        send: (data) => raw.send(data),
        close: (code, reason) => raw.close(code, reason),
        getBufferedAmount: () => raw.getBufferedAmount(),
        ping: () => raw.ping(),
      },
      principal,
    );
    handles.set(id, handle);
    const stream: OpenStream = {
      key,
      instanceIds: JSON.stringify(principal.instanceIds),
      close: () => raw.close(WS_CLOSE_UNAUTHORIZED, 'key revoked, expired or changed'),
      expiryTimer: null,
    };
    open.set(id, stream);
    // Closed at the key's expiry, not at the next periodic re-check (up to a minute later).
    const expiresAt = deps.expiresAt?.(key) ?? null;
    const armExpiry = () => {
      if (expiresAt === null || open.get(id) !== stream) return;
      const wait = Math.min(Math.max(0, expiresAt - Date.now()) + 5, MAX_TIMER_MS);
      stream.expiryTimer = setTimeout(() => {
        stream.expiryTimer = null;
        recheck();
        armExpiry(); // still open: the wait was capped, or the clock ran early
      }, wait);
      stream.expiryTimer.unref?.();
    };
    armExpiry();
    if (!recheckTimer) {
      recheckTimer = setInterval(recheck, deps.recheckEveryMs ?? RECHECK_EVERY_MS);
      recheckTimer.unref?.();
    }
    return handle;
  };

  return new Elysia({ name: 'switchboard-ws' })
    .onStop(() => {
      stopListening?.();
      if (recheckTimer) clearInterval(recheckTimer);
      recheckTimer = null;
    })
    .ws('/ws', {
      async open(ws) {
        const id = ws.raw as object;
        const raw = ws.raw as unknown as RawSocket & { remoteAddress?: string };
        const headerKey = ws.data.headers['x-api-key'];
        const queryKey = (ws.data.query as Record<string, string | undefined>).apiKey;
        const key = headerKey || queryKey || null;
        let principal: StreamPrincipal | null = null;
        try {
          principal = deps.authenticate(key);
        } catch {
          principal = null;
        }
        if (!key || !principal) {
          raw.close(WS_CLOSE_UNAUTHORIZED, 'unauthorized');
          return;
        }
        if (!deps.admit) {
          attach(id, raw, key, principal);
          return;
        }
        // Messages that arrive while the admission is decided are kept and handled after it.
        early.set(id, []);
        let refused: string | null;
        try {
          refused = await deps.admit(key, {
            ip: raw.remoteAddress ?? null,
            forwardedFor: ws.data.headers['x-forwarded-for'] ?? null,
            userAgent: ws.data.headers['user-agent']?.slice(0, 512) ?? null,
          });
        } catch {
          refused = null; // a failing limiter must not take the live stream down
        }
        const queued = early.get(id);
        early.delete(id);
        if (!queued) return; // the client left meanwhile
        if (refused) {
          raw.close(WS_CLOSE_RATE_LIMITED, refused);
          return;
        }
        // Meanwhile the server may have started to shut down, or the key changed.
        if (deps.hub.disconnecting) {
          raw.close(1001, 'server shutting down');
          return;
        }
        try {
          principal = deps.authenticate(key);
        } catch {
          principal = null;
        }
        if (!principal) {
          raw.close(WS_CLOSE_UNAUTHORIZED, 'key revoked, expired or changed');
          return;
        }
        const handle = attach(id, raw, key, principal);
        for (const m of queued) handle.onMessage(m);
      },
      message(ws, message) {
        const queued = early.get(ws.raw);
        if (!queued) handles.get(ws.raw)?.onMessage(message);
        else if (queued.length < EARLY_MESSAGES_MAX) queued.push(message);
        else (ws.raw as unknown as RawSocket).close(1008, 'too many messages before the stream was admitted');
      },
      drain(ws) {
        handles.get(ws.raw)?.onDrain();
      },
      pong(ws) {
        handles.get(ws.raw)?.onPong();
      },
      close(ws) {
        early.delete(ws.raw);
        handles.get(ws.raw)?.detach();
        handles.delete(ws.raw);
        const stream = open.get(ws.raw);
        if (stream?.expiryTimer) clearTimeout(stream.expiryTimer);
        open.delete(ws.raw);
      },
    });
}
