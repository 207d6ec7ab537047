// Every /api route's required scope, in one table. The auth hook looks a route up here; a route
// missing from the table is refused (fail closed), and a test walks the OpenAPI document to
// check each route against this table.
import type { RouteClass } from '../services/rate-limit.ts';

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export const ROUTE_SCOPES: Record<string, string> = {
  // instances
  'GET /api/v1/instances': 'instances:read',
  'POST /api/v1/instances': 'instances:write',
  'GET /api/v1/instances/:name': 'instances:read',
  'PUT /api/v1/instances/:name': 'instances:write',
  'DELETE /api/v1/instances/:name': 'instances:delete',
  'GET /api/v1/instances/:name/qr': 'instances:read',
  'GET /api/v1/instances/:name/status': 'instances:read',
  'GET /api/v2/instances': 'instances:read',
  'POST /api/v2/instances': 'instances:write',
  'GET /api/v2/instances/:id': 'instances:read',
  'PATCH /api/v2/instances/:id': 'instances:write',
  'DELETE /api/v2/instances/:id': 'instances:delete',
  'POST /api/v2/instances/:id/rotate-webhook-secret': 'instances:write',
  'GET /api/v2/instances/:id/status': 'instances:read',
  'GET /api/v2/instances/:id/qr': 'instances:read',
  'POST /api/v2/instances/:id/pair': 'instances:write',
  'POST /api/v2/instances/:id/connect': 'instances:write',
  'POST /api/v2/instances/:id/restart': 'instances:write',
  'POST /api/v2/instances/:id/logout': 'instances:write',
  'GET /api/v2/instances/:id/discord/invite': 'instances:read',
  // settings
  'GET /api/v2/settings': 'settings:*',
  'PATCH /api/v2/settings': 'settings:*',
  'GET /api/v2/settings/:key': 'settings:*',
  'PUT /api/v2/settings/:key': 'settings:*',
  // traces and dead letters
  'GET /api/v1/traces': 'events:read',
  'GET /api/v1/traces/:traceId': 'events:read',
  'GET /api/v2/traces': 'events:read',
  'GET /api/v2/traces/:id': 'events:read',
  'GET /api/v2/dead-letters': 'events:read',
  'POST /api/v2/dead-letters/:id/replay': 'messages:send',
  'DELETE /api/v2/dead-letters/:id': 'messages:send',
  'GET /api/v2/conversations': 'messages:read',
  'GET /api/v2/conversations/:id': 'messages:read',
  // console overview (issue 27)
  'GET /api/v2/stats/overview': 'events:read',
  // events, persons, messages, channels (issue 9)
  'GET /api/v2/events': 'events:read',
  'GET /api/v2/events/:id': 'events:read',
  'GET /api/v2/events/timeline/:personId': 'events:read',
  'POST /api/v2/events/search': 'events:read',
  'GET /api/v2/persons': 'persons:*',
  'GET /api/v2/persons/:id': 'persons:*',
  'GET /api/v2/persons/:id/presence': 'persons:*',
  'GET /api/v2/persons/:id/timeline': 'persons:*',
  'POST /api/v2/persons/link': 'persons:*',
  'POST /api/v2/persons/unlink': 'persons:*',
  'POST /api/v2/messages': 'messages:send',
  'POST /api/v2/messages/media': 'messages:send',
  'POST /api/v2/messages/reaction': 'messages:send',
  'POST /api/v2/messages/template': 'messages:send',
  'GET /api/v2/messages/:id': 'messages:read',
  'POST /api/v1/instance/:name/send-text': 'messages:send',
  'GET /api/v2/channels': 'instances:read',
  'GET /api/v2/channels/:id': 'instances:read',
  // streaming / AG-UI
  'POST /api/v2/agui/:instance': 'messages:send',
  // access rules (issue 8)
  'GET /api/v2/access/rules': 'access:*',
  'POST /api/v2/access/rules': 'access:*',
  'GET /api/v2/access/rules/:id': 'access:*',
  'PATCH /api/v2/access/rules/:id': 'access:*',
  'DELETE /api/v2/access/rules/:id': 'access:*',
  'POST /api/v2/access/check': 'access:*',
  'GET /api/v2/access/pauses': 'access:*',
  'DELETE /api/v2/access/pauses/:conversationId': 'access:*',
  'GET /api/v1/instances/:name/access-control': 'access:*',
  'POST /api/v1/instances/:name/access-control': 'access:*',
  // outgoing webhooks (issue 21)
  'GET /api/v2/webhooks': 'webhooks:read',
  'POST /api/v2/webhooks': 'webhooks:write',
  'GET /api/v2/webhooks/:id': 'webhooks:read',
  'PATCH /api/v2/webhooks/:id': 'webhooks:write',
  'DELETE /api/v2/webhooks/:id': 'webhooks:write',
  'POST /api/v2/webhooks/:id/rotate-secret': 'webhooks:write',
  'POST /api/v2/webhooks/:id/test': 'webhooks:write',
  'GET /api/v2/webhooks/:id/deliveries': 'webhooks:read',
  'POST /api/v2/webhooks/:id/deliveries/:deliveryId/redeliver': 'webhooks:write',
  // API keys (issue 8)
  'GET /api/v2/cluster': 'admin:*',
  'GET /api/v2/cluster/dead-letters': 'admin:*',
  'POST /api/v2/cluster/dead-letters/:id/replay': 'admin:*',
  'DELETE /api/v2/cluster/dead-letters/:id': 'admin:*',
  'GET /api/v2/keys': 'admin:*',
  'POST /api/v2/keys': 'admin:*',
  'GET /api/v2/keys/:id': 'admin:*',
  'PATCH /api/v2/keys/:id': 'admin:*',
  'DELETE /api/v2/keys/:id': 'admin:*',
  'POST /api/v2/keys/:id/revoke': 'admin:*',
  'GET /api/v2/keys/:id/audit': 'admin:*',
};

/**
 * Resources served at more than one path by the same handlers: the keys resource also at the
 * design's /api/v2/api-keys, and every v2 resource the v1 guide does not define also under
 * /api/v1 (design principle 1). An alias needs exactly the scope of the route it stands for.
 */
export const RESOURCE_ALIASES: ReadonlyArray<readonly [alias: string, canonical: string]> = [
  ['/api/v2/api-keys', '/api/v2/keys'],
  ['/api/v1/api-keys', '/api/v2/keys'],
  ...[
    'messages',
    'events',
    'persons',
    'access',
    'settings',
    'channels',
    'webhooks',
    'conversations',
    'dead-letters',
  ].map((r) => [`/api/v1/${r}`, `/api/v2/${r}`] as const),
];

/** The table's spelling of a route: trailing slash dropped, an alias resolved to its resource. */
export function canonicalRoute(route: string): string {
  const r = route.length > 1 ? route.replace(/\/+$/, '') : route;
  for (const [alias, canonical] of RESOURCE_ALIASES)
    if (r === alias || r.startsWith(`${alias}/`)) return canonical + r.slice(alias.length);
  return r;
}

export function scopeFor(method: string, route: string): string | undefined {
  return ROUTE_SCOPES[`${method.toUpperCase() as Method} ${canonicalRoute(route)}`];
}

/**
 * Routes that change or reveal state shared by every tenant: keys restricted to instances
 * (instanceIds) are refused here whatever their scopes.
 */
export const UNRESTRICTED_ROUTES = new Set<string>([
  'PATCH /api/v2/settings',
  'PUT /api/v2/settings/:key',
  'GET /api/v2/cluster',
  'GET /api/v2/cluster/dead-letters',
  'POST /api/v2/cluster/dead-letters/:id/replay',
  'DELETE /api/v2/cluster/dead-letters/:id',
  'POST /api/v2/persons/link',
  'POST /api/v2/persons/unlink',
]);

export function needsUnrestrictedKey(method: string, route: string): boolean {
  return UNRESTRICTED_ROUTES.has(`${method.toUpperCase()} ${canonicalRoute(route)}`);
}

/**
 * The class of an /api route, from its scope: sends (messages:send), event/trace listings
 * (events:read GETs), instance writes (instances:write|delete); the rest is general.
 * Instance reads are general so dashboards polling status do not starve the write budget.
 */
export function routeClass(method: string, route: string): RouteClass {
  const scope = scopeFor(method, route) ?? '';
  if (scope === 'messages:send' && method !== 'GET') return 'messages.send';
  if (scope === 'events:read' && method === 'GET') return 'events.list';
  if (scope === 'instances:write' || scope === 'instances:delete') return 'instances.write';
  return 'general';
}
