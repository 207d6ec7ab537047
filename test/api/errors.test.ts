// The error envelope: every error the app can produce answers {"error":{code,message,details}},
// never a stack trace, always with an x-request-id.
import { describe, expect, test } from 'bun:test';
import {
  ChannelError,
  ChannelFailure,
  Conflict,
  DomainError,
  Forbidden,
  NotFound,
  Overloaded,
  RateLimited,
  Unauthorized,
  Unavailable,
  Validation,
} from '../../src/core/errors.ts';
import { ADMIN_KEY } from '../helpers.ts';
import { type OfflineGateway, offlineGatewaysClosedAfterEach } from './instance-fixtures.ts';

type T = OfflineGateway;
const gateway = offlineGatewaysClosedAfterEach();

const STACK = /\bat .+\(|\.ts:\d+|node_modules|Error:\s/;

function expectEnvelope(res: { status: number; body: any; headers: Headers }, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toContain('application/json');
  expect(Object.keys(res.body ?? {})).toEqual(['error']);
  expect(Object.keys(res.body.error).sort()).toEqual(['code', 'details', 'message']);
  expect(res.body.error.code).toBe(code);
  expect(res.body.error.message.length).toBeGreaterThan(0);
  expect(JSON.stringify(res.body)).not.toMatch(STACK);
  expect(res.headers.get('x-request-id')).toBeTruthy();
}
const count = (t: T) => (t.gw.db.query('SELECT COUNT(*) AS n FROM instances').get() as { n: number }).n;

describe('not found and auth', () => {
  test('unknown routes answer 404 NOT_FOUND, with or without a key', async () => {
    const t = gateway();
    expectEnvelope(await t.call('GET', '/nope', undefined, { 'x-api-key': '' }), 404, 'NOT_FOUND');
    expectEnvelope(await t.call('GET', '/api/v1/nope'), 404, 'NOT_FOUND');
    expectEnvelope(await t.call('DELETE', '/api/v2/instances'), 404, 'NOT_FOUND');
  });

  test('unknown instance answers 404 NOT_FOUND in v1 and v2', async () => {
    const t = gateway();
    for (const [m, p] of [
      ['GET', '/api/v1/instances/ghost'],
      ['PUT', '/api/v1/instances/ghost'],
      ['DELETE', '/api/v1/instances/ghost'],
      ['GET', '/api/v2/instances/ghost'],
      ['PATCH', '/api/v2/instances/ghost'],
      ['DELETE', '/api/v2/instances/ghost'],
      ['POST', '/api/v2/instances/ghost/rotate-webhook-secret'],
    ] as const) {
      expectEnvelope(await t.call(m, p, m === 'PUT' || m === 'PATCH' ? {} : undefined), 404, 'NOT_FOUND');
    }
  });

  test('missing or wrong key answers 401 UNAUTHORIZED and writes nothing', async () => {
    const t = gateway();
    const body = { name: 'no-key-bot', discord_bot_token: 'token-1234567890' };
    expectEnvelope(await t.call('POST', '/api/v1/instances', body, { 'x-api-key': '' }), 401, 'UNAUTHORIZED');
    expectEnvelope(
      await t.call('POST', '/api/v1/instances', body, { 'x-api-key': 'wrong-key-0123456789' }),
      401,
      'UNAUTHORIZED',
    );
    expectEnvelope(
      await t.call('GET', '/api/v2/instances', undefined, { 'x-api-key': ADMIN_KEY.toUpperCase() }),
      401,
      'UNAUTHORIZED',
    );
    expectEnvelope(await t.call('GET', '/api/v2/settings', undefined, { 'x-api-key': '' }), 401, 'UNAUTHORIZED');
    expect(count(t)).toBe(0);
  });

  test('auth comes before validation: an unauthenticated bad body learns nothing about the schema', async () => {
    const t = gateway();
    const res = await t.call('POST', '/api/v1/instances', { bogus: 1 }, { 'x-api-key': '' });
    expectEnvelope(res, 401, 'UNAUTHORIZED');
    expect(JSON.stringify(res.body)).not.toContain('bogus');
  });
});

describe('bad bodies', () => {
  test('validation: 400 VALIDATION_ERROR with each offending field and its problem', async () => {
    const t = gateway();
    const res = await t.call('POST', '/api/v2/instances', {
      name: 5,
      channel: 'signal', // not a channel kind (telegram became one)
      isActive: 'yes',
      agent: { timeoutSeconds: 0 },
    });
    expectEnvelope(res, 400, 'VALIDATION_ERROR');
    const byField = Object.fromEntries(
      (res.body.error.details as Array<{ field: string; problem: string }>).map((d) => [d.field, d.problem]),
    );
    expect(Object.keys(byField).sort()).toEqual(['agent.timeoutSeconds', 'channel', 'isActive', 'name']);
    expect(byField.channel).toContain('whatsapp-evolution');
    expect(byField['agent.timeoutSeconds']).toContain('1 and 600');
    expect(count(t)).toBe(0);
  });

  test('service-level checks (URLs, required channel fields) are reported the same way', async () => {
    const t = gateway();
    const res = await t.call('POST', '/api/v1/instances', {
      name: 'evo-bot',
      evolution_url: 'ftp://evolution.example.com',
      agent_api_url: 'not a url',
    });
    expectEnvelope(res, 400, 'VALIDATION_ERROR');
    const fields = (res.body.error.details as Array<{ field: string }>).map((d) => d.field).sort();
    expect(fields).toEqual(['agent.url', 'evolution_key', 'evolution_url']);
    expect(count(t)).toBe(0);
  });

  test('malformed JSON: 400 VALIDATION_ERROR', async () => {
    const t = gateway();
    for (const raw of ['{bad', '{"name": "x",}', '[1,', '\u0000']) {
      expectEnvelope(await t.call('POST', '/api/v1/instances', raw), 400, 'VALIDATION_ERROR');
      expectEnvelope(await t.call('PATCH', '/api/v2/settings', raw), 400, 'VALIDATION_ERROR');
    }
    expect(count(t)).toBe(0);
  });

  test('a JSON value that is not an object is rejected', async () => {
    const t = gateway();
    for (const raw of ['null', '[1,2]', '"whatsapp"', '42', 'true']) {
      expectEnvelope(await t.call('POST', '/api/v1/instances', raw), 400, 'VALIDATION_ERROR');
      expectEnvelope(await t.call('POST', '/api/v2/instances', raw), 400, 'VALIDATION_ERROR');
    }
    expect(count(t)).toBe(0);
  });

  test('a value that cannot be turned into text (own toString) is a 400, not a 500', async () => {
    // Elysia itself throws a TypeError describing this validation failure; found by the property test.
    const t = gateway();
    for (const raw of ['{"name":{"toString":1}}', '{"name":{"toString":[],"valueOf":{}},"channel":"discord"}']) {
      expectEnvelope(await t.call('POST', '/api/v2/instances', raw), 400, 'VALIDATION_ERROR');
      expectEnvelope(await t.call('POST', '/api/v1/instances', raw), 400, 'VALIDATION_ERROR');
    }
    expect(count(t)).toBe(0);
  });

  test('unknown field on create: 400 naming the field', async () => {
    const t = gateway();
    const v1 = await t.call('POST', '/api/v1/instances', {
      name: 'extra-bot',
      discord_bot_token: 'token-1234567890',
      favourite_colour: 'blue',
    });
    expectEnvelope(v1, 400, 'VALIDATION_ERROR');
    expect(v1.body.error.details).toContainEqual({ field: 'favourite_colour', problem: expect.any(String) });
    const v2 = await t.call('POST', '/api/v2/instances', {
      name: 'extra-bot',
      channel: 'discord',
      channelConfig: { discordBotToken: 'token-1234567890', nope: 1 },
    });
    expectEnvelope(v2, 400, 'VALIDATION_ERROR');
    expect(JSON.stringify(v2.body.error.details)).toContain('nope');
    // A field of another channel is not accepted either.
    const cross = await t.call('POST', '/api/v1/instances', {
      name: 'cross-bot',
      discord_bot_token: 'token-1234567890',
      slack_app_token: 'xapp-1-abc',
    });
    expectEnvelope(cross, 400, 'VALIDATION_ERROR');
    expect(cross.body.error.details).toContainEqual({
      field: 'slack_app_token',
      problem: expect.stringContaining('discord'),
    });
    expect(count(t)).toBe(0);
  });

  test('oversized body (Content-Length above the limit): 413 PAYLOAD_TOO_LARGE in the envelope', async () => {
    const t = gateway({ BODY_LIMIT_BYTES: '2048' });
    const big = JSON.stringify({ name: 'big-bot', discord_bot_token: 'x'.repeat(3000) });
    const res = await t.call('POST', '/api/v1/instances', big, { 'content-length': String(Buffer.byteLength(big)) });
    expectEnvelope(res, 413, 'PAYLOAD_TOO_LARGE');
    expect(res.body.error.details).toEqual({ limit: 2048 });
    expect(count(t)).toBe(0);
  });

  test('oversized body over a real socket: 413 in the envelope, nothing written', async () => {
    const t = gateway({ BODY_LIMIT_BYTES: '2048' });
    t.app.listen({ port: 0, hostname: '127.0.0.1' });
    try {
      const res = await fetch(`http://127.0.0.1:${t.app.server!.port}/api/v1/instances`, {
        method: 'POST',
        headers: { 'x-api-key': ADMIN_KEY, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'big-bot', discord_bot_token: 'x'.repeat(5000) }),
      });
      expectEnvelope({ status: res.status, headers: res.headers, body: await res.json() }, 413, 'PAYLOAD_TOO_LARGE');
      expect(count(t)).toBe(0);
    } finally {
      await t.app.stop(true);
    }
  });
});

describe('unexpected failures and request ids', () => {
  test('a thrown error answers 500 INTERNAL_ERROR with the request id and no stack', async () => {
    const t = gateway();
    const app = t.app.get('/api-test-boom', () => {
      throw new Error('kaboom at /secret/path.ts:12');
    });
    const res = await app.handle(new Request('http://localhost/api-test-boom'));
    const body = await res.json();
    expectEnvelope({ status: res.status, headers: res.headers, body }, 500, 'INTERNAL_ERROR');
    expect(JSON.stringify(body)).not.toContain('kaboom');
    expect(body.error.details).toEqual({ requestId: res.headers.get('x-request-id') });
  });

  test('x-request-id is on every response and an incoming one is echoed', async () => {
    const t = gateway();
    const ok = await t.call('GET', '/api/v1/instances');
    const err = await t.call('GET', '/nope');
    expect(ok.headers.get('x-request-id')).toMatch(/^\S{6,}$/);
    expect(err.headers.get('x-request-id')).toMatch(/^\S{6,}$/);
    expect(ok.headers.get('x-request-id')).not.toBe(err.headers.get('x-request-id'));
    const echoed = await t.call('GET', '/health', undefined, { 'x-request-id': 'trace-me-123' });
    expect(echoed.headers.get('x-request-id')).toBe('trace-me-123');
  });
});

describe('domain errors thrown by services', () => {
  test('a service error answers its status and envelope, with Retry-After when it carries one', async () => {
    const t = gateway();
    const cases: Array<[DomainError, number, string, string | null]> = [
      [new NotFound('Setting gone', { key: 'x' }), 404, 'NOT_FOUND', null],
      [new NotFound('No QR code yet', null, 2), 404, 'NOT_FOUND', '2'],
      [new Conflict('Already connected', { id: 'i1' }), 409, 'CONFLICT', null],
      [new Validation('name: required', [{ field: 'name', problem: 'required' }]), 400, 'VALIDATION_ERROR', null],
      [new Unauthorized('Who are you'), 401, 'UNAUTHORIZED', null],
      [new Forbidden('Not yours', { required: 'admin:*' }), 403, 'FORBIDDEN', null],
      [new RateLimited('Too many waiting', { conversationId: 'c1' }, 5), 429, 'RATE_LIMITED', '5'],
      [new Unavailable('Cluster store unavailable', { reason: 'down' }, 2), 503, 'UNAVAILABLE', '2'],
      [new Overloaded(7), 503, 'UNAVAILABLE', '7'], // details { retryAfterSeconds: 7 }
      [new ChannelFailure('Evolution connect failed: boom', { reason: 'boom' }), 502, 'CHANNEL_ERROR', null],
      [new DomainError('INTERNAL_ERROR', 'no webhook URL for this channel'), 500, 'INTERNAL_ERROR', null],
      // The header form the former ApiError took still means seconds.
      [new DomainError('UNAVAILABLE', 'retry soon', null, { 'retry-after': '3' }), 503, 'UNAVAILABLE', '3'],
    ];
    for (const [err, status, code, retryAfter] of cases) {
      t.gw.settings.get = () => {
        throw err;
      };
      const res = await t.call('GET', '/api/v2/settings/replyMode');
      expectEnvelope(res, status, code);
      expect(res.body.error.message).toBe(err.message);
      expect(res.body.error.details).toEqual(err.details ?? null);
      expect(res.headers.get('retry-after')).toBe(retryAfter);
    }
  });

  test('the real service path: an unknown setting is 404 NOT_FOUND naming the known keys', async () => {
    const t = gateway();
    const res = await t.call('GET', '/api/v2/settings/no.such.setting');
    expectEnvelope(res, 404, 'NOT_FOUND');
    expect(res.body.error.details.known).toContain('rateLimit.generalPerMinute');
    expect(res.headers.get('retry-after')).toBeNull();
  });

  test('a ChannelError that no service translated is an internal error, as before', async () => {
    const t = gateway();
    t.gw.settings.get = () => {
      throw new ChannelError('platform said 409', false, undefined, 409);
    };
    const res = await t.call('GET', '/api/v2/settings/replyMode');
    expectEnvelope(res, 500, 'INTERNAL_ERROR');
    expect(JSON.stringify(res.body)).not.toContain('platform said');
  });
});
