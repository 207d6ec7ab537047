// The MCP server at /mcp, driven by the official SDK client over HTTP against a gateway listening
// on 127.0.0.1, with an Evolution stand-in as the WhatsApp channel: tool lists follow scopes, a
// send reaches the channel once across a retried call, instance-bound keys stay in their tenant,
// and every call is audited.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { evolutionInstance, evolutionUpsert, until, useFakeEvolutionAndAgent } from '../fixtures.ts';
import { ADMIN_KEY, createTestGateway } from '../helpers.ts';

const fakes = useFakeEvolutionAndAgent({ evolution: { apikey: 'EVO-KEY-MCP' }, agent: { protocol: 'json' } });

let t: ReturnType<typeof createTestGateway>;
let server: { stop(force?: boolean): Promise<void> | void };
let base: string;
let alpha: Awaited<ReturnType<typeof evolutionInstance>>;
let beta: Awaited<ReturnType<typeof evolutionInstance>>;

beforeAll(async () => {
  t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20' });
  alpha = await evolutionInstance(t, { name: 'alpha', evo: fakes.evo, agent: fakes.agent });
  beta = await evolutionInstance(t, { name: 'beta', evo: fakes.evo, agent: fakes.agent });
  await t.gw.start();
  const listening = t.app.listen({ port: 0, hostname: '127.0.0.1' });
  server = listening.server!;
  base = `http://127.0.0.1:${listening.server!.port}`;
});
afterAll(async () => {
  await server.stop(true);
  await t.close();
});

async function connect(key: string, as: 'bearer' | 'x-api-key' = 'bearer') {
  const client = new Client({ name: 'switchboard-test', version: '1.0.0' });
  const headers: Record<string, string> = as === 'bearer' ? { authorization: `Bearer ${key}` } : { 'x-api-key': key };
  await client.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers } }));
  return client;
}

async function call(client: Client, name: string, args: Record<string, unknown> = {}) {
  const r = (await client.callTool({ name, arguments: args })) as {
    isError?: boolean;
    structuredContent?: any;
    content: Array<{ type: string; text: string }>;
  };
  return { isError: Boolean(r.isError), data: r.structuredContent, text: r.content[0]?.text ?? '' };
}

const ALL_TOOLS = [
  'get_trace',
  'list_conversations',
  'list_instances',
  'pause_conversation',
  'read_conversation',
  'resume_conversation',
  'search_events',
  'send_media',
  'send_message',
  'send_reaction',
];

describe('MCP over Streamable HTTP', () => {
  test('the tool list follows the key: an admin key sees every tool, a read-only key no send tool', async () => {
    const admin = await connect(ADMIN_KEY);
    expect((await admin.listTools()).tools.map((x) => x.name).sort()).toEqual(ALL_TOOLS);
    const send = (await admin.listTools()).tools.find((x) => x.name === 'send_message')!;
    expect(send.inputSchema.required).toEqual(['instance', 'to', 'text']);
    await admin.close();

    const { key } = t.gw.keys.create({ name: 'reader', scopes: ['instances:read', 'messages:read', 'events:read'] });
    const reader = await connect(key, 'x-api-key');
    expect((await reader.listTools()).tools.map((x) => x.name).sort()).toEqual([
      'get_trace',
      'list_conversations',
      'list_instances',
      'read_conversation',
      'search_events',
    ]);
    // Calling a tool it does not see: a clear refusal with the gateway's code, nothing sent.
    const refused = await call(reader, 'send_message', { instance: 'alpha', to: '15550001111', text: 'hi' });
    expect(refused.isError).toBe(true);
    expect(refused.data.error.code).toBe('FORBIDDEN');
    expect(refused.text).toContain("lacks the 'messages:send' scope");
    expect(fakes.evo.sentTo('15550001111')).toEqual([]);
    await reader.close();
  });

  test('no key or a wrong key: 401 with the error envelope, before any MCP message is read', async () => {
    const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: {} };
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const none = await fetch(`${base}/mcp`, { method: 'POST', headers, body: JSON.stringify(init) });
    expect(none.status).toBe(401);
    expect((await none.json()).error.code).toBe('UNAUTHORIZED');
    const wrong = await fetch(`${base}/mcp`, {
      method: 'POST',
      headers: { ...headers, authorization: 'Bearer sb_not-a-key' },
      body: JSON.stringify(init),
    });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toContain('Bearer');
    await expect(connect('sb_not-a-key')).rejects.toThrow();
    // Stateless: no GET stream.
    const get = await fetch(`${base}/mcp`, { headers: { 'x-api-key': ADMIN_KEY, accept: 'text/event-stream' } });
    expect(get.status).toBe(405);
  });

  test('a send reaches the channel exactly once across a retried call with the same idempotency key; the conversation reads back', async () => {
    const client = await connect(ADMIN_KEY);
    const args = { instance: 'alpha', to: '+1 555 000 2222', text: 'Your order shipped', idempotencyKey: 'order-42' };
    const first = await call(client, 'send_message', args);
    expect(first.isError).toBe(false);
    expect(first.data).toMatchObject({ status: 'sent' });
    expect(first.data.externalMessageId).toMatch(/^3EB0/);
    const retry = await call(client, 'send_message', args);
    expect(retry.isError).toBe(false);
    expect(retry.data).toMatchObject({ messageId: first.data.messageId, status: 'sent', duplicate: true });
    await Bun.sleep(50);
    expect(fakes.evo.sentTo('15550002222')).toEqual(['Your order shipped']);

    const list = await call(client, 'list_conversations', { instance: 'alpha' });
    const conv = list.data.conversations.find((c: any) => c.chatId === '15550002222@s.whatsapp.net');
    expect(conv).toMatchObject({ instanceId: alpha.id, paused: null });
    const read = await call(client, 'read_conversation', { conversationId: conv.id });
    expect(read.data.messages).toEqual([
      expect.objectContaining({ role: 'operator', text: 'Your order shipped', traceId: first.data.messageId }),
    ]);
    const trace = await call(client, 'get_trace', { traceId: first.data.messageId });
    expect(trace.data).toMatchObject({ id: first.data.messageId, kind: 'send', status: 'completed' });
    expect(trace.data.steps.length).toBeGreaterThan(0);
    await client.close();
  });

  test('an inbound message and the agent reply read back as a transcript; search finds it; pause and resume', async () => {
    await alpha.post(
      evolutionUpsert({ id: 'MCP-IN-1', text: 'where is my parcel', phone: '15550003333', name: 'Rita' }),
    );
    await until(() => fakes.evo.sentTo('15550003333').length === 1, 5000, 'the agent reply');
    const client = await connect(ADMIN_KEY);
    const list = await call(client, 'list_conversations', {});
    const conv = list.data.conversations.find((c: any) => c.chatId === '15550003333@s.whatsapp.net');
    const read = await call(client, 'read_conversation', { conversationId: conv.id });
    expect(read.data.messages.map((m: any) => [m.role, m.text])).toEqual([
      ['user', 'where is my parcel'],
      ['agent', 'echo: where is my parcel'],
    ]);
    expect(read.data.messages[0].from).toBe('Rita');

    await until(async () => (await call(client, 'search_events', { query: 'parcel' })).data.events.length > 0);
    const found = await call(client, 'search_events', { query: 'parcel', eventType: 'message.received' });
    expect(found.data.events).toHaveLength(1);
    expect(found.data.events[0]).toMatchObject({ conversationId: conv.id, text: 'where is my parcel' });
    const badDate = await call(client, 'search_events', { since: 'yesterday' });
    expect(badDate.data.error.code).toBe('VALIDATION_ERROR');

    const paused = await call(client, 'pause_conversation', { conversationId: conv.id, minutes: 30 });
    expect(paused.data).toMatchObject({ paused: true });
    expect(
      (await call(client, 'list_conversations', {})).data.conversations.find((c: any) => c.id === conv.id),
    ).toMatchObject({ paused: { reason: 'human_takeover' } });
    // Paused: the next message is recorded but the agent stays quiet.
    const asked = fakes.agent.requests.length;
    await alpha.post(evolutionUpsert({ id: 'MCP-IN-2', text: 'hello?', phone: '15550003333' }));
    await until(
      async () => (await call(client, 'read_conversation', { conversationId: conv.id })).data.messages.length === 3,
    );
    expect(fakes.agent.requests.length).toBe(asked);
    const resumed = await call(client, 'resume_conversation', { conversationId: conv.id });
    expect(resumed.data).toMatchObject({ paused: false, wasPaused: true });
    await alpha.post(evolutionUpsert({ id: 'MCP-IN-3', text: 'back?', phone: '15550003333' }));
    await until(() => fakes.evo.sentTo('15550003333').length === 2, 5000, 'the reply after resuming');
    await client.close();
  });

  test("an instance-bound key cannot reach another instance's conversations", async () => {
    await beta.post(evolutionUpsert({ id: 'MCP-BETA-1', text: 'beta secret', phone: '15550004444' }));
    await until(() => fakes.evo.sentTo('15550004444').length === 1, 5000, 'the beta reply');
    const admin = await connect(ADMIN_KEY);
    const betaConv = (await call(admin, 'list_conversations', { instance: 'beta' })).data.conversations[0];
    await admin.close();

    const { key } = t.gw.keys.create({ name: 'alpha only', scopes: ['*'], instanceIds: [alpha.id] });
    const bound = await connect(key);
    expect((await call(bound, 'list_instances')).data.instances.map((i: any) => i.name)).toEqual(['alpha']);
    const convs = (await call(bound, 'list_conversations')).data.conversations;
    expect(convs.length).toBeGreaterThan(0);
    expect(convs.every((c: any) => c.instanceId === alpha.id)).toBe(true);
    for (const [tool, args] of [
      ['read_conversation', { conversationId: betaConv.id }],
      ['pause_conversation', { conversationId: betaConv.id }],
      ['list_conversations', { instance: 'beta' }],
      ['send_message', { instance: 'beta', to: '15550004444', text: 'leak' }],
      ['search_events', { instance: beta.id }],
    ] as const) {
      const r = await call(bound, tool, args);
      expect(r.isError).toBe(true);
      expect(r.data.error.code).toBe('NOT_FOUND');
    }
    const search = await call(bound, 'search_events', { query: 'beta secret' });
    expect(search.data.events).toEqual([]);
    expect(fakes.evo.sentTo('15550004444')).toEqual(['echo: beta secret']);
    await bound.close();
  });

  test('bad arguments are a VALIDATION_ERROR naming the field; calls are audited and rate-limited per tool', async () => {
    const {
      key,
      view: { id },
    } = t.gw.keys.create({ name: 'audited', scopes: ['messages:*', 'instances:read'] });
    const client = await connect(key);
    const bad = await call(client, 'send_message', { instance: 'alpha', to: '15550005555' });
    expect(bad.data.error.code).toBe('VALIDATION_ERROR');
    expect(bad.data.error.details).toEqual([expect.objectContaining({ field: 'text' })]);
    await call(client, 'list_instances');
    t.gw.audit.flush();
    const rows = t.gw.audit.list(id).map((r) => `${r.method} ${r.path} ${r.status}`);
    expect(rows).toContain('POST /mcp/tools/send_message 400');
    expect(rows).toContain('POST /mcp/tools/list_instances 200');
    expect(rows).toContain('POST /mcp 200'); // initialize / tools/list

    // The send budget (messages.send) is the REST one: once spent, a call is RATE_LIMITED.
    t.gw.settings.setMany({ 'rateLimit.messagesSendPerMinute': 1 });
    const limitedKey = t.gw.keys.create({ name: 'limited', scopes: ['messages:send'] }).key;
    const limited = await connect(limitedKey);
    const args = { instance: 'alpha', to: '15550006666', text: 'one' };
    expect((await call(limited, 'send_message', args)).isError).toBe(false);
    const second = await call(limited, 'send_message', { ...args, text: 'two' });
    expect(second.data.error.code).toBe('RATE_LIMITED');
    expect(fakes.evo.sentTo('15550006666')).toEqual(['one']);
    await client.close();
    await limited.close();
  });
});

describe('cost of MCP for a gateway that does not serve it', () => {
  test('the MCP SDK is loaded by the first /mcp request, not when the server is built', async () => {
    // A separate process: this one has loaded the SDK already (the client above).
    const probe = Bun.spawn(
      [
        process.execPath,
        '-e',
        `await import(${JSON.stringify(`${import.meta.dir}/../../src/server.ts`)});
         console.log(Object.keys(require.cache).filter((k) => k.includes('@modelcontextprotocol')).length);`,
      ],
      { stdout: 'pipe', stderr: 'pipe' },
    );
    const [out, code] = [await new Response(probe.stdout).text(), await probe.exited];
    expect(code).toBe(0);
    expect(out.trim()).toBe('0');
  });
});
