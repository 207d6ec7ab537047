// Security pass: CORS closed unless configured, body limits, secrets kept out of logs and
// responses, and outbound URLs limited to http/https.
import { describe, expect, test } from 'bun:test';
import { createLogger } from '../../src/log.ts';
import { ADMIN_KEY, createTestGateway } from '../helpers.ts';

describe('CORS', () => {
  test('closed by default: no allow-origin header, preflight not approved', async () => {
    const t = createTestGateway();
    const r = await t.call('GET', '/api/v2/instances', undefined, { origin: 'https://evil.example' });
    expect(r.status).toBe(200);
    expect(r.headers.get('access-control-allow-origin')).toBeNull();
    const pre = await t.call('OPTIONS', '/api/v2/instances', undefined, {
      origin: 'https://evil.example',
      'access-control-request-method': 'DELETE',
      'x-api-key': '',
    });
    expect(pre.headers.get('access-control-allow-origin')).toBeNull();
    expect(pre.headers.get('access-control-allow-methods')).toBeNull();
    await t.close();
  });

  test('CORS_ORIGINS lets exactly the listed origins in', async () => {
    const t = createTestGateway({ CORS_ORIGINS: 'https://console.example.com' });
    const ok = await t.call('OPTIONS', '/api/v2/instances', undefined, {
      origin: 'https://console.example.com',
      'access-control-request-method': 'GET',
      'x-api-key': '',
    });
    expect(ok.status).toBe(204);
    expect(ok.headers.get('access-control-allow-origin')).toBe('https://console.example.com');
    expect(ok.headers.get('access-control-allow-headers')).toContain('x-api-key');
    const other = await t.call('GET', '/api/v2/instances', undefined, {
      origin: 'https://console.example.com.evil.example',
    });
    expect(other.headers.get('access-control-allow-origin')).toBeNull();
    await t.close();
  });
});

describe('body limits', () => {
  test('a body over BODY_LIMIT_BYTES is refused with 413 and nothing is written', async () => {
    const t = createTestGateway({ BODY_LIMIT_BYTES: '2048' });
    // Over a real socket, as clients send it (with content-length).
    t.app.listen({ port: 0, hostname: '127.0.0.1' });
    const url = `http://127.0.0.1:${t.app.server!.port}/api/v2/access/rules`;
    const post = (replyMessage: string) =>
      fetch(url, {
        method: 'POST',
        headers: { 'x-api-key': ADMIN_KEY, 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'deny', criteria: {}, action: 'reply', replyMessage }),
      });
    const r = await post('x'.repeat(4000));
    expect(r.status).toBe(413);
    expect(((await r.json()) as any).error.code).toBe('PAYLOAD_TOO_LARGE');
    expect(t.gw.access.countRules()).toBe(0);
    expect((await post('small')).status).toBe(201);
    await t.app.stop(true);
    await t.close();
  });
});

describe('secrets', () => {
  test('API keys, channel and agent secrets and webhook tokens never reach the log', async () => {
    const lines: string[] = [];
    const log = createLogger('debug', { pretty: false, destination: { write: (s: string) => void lines.push(s) } });
    const t = createTestGateway({}, { log });
    const secrets = {
      evolution_key: 'EVO-SECRET-7f3a9c1d',
      agent_api_key: 'AGENT-SECRET-51be0e77',
      admin: ADMIN_KEY,
    };
    const created = await t.call('POST', '/api/v1/instances', {
      name: 'leaky',
      evolution_url: 'https://evo.example.com',
      evolution_key: secrets.evolution_key,
      agent_api_url: 'https://agent.example.com/run',
      agent_api_key: secrets.agent_api_key,
    });
    expect(created.status).toBe(201);
    const key = (await t.call('POST', '/api/v2/keys', { name: 'browser', scopes: ['settings:*'] })).body.data
      .key as string;
    await t.call('GET', `/api/v2/settings?apiKey=${key}`, undefined, { 'x-api-key': '' });
    await t.call('GET', '/api/v2/instances', undefined, { 'x-api-key': 'sb_WRONG-KEY-should-not-be-logged' });
    const token = new URL(created.body.webhook_url).searchParams.get('token')!;
    await t.call(
      'POST',
      `/webhook/evolution/leaky?token=${token}`,
      { event: 'connection.update', instance: 'leaky', data: { state: 'open' } },
      { 'x-api-key': '' },
    );
    await Bun.sleep(5); // onAfterResponse (the request log line) runs just after the response
    const out = lines.join('');
    expect(out).toContain('"msg":"request"');
    expect(lines.length).toBeGreaterThanOrEqual(4);
    for (const s of [...Object.values(secrets), key, token, 'sb_WRONG-KEY-should-not-be-logged'])
      expect(out).not.toContain(s);
    // Responses mask them too.
    const got = await t.call('GET', '/api/v1/instances/leaky');
    const body = JSON.stringify(got.body);
    expect(body).not.toContain(secrets.evolution_key);
    expect(body).not.toContain(secrets.agent_api_key);
    await t.close();
  });
});

describe('outbound URLs', () => {
  test('agent and channel URLs must be http(s); hostile schemes are refused and nothing is created', async () => {
    const t = createTestGateway();
    const hostile = [
      'javascript:alert(1)',
      'file:///etc/passwd',
      'ftp://files.example.com/x',
      'data:text/html,<script>1</script>',
      'gopher://127.0.0.1:6379/_FLUSHALL',
      'http://',
      '//no-scheme.example.com',
      'https://',
    ];
    for (const url of hostile) {
      const a = await t.call('POST', '/api/v1/instances', {
        name: 'hostile-agent',
        channel: 'api',
        agent_api_url: url,
      });
      expect(a.status).toBe(400);
      expect(a.body.error.code).toBe('VALIDATION_ERROR');
      const e = await t.call('POST', '/api/v1/instances', {
        name: 'hostile-evo',
        evolution_url: url,
        evolution_key: 'k',
      });
      expect(e.status).toBe(400);
      const d = await t.call('POST', '/api/v2/instances', {
        name: 'hostile-discord',
        channel: 'discord',
        channelConfig: { discordBotToken: 't', discordApiUrl: url },
      });
      expect(d.status).toBe(400);
    }
    expect(t.gw.instances.list()).toHaveLength(0);
    await t.close();
  });
});

describe('webhook token visibility', () => {
  test('read-only keys see the webhook URL with the token masked; writers see it in full', async () => {
    const t = createTestGateway();
    const created = await t.call('POST', '/api/v1/instances', {
      name: 'wh',
      evolution_url: 'https://evolution.example.com',
      evolution_key: 'EVO-KEY-000000',
    });
    const secret = new URL(created.body.webhook_url).searchParams.get('token')!;
    expect(secret.length).toBeGreaterThan(10);
    const { key: reader } = t.gw.keys.create({ name: 'reader', scopes: ['instances:read'] });
    for (const path of ['/api/v1/instances/wh', '/api/v2/instances/wh', '/api/v1/instances', '/api/v2/instances']) {
      const res = await t.call('GET', path, undefined, { 'x-api-key': reader });
      expect(res.status).toBe(200);
      expect(JSON.stringify(res.body)).not.toContain(secret);
      expect(JSON.stringify(res.body)).toContain('token=****');
    }
    const asAdmin = await t.call('GET', '/api/v2/instances/wh');
    expect(new URL(asAdmin.body.data.webhookUrl).searchParams.get('token')).toBe(secret);
    await t.close();
  });
});

describe('keys restricted to instances and shared state', () => {
  test('cannot change global settings, read the cluster, or make their instance the default', async () => {
    const t = createTestGateway();
    await t.call('POST', '/api/v1/instances', {
      name: 'mine',
      evolution_url: 'https://evolution.example.com',
      evolution_key: 'EVO-KEY-000000',
    });
    await t.call('POST', '/api/v1/instances', {
      name: 'theirs',
      evolution_url: 'https://evolution.example.com',
      evolution_key: 'EVO-KEY-000001',
      is_default: true,
    });
    const mine = t.gw.instances.getByName('mine')!;
    const { key } = t.gw.keys.create({ name: 'tenant', scopes: ['*'], instanceIds: [mine.id] });
    const as = (method: string, path: string, body?: unknown) => t.call(method, path, body, { 'x-api-key': key });
    expect((await as('PATCH', '/api/v2/settings', { 'pipeline.maxAttempts': 1 })).status).toBe(403);
    expect((await as('PUT', '/api/v2/settings/pipeline.maxAttempts', { value: 1 })).status).toBe(403);
    expect((await as('GET', '/api/v2/cluster')).status).toBe(403);
    expect((await as('PATCH', '/api/v2/instances/mine', { isDefault: true })).status).toBe(403);
    expect((await as('PUT', '/api/v1/instances/mine', { is_default: true })).status).toBe(403);
    // Nothing changed for the other tenant; the key still manages its own instance.
    expect(t.gw.instances.getByName('theirs')!.isDefault).toBe(true);
    expect(t.gw.settings.value('pipeline.maxAttempts')).toBe(5);
    expect((await as('PATCH', '/api/v2/instances/mine', { agent: { timeoutSeconds: 30 } })).status).toBe(200);
    expect((await as('GET', '/api/v2/settings')).status).toBe(200);
    await t.close();
  });
});

describe('secrets and changed endpoints', () => {
  test('a stored secret is never carried to a new endpoint: it must be given again with the new URL', async () => {
    const t = createTestGateway();
    await t.call('POST', '/api/v1/instances', {
      name: 'moved',
      evolution_url: 'https://evolution.example.com',
      evolution_key: 'EVO-KEY-SECRET-1',
      agent_api_url: 'https://agent.example.com/run',
      agent_api_key: 'AGENT-KEY-SECRET-1',
    });
    // Repointing Evolution without the key is refused with a clear reason, and nothing changes.
    const moved = await t.call('PATCH', '/api/v2/instances/moved', {
      channelConfig: { evolutionUrl: 'https://attacker.example.net' },
    });
    expect(moved.status).toBe(400);
    expect(moved.body.error.details[0]).toMatchObject({ field: 'evolution_key' });
    expect(moved.body.error.details[0].problem).toContain('evolution_url changes');
    expect(t.gw.instances.getByName('moved')!.config.evolution_url).toBe('https://evolution.example.com');
    // With the key given again it is accepted.
    expect(
      (
        await t.call('PATCH', '/api/v2/instances/moved', {
          channelConfig: { evolutionUrl: 'https://evo2.example.com', evolutionKey: 'EVO-KEY-SECRET-2' },
        })
      ).status,
    ).toBe(200);
    // The guide's v1 PUT that only changes agent_api_url still works; the old agent key is not kept for the new URL.
    const put = await t.call('PUT', '/api/v1/instances/moved', {
      agent_timeout: 150,
      agent_api_url: 'http://localhost:8887',
    });
    expect(put.status).toBe(200);
    expect(put.body.agent_api_key).toBeNull();
    expect(t.gw.instances.getByName('moved')!.agent.apiKey).toBeNull();
    await t.close();
  });
});

describe('remote answers are never echoed to API callers', () => {
  const LEAK = 'INTERNAL-SECRET-7f3a';
  /** A server that answers every request with `status` and a body holding LEAK (stands in for an internal service). */
  function leakyServer(status: number, body: unknown) {
    return Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: () =>
        new Response(typeof body === 'string' ? body : JSON.stringify(body), {
          status,
          headers: { 'content-type': 'application/json' },
        }),
    });
  }

  test('Evolution status, qr and connect name the status and our reason, never the remote body', async () => {
    const bodies: Array<[number, unknown]> = [
      [500, { status: 500, error: LEAK, response: { message: [LEAK] } }],
      [400, { status: 400, error: 'Bad Request', response: { message: LEAK } }],
      [418, `<html>${LEAK}</html>`],
      [200, { instance: { state: `${LEAK} with spaces` }, base64: `not base64 ${LEAK}`, code: `${LEAK} ${LEAK}` }],
    ];
    for (const [status, body] of bodies) {
      const server = leakyServer(status, body);
      const t = createTestGateway();
      try {
        const created = await t.call('POST', '/api/v2/instances', {
          name: 'leaky-evo',
          channel: 'whatsapp-evolution',
          isActive: true,
          channelConfig: { evolutionUrl: `http://127.0.0.1:${server.port}`, evolutionKey: 'evo-key' },
        });
        expect(created.status).toBe(201);
        const id = created.body.data.id;
        for (const [method, path] of [
          ['GET', `/api/v2/instances/${id}/status`],
          ['GET', `/api/v2/instances/${id}/qr`],
          ['POST', `/api/v2/instances/${id}/connect`],
          ['GET', '/api/v1/instances/leaky-evo/qr'],
        ] as const) {
          const res = await t.call(method, path);
          expect(JSON.stringify(res.body)).not.toContain(LEAK);
          if (status !== 200) expect(JSON.stringify(res.body)).toContain(`HTTP ${status}`);
        }
      } finally {
        await t.close();
        server.stop(true);
      }
    }
  });

  test("an agent's error body and a 200 body without a reply stay out of the error (and so out of traces)", async () => {
    const { createAgentClient, runAgent } = await import('../../src/agents/index.ts');
    const req = {
      userId: 'u',
      sessionId: 's',
      message: 'hi',
      context: { channel: 'api', instance: 'i', source: 'api' },
      sessionOrigin: 'api',
      idempotencyKey: 'k',
      messageId: 'm',
    };
    for (const [status, body, type] of [
      [500, { error: LEAK }, 'json'],
      [404, `${LEAK}`, 'json'],
      [200, { internal: LEAK }, 'json'],
      [200, `not json ${LEAK}`, 'json'],
      [200, { internal: LEAK }, 'auto'],
      [403, { error: LEAK }, 'openai'],
      [502, { error: LEAK }, 'agui'],
    ] as const) {
      const server = leakyServer(status, body);
      try {
        const client = createAgentClient(
          {
            url: `http://127.0.0.1:${server.port}/agent`,
            apiKey: null,
            type,
            timeoutSeconds: 5,
            idleTimeoutSeconds: 5,
            defaultAgent: null,
            model: null,
            headers: {},
          },
          { leo: { bearerToken: null, subscriptionKey: null, workflowId: null, apiBaseUrl: null } },
        );
        const err = await runAgent(client, req, new AbortController().signal).then(
          () => null,
          (e: Error) => e,
        );
        expect(err).not.toBeNull();
        expect(err!.message).not.toContain(LEAK);
        if (status !== 200) expect(err!.message).toContain(`HTTP ${status}`);
      } finally {
        server.stop(true);
      }
    }
  });
});

describe('agent headers and URLs shown back', () => {
  test('Host and hop-by-hop headers cannot be set through agent.headers (400, nothing saved)', async () => {
    const t = createTestGateway();
    try {
      for (const name of ['Host', 'connection', 'Transfer-Encoding', 'upgrade', 'TE', 'keep-alive', 'content-length']) {
        const res = await t.call('POST', '/api/v2/instances', {
          name: 'hdrs',
          channel: 'api',
          agent: { url: 'http://127.0.0.1:9/agent', headers: { [name]: 'x' } },
        });
        expect(res.status).toBe(400);
        expect(res.body.error.details[0]).toMatchObject({ field: 'agent.headers' });
      }
      const ok = await t.call('POST', '/api/v2/instances', {
        name: 'hdrs',
        channel: 'api',
        agent: { url: 'http://127.0.0.1:9/agent', headers: { 'x-tenant': 'a' } },
      });
      expect(ok.status).toBe(201);
    } finally {
      await t.close();
    }
  });

  test('URLs with a password or a token come back masked in v1 and v2 views; the stored URL is intact', async () => {
    const t = createTestGateway();
    try {
      const agentUrl = 'http://bot:AGENT-PASS-1@agent.example.com/run?key=AGENT-TOKEN-1&v=2';
      const evoUrl = 'https://evo:EVO-PASS-1@evolution.example.com/?apikey=EVO-TOKEN-1';
      const created = await t.call('POST', '/api/v1/instances', {
        name: 'masked-urls',
        evolution_url: evoUrl,
        evolution_key: 'evo-key-0001',
        agent_api_url: agentUrl,
      });
      expect(created.status).toBe(201);
      const views = [
        created.body,
        (await t.call('GET', '/api/v1/instances/masked-urls')).body,
        (await t.call('GET', '/api/v2/instances/masked-urls')).body,
        (await t.call('GET', '/api/v2/instances')).body,
      ];
      for (const v of views) {
        const text = JSON.stringify(v);
        for (const secret of ['AGENT-PASS-1', 'AGENT-TOKEN-1', 'EVO-PASS-1', 'EVO-TOKEN-1'])
          expect(text).not.toContain(secret);
      }
      expect(created.body.agent_api_url).toBe('http://bot:****@agent.example.com/run?key=****&v=2');
      expect(views[2].data.channelConfig.evolutionUrl).toBe('https://evo:****@evolution.example.com/?apikey=****');
      const stored = t.gw.instances.getByName('masked-urls')!;
      expect(stored.agent.url).toBe(agentUrl);
      expect(stored.config.evolution_url).toBe(evoUrl);
    } finally {
      await t.close();
    }
  });
});
