// Every channel's public routes (src/channels/public.ts), mounted in one place: no API key; the
// channel checks its own credentials (e.g. a signed visitor token). A domain error a route throws
// is rendered with the API's envelope plus the headers the route set (CORS), so a browser on an
// allowed origin can read a 401 or a 429 and its Retry-After.
import { Elysia, t } from 'elysia';
import type { Logger } from 'pino';
import type { Clock } from '../../actors/runtime/clock.ts';
import type { ConversationTerminal, HistoryEntry, PublicRequest, PublicRouteDeps } from '../channels/public.ts';
import { CHANNELS } from '../channels/registry.ts';
import type { Config } from '../config.ts';
import { DomainError } from '../core/errors.ts';
import type { Pipeline } from '../engine/pipeline.ts';
import type { InstanceService } from '../services/instances.ts';
import { ErrorSchema, errorResponse } from './errors.ts';
import { requestInfo } from './principal.ts';

/** The tag of the public routes in the OpenAPI document. */
export const PUBLIC_TAG = {
  name: 'public',
  description: 'Channel routes without an API key (the web chat visitor API)',
};

/** What the public routes use to build the channels' PublicRouteDeps. */
export interface PublicRoutesDeps {
  instances: InstanceService;
  /** Ingest, a conversation's traces (history), the stream hub and the terminal hook (watchers). */
  pipeline: Pick<Pipeline, 'ingest' | 'traces' | 'hub' | 'onTerminal'>;
  clock: Clock;
  log: Logger;
  config: Pick<Config, 'publicUrl'>;
}

function dependencies(gw: PublicRoutesDeps): PublicRouteDeps {
  // One terminal listener for all watched conversations (the pipeline's listeners are never removed).
  const watchers = new Map<string, Set<(t: ConversationTerminal) => void>>();
  gw.pipeline.onTerminal((row, status) => {
    for (const fn of watchers.get(row.conversation_id) ?? []) fn({ traceId: row.id, status });
  });
  return {
    instanceByName: (name) => gw.instances.getByName(name),
    ingest: (msg) => gw.pipeline.ingest(msg),
    history(conversationId, limit) {
      const rows = gw.pipeline.traces.list({ conversationId, limit }).reverse();
      const out: HistoryEntry[] = [];
      for (const r of rows) {
        if (r.kind === 'send') {
          out.push({ id: r.id, direction: 'out', text: r.text, at: r.completed_at ?? r.received_at, status: r.status });
          continue;
        }
        out.push({ id: r.id, direction: 'in', text: r.text, at: r.received_at, status: r.status });
        if (r.response_text !== null && r.status === 'completed')
          out.push({
            id: r.id,
            direction: 'out',
            text: r.response_text,
            at: r.completed_at ?? r.received_at,
            status: r.status,
          });
      }
      return out;
    },
    watchConversation(conversationId, fn) {
      let set = watchers.get(conversationId);
      if (!set) watchers.set(conversationId, (set = new Set()));
      set.add(fn);
      return () => {
        set.delete(fn);
        if (set.size === 0 && watchers.get(conversationId) === set) watchers.delete(conversationId);
      };
    },
    attachStream: (sock, principal) => gw.pipeline.hub.attach(sock, principal),
    clock: gw.clock,
    log: gw.log,
    publicUrl: gw.config.publicUrl,
  };
}

/** `:name` segments of a path, as a params schema (OpenAPI declares each). */
function paramsOf(path: string) {
  const names = [...path.matchAll(/:(\w+)/g)].map((m) => m[1]);
  return names.length ? t.Object(Object.fromEntries(names.map((n) => [n, t.String({ maxLength: 200 })]))) : undefined;
}

export function publicRoutes(gw: PublicRoutesDeps) {
  const app = new Elysia({ name: 'public-routes' });
  const deps = dependencies(gw);
  for (const def of CHANNELS) {
    for (const route of def.publicRoutes?.routes(deps) ?? []) {
      const handler = async (ctx: {
        request: Request;
        params: Record<string, string>;
        query: Record<string, string | undefined>;
        body: unknown;
      }) => {
        const req: PublicRequest = {
          request: ctx.request,
          params: ctx.params ?? {},
          query: ctx.query ?? {},
          body: typeof ctx.body === 'string' ? ctx.body : '',
          ip: requestInfo(ctx.request)?.ip ?? null,
          headers: {},
        };
        let res: Response;
        try {
          res = await route.handle(req);
        } catch (err) {
          if (!(err instanceof DomainError)) throw err;
          return errorResponse(err, req.headers);
        }
        for (const [k, v] of Object.entries(req.headers)) res.headers.set(k, v);
        return res;
      };
      const detail = route.docs
        ? { tags: [PUBLIC_TAG.name], summary: route.docs.summary, description: route.docs.description, security: [] }
        : { hide: true };
      const hooks = {
        params: paramsOf(route.path),
        detail,
        response: {
          200: t.Unknown({ description: 'Answer (JSON, or a stream for live routes)' }),
          400: ErrorSchema,
          401: ErrorSchema,
          403: ErrorSchema,
          404: ErrorSchema,
          413: ErrorSchema,
          429: ErrorSchema,
          503: ErrorSchema,
        },
      };
      if (route.method === 'GET') app.get(route.path, handler, hooks);
      else if (route.method === 'OPTIONS') app.options(route.path, handler, hooks);
      else app.post(route.path, handler, { ...hooks, parse: 'text', body: t.String() });
    }
  }
  return app;
}
