// The /mcp route. The MCP SDK (~37,000 functions of zod schemas, 4 MiB of heap) is loaded by the
// first request, not at start: a gateway that never serves MCP does not carry it. The protocol
// handling is in ./handler.ts.
import { Elysia } from 'elysia';
import type { McpDeps } from './tools.ts';

let handler: Promise<typeof import('./handler.ts')> | null = null;

export function mcpRoutes(gw: McpDeps) {
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
