// Hostile input per route family (instances, access rules, keys, settings): random bodies of the
// wrong types, huge and odd strings, injection shapes and path traversal in ids. Properties: no
// 500, every 4xx is the error envelope, and a 4xx leaves the database exactly as it was.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import fc from 'fast-check';
import { createTestGateway } from '../helpers.ts';

const t = createTestGateway();
let instanceId = '';
let ruleId = '';
let keyId = '';

beforeAll(async () => {
  // Property runs send hundreds of requests; keep them clear of the rate limiter.
  await t.call('PATCH', '/api/v2/settings', {
    'rateLimit.generalPerMinute': 1_000_000,
    'rateLimit.instancesWritePerMinute': 1_000_000,
    'rateLimit.messagesSendPerMinute': 1_000_000,
    'rateLimit.eventsListPerMinute': 1_000_000,
  });
  instanceId = (await t.call('POST', '/api/v2/instances', { name: 'target', channel: 'api' })).body.data.id;
  ruleId = (await t.call('POST', '/api/v2/access/rules', { instanceId, type: 'deny', criteria: { phone: '+1*' } })).body
    .data.id;
  keyId = (await t.call('POST', '/api/v2/keys', { name: 'target', scopes: ['instances:read'] })).body.data.id;
});
afterAll(() => t.close());

/** Everything a 4xx must not change (usage counters and the audit log change on every request by design). */
function snapshot(): string {
  const q = (sql: string) => t.gw.db.query(sql).all();
  return JSON.stringify([
    q(
      'SELECT id, name, channel, is_active, is_default, agent_json, config_json, settings_json, webhook_secret FROM instances ORDER BY id',
    ),
    q('SELECT * FROM access_rules ORDER BY id'),
    q('SELECT id, name, key_hash, scopes_json, instance_ids_json, expires_at, revoked_at FROM api_keys ORDER BY id'),
    q('SELECT key, value_json FROM settings ORDER BY key'),
    q('SELECT * FROM conversation_pauses ORDER BY instance_id, chat_key'),
  ]);
}

const hostileString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    '\uD800',
    '../../etc/passwd',
    '..%2f..%2fetc%2fpasswd',
    "'; DROP TABLE access_rules;--",
    "' OR '1'='1",
    '{"$ne":null}',
    '__proto__',
    'constructor',
    'javascript:alert(1)',
    'file:///etc/passwd',
    '<img src=x onerror=alert(1)>',
    '*',
    '+5511*',
    'allow',
    'deny',
    'reply',
    'block',
    'admin:*',
    '*:*',
    '2999-01-01T00:00:00Z',
    'not-a-date',
    '💥'.repeat(300),
    '%00',
  ),
  fc.string({ minLength: 5000, maxLength: 30_000 }),
);
const FIELDS = [
  'instanceId',
  'type',
  'criteria',
  'priority',
  'action',
  'replyMessage',
  'expiresAt',
  'platformUserId',
  'phone',
  'channel',
  'chatKind',
  'groupId',
  'name',
  'scopes',
  'instanceIds',
  'value',
  'settings',
  'agent',
  'channelConfig',
  'isActive',
  'phone_number',
  'rateLimit.generalPerMinute',
  'audit.retentionDays',
  '__proto__',
  'constructor',
];
const scalar = fc.oneof(
  hostileString,
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(-1),
  fc.constant(1e308),
);
const value = fc.anything({
  key: fc.oneof(hostileString, fc.constantFrom(...FIELDS)),
  values: [scalar],
  maxDepth: 3,
  maxKeys: 6,
});
const body = fc.oneof(
  fc.dictionary(fc.constantFrom(...FIELDS), value, { maxKeys: 6 }),
  value,
  fc.constantFrom('{"type":', 'null', '[]', '"x"', '{"criteria":{"__proto__":{"admin":true}}}'),
);
const id = fc.oneof(
  hostileString.filter((s) => s.length < 2000),
  fc.constantFrom('..', '../keys', '%2e%2e', 'target/../..'),
);

function encodeId(raw: string): string {
  const s = raw.toWellFormed(); // a URL cannot carry lone surrogates at all
  // Half the time raw (traversal shapes reach the router as typed), half encoded.
  return s.length % 2 ? encodeURIComponent(s) : s.replace(/[?#\s%]/g, encodeURIComponent);
}

async function check(method: string, path: string, payload: unknown) {
  const before = snapshot();
  const res = await t.call(method, path, payload);
  expect(res.status).toBeLessThan(500);
  if (res.status >= 400) {
    expect(res.body).toMatchObject({ error: { code: expect.any(String), message: expect.any(String) } });
    expect(snapshot()).toBe(before);
  }
  return res;
}

const RUNS = { numRuns: 60 };

describe('property: hostile input never breaks a route nor changes state on 4xx', () => {
  test('access rules', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          'POST /rules',
          'PATCH /rules/:id',
          'PATCH /rules/:hostile',
          'DELETE /rules/:hostile',
          'GET /rules/:hostile',
          'POST /check',
          'GET /rules?',
        ),
        body,
        id,
        async (op, b, hid) => {
          const [method, p] = op.split(' ');
          const path = `/api/v2/access${p
            .replace(':id', ruleId)
            .replace(':hostile', encodeId(hid))
            .replace('?', `?instanceId=${encodeURIComponent(hid.toWellFormed())}`)}`;
          const res = await check(method, path, method === 'GET' || method === 'DELETE' ? undefined : b);
          if (method === 'DELETE' && res.status === 200) throw new Error(`deleted via hostile id ${hid}`);
        },
      ),
      RUNS,
    );
    expect(t.gw.access.getRule(ruleId)).not.toBeNull();
  }, 30_000);

  test('v1 access-control', async () => {
    await fc.assert(
      fc.asyncProperty(body, id, async (b, name) => {
        await check(
          'POST',
          `/api/v1/instances/${fc.sample(fc.constantFrom('target', encodeId(name)), 1)[0]}/access-control`,
          b,
        );
      }),
      RUNS,
    );
  }, 30_000);

  test('keys', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          'POST ',
          'PATCH /:id',
          'PATCH /:hostile',
          'DELETE /:hostile',
          'POST /:hostile/revoke',
          'GET /:hostile/audit',
        ),
        body,
        id,
        async (op, b, hid) => {
          const [method, p] = op.split(' ');
          const path = `/api/v2/keys${p.replace(':id', keyId).replace(':hostile', encodeId(hid))}`;
          const res = await check(method, path, method === 'GET' || method === 'DELETE' ? undefined : b);
          // A created key is fine (2xx) but must never echo anything but its own new key.
          if (res.status === 201) expect(res.body.data.key).toMatch(/^sb_/);
        },
      ),
      RUNS,
    );
  }, 30_000);

  test('settings', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('PATCH ', 'PUT /:hostile', 'PUT /audit.retentionDays', 'GET /:hostile'),
        body,
        id,
        async (op, b, hid) => {
          const [method, p] = op.split(' ');
          await check(
            method,
            `/api/v2/settings${p.replace(':hostile', encodeId(hid))}`,
            method === 'GET' ? undefined : b,
          );
        },
      ),
      RUNS,
    );
  }, 30_000);

  test('instances', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(
          'PATCH /api/v2/instances/:id',
          'PATCH /api/v2/instances/:hostile',
          'DELETE /api/v2/instances/:hostile',
          'PUT /api/v1/instances/target',
          'PUT /api/v1/instances/:hostile',
          'GET /api/v2/instances/:hostile',
        ),
        body,
        id,
        async (op, b, hid) => {
          const [method, p] = op.split(' ');
          const path = p.replace(':id', instanceId).replace(':hostile', encodeId(hid));
          const res = await check(method, path, method === 'GET' || method === 'DELETE' ? undefined : b);
          if (method === 'DELETE' && res.status === 200) throw new Error(`deleted via hostile id ${hid}`);
        },
      ),
      RUNS,
    );
    expect(t.gw.instances.get(instanceId)).not.toBeNull();
  }, 30_000);
});
