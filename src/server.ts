// Builds the Elysia app. Tests call buildServer(gw).handle(new Request(...)); main.ts listens.
import { openapi } from '@elysiajs/openapi';
import { type AnyElysia, Elysia } from 'elysia';
import { authorize, presentedKey } from './api/auth.ts';
import { MAX_JSON_DEPTH, nestedDeeperThan, streamedBodyExceeds } from './api/body-limits.ts';
import { docsAssets } from './api/docs.ts';
import { ApiError, errorBody, httpStatus } from './api/errors.ts';
import { sparseFieldsets } from './api/fields.ts';
import { healthRoutes } from './api/health.ts';
import { mediaRoutes } from './api/media.ts';
import { requestInfo, trackRequest } from './api/principal.ts';
import { PUBLIC_TAG, publicRoutes } from './api/public-routes.ts';
import { RESOURCE_ALIASES, routeClass } from './api/scopes.ts';
import { accessV1 } from './api/v1/access.ts';
import { instancesV1 } from './api/v1/instances.ts';
import { sendV1 } from './api/v1/send.ts';
import { tracesV1 } from './api/v1/traces.ts';
import { accessV2 } from './api/v2/access.ts';
import { aguiRoutes } from './api/v2/agui.ts';
import { channelsV2 } from './api/v2/channels.ts';
import { clusterV2 } from './api/v2/cluster.ts';
import { eventsV2 } from './api/v2/events.ts';
import { instancesV2 } from './api/v2/instances.ts';
import { keysV2 } from './api/v2/keys.ts';
import { messagesV2 } from './api/v2/messages.ts';
import { webhooksV2 } from './api/v2/outgoing-webhooks.ts';
import { personsV2 } from './api/v2/persons.ts';
import { settingsV2 } from './api/v2/settings.ts';
import { statsV2 } from './api/v2/stats.ts';
import { tracesV2 } from './api/v2/traces.ts';
import { webhookRoutes } from './api/webhooks.ts';
import { DomainError, RateLimited, Validation } from './core/errors.ts';
import type { Gateway } from './gateway.ts';
import { mcpRoutes } from './mcp/index.ts';
import { clientIpResolver } from './net/client-ip.ts';
import { cleanPath } from './services/audit.ts';
import { randomToken } from './services/ids.ts';
import { hasScope, type Principal } from './services/keys.ts';
import { wsRoutes } from './stream/ws.ts';
import { webConsole } from './web/index.ts';

interface SchemaLike {
  anyOf?: SchemaLike[];
  const?: unknown;
  type?: string;
  minimum?: number;
  maximum?: number;
}

/** TypeBox says only "Expected union value"; say what was expected (enum values, integer range). */
function unionProblem(schema: SchemaLike | undefined, summary: string | undefined): string {
  const members = schema?.anyOf ?? [];
  if (members.length && members.every((m) => m.const !== undefined))
    return `must be one of: ${members.map((m) => String(m.const)).join(', ')}`;
  // Elysia widens t.Integer/t.Number to accept numeric strings; the numeric member carries the range.
  const num = members.find((m) => m.type === 'integer' || m.type === 'number');
  if (num && members.every((m) => m === num || m.type === 'string' || m.type === 'null')) {
    const kind = num.type === 'integer' ? 'an integer' : 'a number';
    if (num.minimum !== undefined && num.maximum !== undefined)
      return `must be ${kind} between ${num.minimum} and ${num.maximum}`;
    if (num.minimum !== undefined) return `must be ${kind} ≥ ${num.minimum}`;
    return `must be ${kind}`;
  }
  return summary ?? 'is invalid';
}

function validationDetails(error: unknown): Array<{ field: string; problem: string }> {
  const all =
    (
      error as {
        all?: Array<{ path?: string; message?: string; summary?: string; schema?: SchemaLike; value?: unknown }>;
      }
    ).all ?? [];
  const seen = new Set<string>();
  const out: Array<{ field: string; problem: string }> = [];
  for (const e of all) {
    const field = (e.path ?? '').replace(/^\//, '').replace(/\//g, '.') || '(body)';
    const isUnion = e.message === 'Expected union value';
    // A missing field is already reported as "Expected required property".
    if (isUnion && e.value === undefined) continue;
    const problem = (isUnion ? unionProblem(e.schema, e.summary) : e.message) ?? 'is invalid';
    const k = `${field}:${problem}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push({ field, problem });
    if (out.length >= 20) break;
  }
  return out;
}

/** /ws streams message text: the key needs messages:read or events:read (others are refused like a wrong key). */
function streamPrincipal(gw: Gateway, key: string | null): Principal | null {
  const p = gw.keys.verify(key);
  return p && (hasScope(p, 'messages:read') || hasScope(p, 'events:read')) ? p : null;
}

export function buildServer(gw: Gateway) {
  const { log, config } = gw;
  const limit = config.bodyLimitBytes;
  const clientIp = clientIpResolver(config.trustedProxies);

  // Filled once the app is built: the sparse-fieldset hook reads each route's response schema.
  let routeTable: Array<{ method: string; path: string; hooks: { response?: unknown } }> = [];
  const app = new Elysia({ normalize: false })
    // Error envelope for everything, registered before the routes so it covers them all.
    .onError({ as: 'global' }, ({ code, error, request, set }) => {
      const info = requestInfo(request);
      if (info) set.headers['x-request-id'] = info.id;
      let status = 500;
      let body: unknown;
      // Elysia wraps what a parse hook throws (e.g. the streamed-body limit) in a ParseError.
      if (code === 'PARSE' && (error as { cause?: unknown }).cause instanceof DomainError)
        error = (error as { cause: DomainError }).cause;
      if (error instanceof DomainError) {
        status = httpStatus(error);
        body = errorBody(error.code, error.message, error.details);
        if (error.retryAfterSeconds !== undefined) set.headers['retry-after'] = String(error.retryAfterSeconds);
      } else if (code === 'VALIDATION') {
        status = 400;
        const details = validationDetails(error);
        const msg = details.length ? details.map((d) => `${d.field}: ${d.problem}`).join('; ') : 'Invalid request';
        body = errorBody('VALIDATION_ERROR', msg, details);
      } else if (error instanceof TypeError && /new ValidationError|mapValueError/.test(error.stack ?? '')) {
        // Elysia 1.4.30 throws a TypeError while describing a validation failure whose value cannot
        // be turned into a string (e.g. {"name":{"toString":1}}); it is still a bad request.
        status = 400;
        body = errorBody('VALIDATION_ERROR', 'A field has a value of the wrong type', [
          { field: '(body)', problem: 'has a value of the wrong type' },
        ]);
      } else if (code === 'NOT_FOUND') {
        status = 404;
        body = errorBody('NOT_FOUND', `No route for ${request.method} ${new URL(request.url).pathname}`);
      } else if (code === 'PARSE') {
        status = 400;
        body = errorBody('VALIDATION_ERROR', 'Request body is not valid JSON', null);
      } else if ((error as { status?: number }).status === 413 || code === 'INVALID_FILE_TYPE') {
        status = 413;
        body = errorBody('PAYLOAD_TOO_LARGE', `Request body exceeds ${limit} bytes`, { limit });
      } else {
        log.error({ err: error, path: new URL(request.url).pathname }, 'unhandled error');
        body = errorBody('INTERNAL_ERROR', 'Internal error', info ? { requestId: info.id } : null);
      }
      set.status = status;
      set.headers['content-type'] = 'application/json';
      return body;
    })
    .onRequest(({ request, set, server }) => {
      const id = request.headers.get('x-request-id')?.slice(0, 64) || randomToken(9);
      const ip = clientIp(server?.requestIP(request)?.address, request.headers.get('x-forwarded-for'));
      trackRequest(request, id, performance.now(), ip);
      set.headers['x-request-id'] = id;
      const len = Number(request.headers.get('content-length') ?? 0);
      if (len > limit) throw new ApiError('PAYLOAD_TOO_LARGE', `Request body exceeds ${limit} bytes`, { limit });
      const origin = request.headers.get('origin');
      if (origin && config.corsOrigins.length) {
        if (config.corsOrigins.includes('*') || config.corsOrigins.includes(origin)) {
          set.headers['access-control-allow-origin'] = config.corsOrigins.includes('*') ? '*' : origin;
          set.headers.vary = 'Origin';
          if (request.method === 'OPTIONS') {
            set.headers['access-control-allow-methods'] = 'GET, POST, PUT, PATCH, DELETE';
            set.headers['access-control-allow-headers'] = 'content-type, x-api-key, idempotency-key';
            set.headers['access-control-max-age'] = '600';
            set.status = 204;
            return '';
          }
        }
      }
    })
    // A body without Content-Length (chunked) is counted as it streams: over the limit it gets the
    // same 413 envelope as one whose Content-Length says so.
    .onParse({ as: 'global' }, async ({ request }) => {
      if (!request.body || request.headers.has('content-length')) return;
      if (await streamedBodyExceeds(request, limit))
        throw new ApiError('PAYLOAD_TOO_LARGE', `Request body exceeds ${limit} bytes`, { limit });
    })
    // Authentication before body validation: unauthenticated callers learn nothing about schemas.
    .onTransform({ as: 'global' }, async ({ request, route, query, set }) => {
      if (!route.startsWith('/api/')) return;
      const info = requestInfo(request);
      let principal: Principal;
      try {
        principal = authorize(gw.keys, request, route, query as Record<string, unknown>);
      } catch (err) {
        // A valid key without the scope is still audited (who tried what).
        if (info && err instanceof DomainError && err.code === 'FORBIDDEN')
          info.principal = gw.keys.verify(presentedKey(request, query as Record<string, unknown>));
        throw err;
      }
      if (info) info.principal = principal;
      // The browser form of the key is not a query parameter of any route: drop it before validation.
      if (query && 'apiKey' in query) delete (query as Record<string, unknown>).apiKey;
      // A peer node gathering a cluster-wide read on the caller's behalf: the caller's request was
      // already counted on the node it reached.
      if (gw.cluster?.verifyPeer(request)) return;
      // Per key and route class; the headers go on every authenticated /api answer, errors included.
      const rl = await gw.rateLimiter.take(principal.keyId, routeClass(request.method, route));
      set.headers['x-ratelimit-limit'] = String(rl.limit);
      set.headers['x-ratelimit-remaining'] = String(rl.remaining);
      set.headers['x-ratelimit-reset'] = String(Math.ceil(gw.clock.now() / 1000) + rl.resetSeconds);
      if (!rl.allowed) {
        throw new RateLimited(
          `Rate limit of ${rl.limit} requests per minute exceeded; retry in ${rl.resetSeconds}s`,
          { limit: rl.limit, retryAfterSeconds: rl.resetSeconds },
          rl.resetSeconds,
        );
      }
    })
    // Before validation, which recurses: a deeply nested body is a 400, not a stack overflow.
    .onTransform({ as: 'global' }, ({ body }) => {
      if (nestedDeeperThan(body))
        throw new Validation(`Request body nests deeper than ${MAX_JSON_DEPTH} levels`, [
          { field: '(body)', problem: `nests deeper than ${MAX_JSON_DEPTH} levels` },
        ]);
    })
    .onAfterResponse({ as: 'global' }, ({ request, set, route }) => {
      const info = requestInfo(request);
      if (!info) return;
      const status = typeof set.status === 'number' ? set.status : 200;
      if (info.principal) {
        const ip = info.ip;
        gw.audit.record({
          keyId: info.principal.keyId,
          method: request.method,
          path: cleanPath(request.url),
          status,
          ip,
          userAgent: request.headers.get('user-agent')?.slice(0, 512) ?? null,
          at: gw.clock.now(),
        });
      }
      log.info(
        {
          reqId: info.id,
          method: request.method,
          path: new URL(request.url).pathname,
          route,
          status,
          ms: Math.round((performance.now() - info.start) * 10) / 10,
          key: info.principal?.keyId,
        },
        'request',
      );
    })
    .use(
      openapi({
        path: '/docs',
        specPath: '/docs/json',
        provider: 'swagger-ui',
        swagger: { cdn: '/docs/assets/swagger-ui-bundle.js', theme: '/docs/assets/swagger-ui.css', version: 'local' },
        exclude: { paths: [/^\/docs/, '/ws'] },
        documentation: {
          info: {
            title: 'Switchboard',
            version: '0.1.0',
            description:
              'Channel gateway: WhatsApp (Evolution or Baileys), Discord and Slack to AI agents. v1 is the Omni v1 setup guide verbatim; v2 is the Omni v2 API design.',
          },
          components: { securitySchemes: { apiKey: { type: 'apiKey', in: 'header', name: 'x-api-key' } } },
          security: [{ apiKey: [] }],
          tags: [
            { name: 'health', description: 'Liveness, readiness, metrics' },
            { name: 'instances', description: 'Channel instances' },
            { name: 'settings', description: 'Global settings' },
            { name: 'webhooks', description: 'Inbound channel webhooks' },
            { name: 'traces', description: 'Message traces and conversations' },
            {
              name: 'streaming',
              description: 'Live replies: AG-UI endpoint (and the /ws WebSocket, not described by OpenAPI)',
            },
            { name: 'dead letters', description: 'Messages that failed every attempt' },
            { name: 'access', description: 'Access rules (allow/deny) and the v1 access-control list' },
            { name: 'keys', description: 'Scoped API keys and their audit log' },
            { name: 'events', description: 'Messages in and out and instance status changes, with search' },
            { name: 'persons', description: 'Persons and their platform identities' },
            { name: 'messages', description: 'Send API' },
            { name: 'channels', description: 'Channel kinds and capabilities' },
            { name: 'outgoing webhooks', description: 'Event subscriptions and their signed deliveries' },
            { name: 'stats', description: 'Overview figures for the console' },
            { name: 'media', description: 'Media items by signed URL (given to agents)' },
            PUBLIC_TAG,
          ],
        },
      }),
    )
    .use(docsAssets())
    .use(
      sparseFieldsets((method, path) => routeTable.find((r) => r.method === method && r.path === path)?.hooks.response),
    )
    .use(healthRoutes(gw))
    .use(instancesV1(gw))
    .use(instancesV2(gw))
    .use(clusterV2(gw))
    .use(tracesV1(gw))
    .use(tracesV2(gw))
    .use(tracesV2(gw, '/api/v1', false))
    .use(statsV2(gw))
    .use(accessV1(gw))
    .use(webhookRoutes(gw))
    .use(publicRoutes(gw))
    .use(mediaRoutes(gw))
    .use(sendV1(gw))
    .use(aguiRoutes(gw))
    .use(resourceRoutes(gw))
    .use(mcpRoutes(gw))
    .use(
      wsRoutes({
        hub: gw.pipeline.hub,
        authenticate: (key) => streamPrincipal(gw, key),
        onKeysChanged: (l) => gw.keys.onChange(l),
        expiresAt: (key) => gw.keys.expiresAt(key),
        // Opening a stream counts against the key's general budget and is audited like a request.
        admit: async (key, client) => {
          const principal = gw.keys.verify(key)!;
          const rl = await gw.rateLimiter.take(principal.keyId, 'general');
          gw.audit.record({
            keyId: principal.keyId,
            method: 'GET',
            path: '/ws',
            status: rl.allowed ? 101 : 429,
            ip: clientIp(client.ip, client.forwardedFor),
            userAgent: client.userAgent,
            at: gw.clock.now(),
          });
          return rl.allowed
            ? null
            : `rate limit of ${rl.limit} requests per minute exceeded; retry in ${rl.resetSeconds}s`;
        },
      }),
    )
    .use(webConsole(gw));

  routeTable = app.routes;
  return app;
}

/**
 * The v2 resources, each at its own path and at its aliases (RESOURCE_ALIASES: the keys resource
 * at /api/v2/api-keys too, and the resources the v1 guide does not define under /api/v1 as well).
 */
function resourceRoutes(gw: Gateway) {
  const mounts: Array<[string, (gw: Gateway, prefix: string) => AnyElysia]> = [
    ['/api/v2/access', accessV2],
    ['/api/v2/channels', channelsV2],
    ['/api/v2/events', eventsV2],
    ['/api/v2/keys', keysV2],
    ['/api/v2/messages', messagesV2],
    ['/api/v2/persons', personsV2],
    ['/api/v2/settings', settingsV2],
    ['/api/v2/webhooks', webhooksV2],
  ];
  const app = new Elysia({ name: 'resources' });
  for (const [path, routes] of mounts) {
    app.use(routes(gw, path));
    for (const [alias, canonical] of RESOURCE_ALIASES) if (canonical === path) app.use(routes(gw, alias));
  }
  return app;
}

export type App = ReturnType<typeof buildServer>;
