// Property test: random and near-valid bodies thrown at the create routes never cause a 500;
// every 4xx is the error envelope and writes nothing; every 201 writes exactly one row.
import { afterAll, describe, expect, test } from 'bun:test';
import { join } from 'node:path';
import fc from 'fast-check';
import { offlineGateway as createTestGateway } from './instance-fixtures.ts';

const t = createTestGateway();
// Hundreds of creates from one key: lift the instance-write rate limit so every body is judged on its merits.
t.gw.settings.setMany({ 'rateLimit.instancesWritePerMinute': 100_000 });
const ROOT = join(import.meta.dir, '..', '..');
afterAll(() => t.close());

const rows = () => (t.gw.db.query('SELECT COUNT(*) AS n FROM instances').get() as { n: number }).n;

const V1_FIELDS = [
  'name',
  'channel',
  'is_active',
  'is_default',
  'agent_api_url',
  'agent_api_key',
  'default_agent',
  'agent_timeout',
  'agent_type',
  'evolution_url',
  'evolution_key',
  'whatsapp_instance',
  'webhook_base64',
  'auto_qr',
  'discord_bot_token',
  'discord_client_id',
  'discord_permissions',
  'discord_listen_channel_ids',
  'slack_bot_token',
  'slack_signing_secret',
  'slack_app_token',
  '__proto__',
  'constructor',
];
const V2_FIELDS = ['name', 'channel', 'channelConfig', 'agent', 'settings', 'isActive', 'isDefault', '__proto__'];

const hostileString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme', maxLength: 50 }),
  fc.string({ unit: 'binary', maxLength: 50 }),
  fc.constantFrom(
    '',
    ' ',
    '\u0000',
    '\uD800',
    '<script>alert(1)</script>',
    "'; DROP TABLE instances;--",
    '../../etc/passwd',
    'javascript:alert(1)',
    'http://',
    'https://',
    'ftp://x',
    'ws://127.0.0.1',
    'whatsapp-evolution',
    'discord',
    'slack',
    '__proto__',
    'toString',
    '💥'.repeat(200),
    'a-valid-name',
    'https://agent.example.com/run',
    '1e309',
    'NaN',
  ),
  fc.string({ minLength: 3000, maxLength: 20_000 }),
);
const scalar = fc.oneof(
  hostileString,
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.constant(601),
  fc.constant(0),
  fc.constant(-1),
);
const value = fc.anything({
  key: fc.oneof(hostileString, fc.constantFrom(...V1_FIELDS, ...V2_FIELDS)),
  values: [scalar],
  maxDepth: 3,
  maxKeys: 8,
});

const v1Base = {
  name: 'prop-bot',
  evolution_url: 'https://evolution.example.com',
  evolution_key: 'EVOLUTION-KEY-0000',
  agent_api_url: 'https://agent.example.com/run',
  agent_api_key: 'agent-key-0000',
  agent_timeout: 60,
};
const v2Base = {
  name: 'prop-bot',
  channel: 'discord',
  channelConfig: { discordBotToken: 'discord-token-0000' },
  agent: { url: 'https://agent.example.com/run', timeoutSeconds: 60 },
};

/** Whatever JSON text a random value turns into (top-level undefined becomes "null"). */
const toJson = (v: unknown) => JSON.stringify(v) ?? 'null';

function bodies(fields: string[], base: Record<string, unknown>) {
  // Wholly random bodies, and valid bodies with random fields overwritten or added.
  const nearValid = fc
    .tuple(fc.dictionary(fc.constantFrom(...fields), value, { maxKeys: 4 }), fc.integer({ min: 0, max: 1_000_000 }))
    .map(([over, n]) => ({ ...base, name: `prop-${n}`, ...over }));
  return fc
    .oneof(value, fc.dictionary(fc.oneof(fc.constantFrom(...fields), hostileString), value, { maxKeys: 10 }), nearValid)
    .map(toJson);
}

async function checkOne(path: string, json: string) {
  const before = rows();
  const res = await t.app.handle(
    new Request(`http://localhost${path}`, {
      method: 'POST',
      headers: { 'x-api-key': 'test-admin-key-0123456789abcdef', 'content-type': 'application/json' },
      body: json,
    }),
  );
  const text = await res.text();
  const after = rows();
  if (res.status >= 500) throw new Error(`${res.status} for ${json.slice(0, 300)}: ${text.slice(0, 300)}`);
  if (res.status >= 400) {
    const body = JSON.parse(text);
    expect(Object.keys(body)).toEqual(['error']);
    expect(typeof body.error.code).toBe('string');
    expect(typeof body.error.message).toBe('string');
    expect('details' in body.error).toBe(true);
    // No stack trace: no frames and no paths of our files (field names are echoed, so stay specific).
    expect(text).not.toContain(ROOT);
    expect(text).not.toMatch(/\\n\s+at \S+ \(/);
    expect(after).toBe(before);
  } else {
    expect(res.status).toBe(201);
    expect(after).toBe(before + 1);
  }
  return res.status;
}

describe('random bodies to the create routes', () => {
  for (const [path, fields, base] of [
    ['/api/v1/instances', V1_FIELDS, v1Base],
    ['/api/v2/instances', V2_FIELDS, v2Base],
  ] as const) {
    test(`POST ${path}: never 500; 4xx is the envelope and writes nothing`, async () => {
      const statuses = new Map<number, number>();
      await fc.assert(
        fc.asyncProperty(bodies([...fields], base), async (json) => {
          const s = await checkOne(path, json);
          statuses.set(s, (statuses.get(s) ?? 0) + 1);
        }),
        { numRuns: 200 },
      );
      // The generator reaches both outcomes, so the "nothing written" check is not vacuous.
      expect(statuses.get(201) ?? 0).toBeGreaterThan(0);
      expect(statuses.get(400) ?? 0).toBeGreaterThan(0);
    });
  }

  test('the guide body with each field replaced by a hostile value: 400 (or 201/409), never 500', async () => {
    for (const field of V1_FIELDS) {
      for (const bad of [null, 5, -1, 1.5, true, 'x'.repeat(5000), [], {}, '\u0000', '<b>']) {
        await checkOne('/api/v1/instances', toJson({ ...v1Base, name: 'field-bot', [field]: bad }));
      }
    }
  });
});
