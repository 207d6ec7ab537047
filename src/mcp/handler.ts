// POST /mcp: the Model Context Protocol over Streamable HTTP, for AI agents. Stateless: every
// request gets its own server and transport (no session to pin to a node), answered as JSON.
//
// The same API keys as REST (x-api-key or Authorization: Bearer). A key sees only the tools its
// scopes grant (tools/list), and a call of another tool is refused with FORBIDDEN. Each tool call
// is rate-limited in its REST route's class and audited as POST /mcp/tools/<name> with the status
// REST would have answered; other MCP requests (initialize, tools/list) count as general requests
// and are audited as /mcp.
//
// The low-level SDK Server is used rather than McpServer: the tool list depends on the caller,
// and input schemas are the project's TypeBox (McpServer wants zod, which is no dependency here).
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import {
  CallToolRequestSchema,
  type CallToolResult,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
} from '@modelcontextprotocol/sdk/types.js';
import { Value } from '@sinclair/typebox/value';
import { errorBody, errorResponse, httpStatus } from '../api/errors.ts';
import { DomainError, Forbidden, RateLimited, Unauthorized, Validation } from '../core/errors.ts';
import { hasScope, type Principal } from '../services/keys.ts';
import type { RouteClass } from '../services/rate-limit.ts';
import { type McpDeps, TOOLS, type ToolDef } from './tools.ts';

const VERSION = '0.1.0';

const INSTRUCTIONS =
  'Switchboard connects chat channels (WhatsApp, Discord, Slack, …) to AI agents. Start with list_instances; ' +
  'send_message needs an instance and a recipient (phone number or chat id) and, for safe retries, an idempotencyKey. ' +
  'list_conversations / read_conversation show history; search_events searches it; get_trace explains one message. ' +
  'Errors carry a code: NOT_FOUND, FORBIDDEN, VALIDATION_ERROR, RATE_LIMITED, CHANNEL_ERROR, …';

export interface Client {
  ip: string | null;
  userAgent: string | null;
}

/** x-api-key, or Authorization: Bearer (what MCP clients send). Never a query parameter. */
export function mcpKey(request: Request): string | null {
  const h = request.headers.get('x-api-key');
  if (h) return h;
  const m = /^Bearer\s+(.+)$/i.exec(request.headers.get('authorization') ?? '');
  return m ? m[1].trim() : null;
}

const toolResult = (data: Record<string, unknown>): CallToolResult => ({
  content: [{ type: 'text', text: JSON.stringify(data) }],
  structuredContent: data,
});

/** A tool error the model can read: "CODE: message", and the error envelope as structured content. */
const toolError = (code: string, message: string, details?: unknown): CallToolResult => ({
  isError: true,
  content: [{ type: 'text', text: `${code}: ${message}${details ? ` ${JSON.stringify(details)}` : ''}` }],
  structuredContent: { error: { code, message, details: details ?? null } },
});

const describeTool = (t: ToolDef) => ({
  name: t.name,
  title: t.title,
  description: t.description,
  // TypeBox schemas are JSON Schema; the round trip drops TypeBox's symbol keys.
  inputSchema: JSON.parse(JSON.stringify(t.input)),
  annotations: { title: t.title, readOnlyHint: t.readOnly, destructiveHint: false, openWorldHint: !t.readOnly },
});

function validationProblems(t: ToolDef, args: unknown) {
  const out: Array<{ field: string; problem: string }> = [];
  for (const e of Value.Errors(t.input, args)) {
    // A missing field is already "Expected required property"; its type errors would repeat it.
    if (e.value === undefined && !/required/i.test(e.message)) continue;
    out.push({ field: e.path.replace(/^\//, '').replace(/\//g, '.') || '(arguments)', problem: e.message });
    if (out.length >= 20) break;
  }
  return out;
}

async function rateLimited(gw: McpDeps, p: Principal, cls: RouteClass): Promise<DomainError | null> {
  const rl = await gw.rateLimiter.take(p.keyId, cls);
  if (rl.allowed) return null;
  return new RateLimited(
    `Rate limit of ${rl.limit} requests per minute exceeded; retry in ${rl.resetSeconds}s`,
    { limit: rl.limit, retryAfterSeconds: rl.resetSeconds },
    rl.resetSeconds,
  );
}

function audit(gw: McpDeps, p: Principal, client: Client, method: string, path: string, status: number) {
  gw.audit.record({
    keyId: p.keyId,
    method,
    path,
    status,
    ip: client.ip,
    userAgent: client.userAgent,
    at: gw.clock.now(),
  });
}

async function callTool(
  gw: McpDeps,
  principal: Principal,
  client: Client,
  name: string,
  rawArgs: unknown,
): Promise<CallToolResult> {
  const t = TOOLS.find((x) => x.name === name);
  if (!t) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${name}`);
  const path = `/mcp/tools/${t.name}`;
  const fail = (err: DomainError) => {
    audit(gw, principal, client, 'POST', path, httpStatus(err));
    return toolError(err.code, err.message, err.details);
  };
  if (!hasScope(principal, t.scope))
    return fail(
      new Forbidden(`This key lacks the '${t.scope}' scope`, {
        required: t.scope,
        scopes: principal.scopes,
      }),
    );
  const limited = await rateLimited(gw, principal, t.rateClass);
  if (limited) return fail(limited);
  const args = Value.Default(t.input, structuredClone(rawArgs ?? {}));
  if (!Value.Check(t.input, args)) {
    const details = validationProblems(t, args);
    return fail(new Validation(details.map((d) => `${d.field}: ${d.problem}`).join('; '), details));
  }
  try {
    const data = await t.run({ gw, principal }, args);
    audit(gw, principal, client, 'POST', path, 200);
    return toolResult(data);
  } catch (err) {
    if (err instanceof DomainError) return fail(err);
    gw.log.error({ err, tool: t.name }, 'mcp tool failed');
    audit(gw, principal, client, 'POST', path, 500);
    return toolError('INTERNAL_ERROR', 'Internal error');
  }
}

function serverFor(gw: McpDeps, principal: Principal, client: Client): Server {
  const server = new Server(
    { name: 'switchboard', version: VERSION },
    { capabilities: { tools: {} }, instructions: INSTRUCTIONS },
  );
  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: TOOLS.filter((t) => hasScope(principal, t.scope)).map(describeTool),
  }));
  server.setRequestHandler(CallToolRequestSchema, (req) =>
    callTool(gw, principal, client, req.params.name, req.params.arguments),
  );
  return server;
}

const isToolCall = (m: unknown) => (m as { method?: unknown } | null)?.method === 'tools/call';

/** One MCP request: the key, then the JSON-RPC message(s) through a fresh SDK server. */
export async function handle(gw: McpDeps, request: Request, raw: string, client: Client): Promise<Response> {
  const key = mcpKey(request);
  const challenge = { 'www-authenticate': 'Bearer realm="switchboard"' };
  if (!key)
    return errorResponse(
      new Unauthorized('Missing API key: send it as Authorization: Bearer <key> or in the x-api-key header'),
      challenge,
    );
  const principal = gw.keys.verify(key);
  if (!principal) return errorResponse(new Unauthorized('Invalid, expired or revoked API key'), challenge);
  const done = (res: Response, counted = true) => {
    if (counted) audit(gw, principal, client, request.method, '/mcp', res.status);
    return res;
  };
  // Stateless: there is no server-to-client stream (GET) and no session to end (DELETE).
  if (request.method !== 'POST')
    return done(
      Response.json(errorBody('METHOD_NOT_ALLOWED', 'MCP here is POST only (stateless Streamable HTTP)'), {
        status: 405,
        headers: { allow: 'POST' },
      }),
    );
  let body: unknown;
  try {
    body = JSON.parse(raw);
  } catch {
    return done(
      Response.json(
        { jsonrpc: '2.0', id: null, error: { code: ErrorCode.ParseError, message: 'Parse error' } },
        { status: 400 },
      ),
    );
  }
  // Tool calls are counted and audited one by one in their own class; anything else is a general request.
  const calls = Array.isArray(body) ? body.some(isToolCall) : isToolCall(body);
  if (!calls) {
    const limited = await rateLimited(gw, principal, 'general');
    if (limited) return done(errorResponse(limited));
  }
  const server = serverFor(gw, principal, client);
  const transport = new WebStandardStreamableHTTPServerTransport({ enableJsonResponse: true });
  await server.connect(transport);
  try {
    return done(await transport.handleRequest(request, { parsedBody: body }), !calls);
  } finally {
    void server.close();
  }
}
