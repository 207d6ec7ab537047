// The /mcp route. The MCP SDK (with its ~37,000 functions of zod schemas, a quarter of the
// gateway's heap objects) is loaded on the first request, not at start: every gateway that never
// serves MCP would otherwise carry it in each full garbage collection (measured: +7 % CPU per
// message in bench/pipeline.ts). The protocol handling is in ./handler.ts.
import { Elysia } from 'elysia';
import type { Gateway } from '../gateway.ts';

let handler: Promise<typeof import('./handler.ts')> | null = null;

export function mcpRoutes(gw: Gateway) {
  return new Elysia({ name: 'mcp' }).all(
    '/mcp',
    async ({ request, server, body }) => {
      handler ??= import('./handler.ts');
      return (await handler).handle(gw, request, typeof body === 'string' ? body : '', {
        ip: server?.requestIP(request)?.address ?? null,
        userAgent: request.headers.get('user-agent')?.slice(0, 512) ?? null,
      });
    },
    // Taken as text (the server's body limits apply) and read as JSON-RPC in the handler, after the
    // key is checked; /mcp is described in the README, not OpenAPI.
    { parse: 'text', detail: { hide: true } },
  );
}
