// GET /ws: authenticated WebSocket feed backed by a StreamHub.
//
// The key comes from the `x-api-key` header or `?apiKey=` (browsers cannot set headers on a
// WebSocket). A bad key is accepted and then closed with 4401 so the client sees the reason —
// an HTTP 401 on the upgrade would surface in a browser only as an opaque 1006.

import { Elysia } from 'elysia';
import { WS_CLOSE_UNAUTHORIZED, type StreamHub, type StreamPrincipal, type SubscriberHandle } from './hub.ts';

export interface WsRoutesDeps {
  hub: StreamHub;
  /** Returns the principal for a key, or null when the key is missing/unknown/revoked. */
  authenticate(key: string | null): StreamPrincipal | null;
}

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

  return new Elysia({ name: 'switchboard-ws' }).ws('/ws', {
    open(ws) {
      const raw = ws.raw as unknown as RawSocket;
      const headerKey = ws.data.headers['x-api-key'];
      const queryKey = (ws.data.query as Record<string, string | undefined>).apiKey;
      const key = headerKey || queryKey || null;
      let principal: StreamPrincipal | null = null;
      try {
        principal = deps.authenticate(key);
      } catch {
        principal = null;
      }
      if (!principal) {
        raw.close(WS_CLOSE_UNAUTHORIZED, 'unauthorized');
        return;
      }
      const handle = deps.hub.attach(
        {
          send: (data) => raw.send(data),
          close: (code, reason) => raw.close(code, reason),
          getBufferedAmount: () => raw.getBufferedAmount(),
          ping: () => raw.ping(),
        },
        principal,
      );
      handles.set(ws.raw, handle);
    },
    message(ws, message) {
      handles.get(ws.raw)?.onMessage(message);
    },
    drain(ws) {
      handles.get(ws.raw)?.onDrain();
    },
    pong(ws) {
      handles.get(ws.raw)?.onPong();
    },
    close(ws) {
      handles.get(ws.raw)?.detach();
      handles.delete(ws.raw);
    },
  });
}
