// Scopes are enforced, not decorative: every /api operation in the OpenAPI document refuses a key
// that lacks its scope (403) and admits a key holding exactly that scope (anything but 403).
import { describe, expect, test } from 'bun:test';
import { routeClass, scopeFor } from '../../src/api/scopes.ts';
import { hasScope, SCOPES } from '../../src/services/keys.ts';
import { createTestGateway } from '../helpers.ts';

const METHODS = ['get', 'post', 'put', 'patch', 'delete'] as const;

describe('scope table', () => {
  test('every /api operation: without its scope 403, with exactly its scope not 403', async () => {
    const t = createTestGateway();
    const doc = (await t.call('GET', '/docs/json')).body;
    const ops: Array<{ method: string; path: string; route: string }> = [];
    for (const [path, item] of Object.entries<Record<string, unknown>>(doc.paths)) {
      if (!path.startsWith('/api/')) continue;
      for (const m of METHODS)
        if (item[m]) ops.push({ method: m.toUpperCase(), path, route: path.replace(/\{([^}]+)\}/g, ':$1') });
    }
    expect(ops.length).toBeGreaterThan(30);
    const failures: string[] = [];
    for (const op of ops) {
      const scope = scopeFor(op.method, op.route);
      if (!scope) {
        failures.push(`${op.method} ${op.route}: not in ROUTE_SCOPES`);
        continue;
      }
      const url = op.path.replace(/\{[^}]+\}/g, 'no-such-thing');
      const body = op.method === 'GET' || op.method === 'DELETE' ? undefined : {};
      const without = SCOPES.filter((s) => !hasScope({ keyId: '', name: '', scopes: [s], instanceIds: null }, scope));
      const denied = t.gw.keys.create({ name: `without ${scope}`, scopes: [...without] }).key;
      const allowed = t.gw.keys.create({ name: `with ${scope}`, scopes: [scope] }).key;
      const a = await t.call(op.method, url, body, { 'x-api-key': denied });
      if (a.status !== 403 || a.body?.error?.code !== 'FORBIDDEN')
        failures.push(`${op.method} ${op.route}: key without ${scope} got ${a.status}`);
      const b = await t.call(op.method, url, body, { 'x-api-key': allowed });
      if (b.status === 403 || b.status >= 500)
        failures.push(
          `${op.method} ${op.route}: key with ${scope} got ${b.status} ${JSON.stringify(b.body).slice(0, 120)}`,
        );
    }
    expect(failures).toEqual([]);
    await t.close();
  });

  test('unknown and missing keys get 401 before any scope check', async () => {
    const t = createTestGateway();
    for (const path of ['/api/v2/instances', '/api/v2/keys', '/api/v2/access/rules']) {
      const none = await t.call('GET', path, undefined, { 'x-api-key': '' });
      expect(none.status).toBe(401);
      const wrong = await t.call('GET', path, undefined, { 'x-api-key': 'sb_not-a-key' });
      expect(wrong.status).toBe(401);
      expect(wrong.body.error.code).toBe('UNAUTHORIZED');
    }
    await t.close();
  });
});

describe('instance-bound keys', () => {
  test('listings show only their instances; other instances are NOT_FOUND in v1 and v2', async () => {
    const t = createTestGateway();
    const a = await t.call('POST', '/api/v2/instances', { name: 'alpha', channel: 'api' });
    const b = await t.call('POST', '/api/v2/instances', { name: 'beta', channel: 'api' });
    const { key } = t.gw.keys.create({
      name: 'alpha only',
      scopes: ['instances:*', 'access:*'],
      instanceIds: [a.body.data.id],
    });
    const h = { 'x-api-key': key };
    expect((await t.call('GET', '/api/v2/instances', undefined, h)).body.items.map((i: any) => i.name)).toEqual([
      'alpha',
    ]);
    expect((await t.call('GET', '/api/v1/instances', undefined, h)).body.map((i: any) => i.name)).toEqual(['alpha']);
    expect((await t.call('GET', `/api/v2/instances/${b.body.data.id}`, undefined, h)).status).toBe(404);
    expect((await t.call('GET', '/api/v1/instances/beta', undefined, h)).status).toBe(404);
    expect((await t.call('PATCH', `/api/v2/instances/${b.body.data.id}`, { isActive: false }, h)).status).toBe(404);
    expect((await t.call('DELETE', '/api/v1/instances/beta', undefined, h)).status).toBe(404);
    expect((await t.call('GET', '/api/v1/instances/beta/access-control', undefined, h)).status).toBe(404);
    expect(t.gw.instances.get(b.body.data.id)!.isActive).toBe(true);
    expect((await t.call('GET', '/api/v1/instances/alpha/access-control', undefined, h)).status).toBe(200);
    await t.close();
  });
});

describe('rate-limit classes', () => {
  test('route classes come from the scope table', () => {
    expect(routeClass('POST', '/api/v2/dead-letters/:id/replay')).toBe('messages.send');
    expect(routeClass('GET', '/api/v2/traces')).toBe('events.list');
    expect(routeClass('POST', '/api/v2/instances')).toBe('instances.write');
    expect(routeClass('DELETE', '/api/v1/instances/:name')).toBe('instances.write');
    expect(routeClass('GET', '/api/v2/instances')).toBe('general');
    expect(routeClass('GET', '/api/v2/settings')).toBe('general');
  });
});
