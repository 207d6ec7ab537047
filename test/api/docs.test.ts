// OpenAPI: /docs/json is a valid document generated from the route schemas; /docs works offline.
import { afterAll, describe, expect, test } from 'bun:test';
import SwaggerParser from '@apidevtools/swagger-parser';
import { scopeFor } from '../../src/api/scopes.ts';
import { offlineGateway as createTestGateway } from './instance-fixtures.ts';

const t = createTestGateway();
afterAll(() => t.close());

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head'] as const;

async function docJson() {
  const res = await t.call('GET', '/docs/json', undefined, { 'x-api-key': '' });
  expect(res.status).toBe(200);
  return res.body as any;
}

describe('/docs/json', () => {
  test('is a valid OpenAPI 3.1 document (swagger-parser)', async () => {
    const doc = await docJson();
    expect(doc.openapi).toMatch(/^3\.1\./);
    // validate() dereferences in place; give it a copy.
    const api = await SwaggerParser.validate(structuredClone(doc));
    expect(api.info.title).toBe('Switchboard');
  });

  test('declares the x-api-key security scheme and uses it by default', async () => {
    const doc = await docJson();
    const schemes = doc.components.securitySchemes;
    const entry = Object.entries(schemes).find(
      ([, s]: [string, any]) => s.type === 'apiKey' && s.in === 'header' && s.name === 'x-api-key',
    );
    expect(entry).toBeDefined();
    expect(doc.security).toContainEqual({ [entry![0]]: [] });
  });

  test('every operation has a tag, a summary and described responses; bodies have schemas', async () => {
    const doc = await docJson();
    const problems: string[] = [];
    let ops = 0;
    for (const [path, item] of Object.entries<any>(doc.paths)) {
      for (const m of METHODS) {
        const op = item[m];
        if (!op) continue;
        ops++;
        const where = `${m.toUpperCase()} ${path}`;
        if (!op.tags?.length) problems.push(`${where}: no tag`);
        if (!op.summary) problems.push(`${where}: no summary`);
        if (!op.responses || !Object.keys(op.responses).length) problems.push(`${where}: no responses`);
        for (const [code, r] of Object.entries<any>(op.responses ?? {})) {
          if (!r.description) problems.push(`${where} ${code}: response without description`);
        }
        // PUT/PATCH change something described by a body; POST actions (rotate, replay) may have none.
        if (['put', 'patch'].includes(m) && path.startsWith('/api/') && !op.requestBody)
          problems.push(`${where}: no request body schema`);
      }
    }
    expect(problems).toEqual([]);
    expect(ops).toBeGreaterThanOrEqual(14);
  });

  test('lists the foundation routes', async () => {
    const doc = await docJson();
    const ops = Object.entries<any>(doc.paths).flatMap(([p, item]) =>
      METHODS.filter((m) => item[m]).map((m) => `${m.toUpperCase()} ${p}`),
    );
    for (const op of [
      'GET /health',
      'GET /ready',
      'GET /api/v1/instances',
      'POST /api/v1/instances',
      'GET /api/v1/instances/{name}',
      'PUT /api/v1/instances/{name}',
      'DELETE /api/v1/instances/{name}',
      'GET /api/v2/instances',
      'POST /api/v2/instances',
      'GET /api/v2/instances/{id}',
      'PATCH /api/v2/instances/{id}',
      'DELETE /api/v2/instances/{id}',
      'POST /api/v2/instances/{id}/rotate-webhook-secret',
      'GET /api/v2/settings',
      'PATCH /api/v2/settings',
      'GET /api/v2/settings/{key}',
      'PUT /api/v2/settings/{key}',
    ])
      expect(ops).toContain(op);
    // Create routes document their bodies.
    expect(doc.paths['/api/v1/instances'].post.requestBody).toBeDefined();
    expect(doc.paths['/api/v2/instances'].post.requestBody).toBeDefined();
  });

  test('every /api operation has an entry in the scope table; public routes declare no security', async () => {
    const doc = await docJson();
    const missing: string[] = [];
    for (const [path, item] of Object.entries<any>(doc.paths)) {
      for (const m of METHODS) {
        if (!item[m]) continue;
        if (path.startsWith('/api/')) {
          if (!scopeFor(m, path.replace(/\{(\w+)\}/g, ':$1'))) missing.push(`${m.toUpperCase()} ${path}`);
        } else if (path === '/health' || path === '/ready') {
          expect(item[m].security).toEqual([]);
        }
      }
    }
    expect(missing).toEqual([]);
  });
});

describe('/docs UI', () => {
  test('references no external host, and every asset it loads answers 200', async () => {
    const res = await t.app.handle(new Request('http://localhost/docs'));
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    const html = await res.text();
    // No absolute URL anywhere in the page (scripts, styles, fonts, spec).
    expect(html.match(/(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}/gi) ?? []).toEqual([]);

    const assets = [...html.matchAll(/<(?:script|link)\b[^>]*\b(?:src|href)="([^"]+)"/gi)].map((m) => m[1]);
    expect(assets.length).toBeGreaterThanOrEqual(2);
    // The spec URL handed to the UI, resolved like a browser would.
    const specUrl = html.match(/"url"\s*:\s*"([^"]+)"/)?.[1];
    expect(specUrl).toBeDefined();
    for (const ref of [...assets, specUrl!]) {
      const url = new URL(ref, 'http://localhost/docs');
      expect(url.host).toBe('localhost');
      const asset = await t.app.handle(new Request(url));
      expect({ ref, status: asset.status }).toEqual({ ref, status: 200 });
      expect((await asset.arrayBuffer()).byteLength).toBeGreaterThan(100);
    }
    expect(assets.some((a) => a.endsWith('.js'))).toBe(true);
    expect(assets.some((a) => a.endsWith('.css'))).toBe(true);
  });

  test('unknown asset names answer 404 in the envelope (no file system access)', async () => {
    for (const name of ['package.json', '..%2Fpackage.json', 'index.html']) {
      const res = await t.call('GET', `/docs/assets/${name}`, undefined, { 'x-api-key': '' });
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('NOT_FOUND');
    }
  });
});
