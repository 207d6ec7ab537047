// Request-body bounds: bodies streamed without Content-Length are counted (413 with the envelope
// over the limit), and deeply nested JSON is a 400 before validation (it was a 500).
import { describe, expect, test } from 'bun:test';
import { nestedDeeperThan } from '../../src/api/body-limits.ts';
import { buildServer } from '../../src/server.ts';
import { ADMIN_KEY, createTestGateway } from '../helpers.ts';

/** A body sent in chunks, with no Content-Length. */
function chunked(total: number, chunk = 64 * 1024): ReadableStream<Uint8Array> {
  let sent = 0;
  return new ReadableStream({
    pull(c) {
      if (sent >= total) return c.close();
      const n = Math.min(chunk, total - sent);
      sent += n;
      c.enqueue(new TextEncoder().encode(' '.repeat(n)));
    },
  });
}

describe('bodies without Content-Length', () => {
  test('over the limit: 413 with the error envelope; under it the route still gets the whole body', async () => {
    const t = createTestGateway({ BODY_LIMIT_BYTES: '65536' });
    const app = buildServer(t.gw).listen({ port: 0, hostname: '127.0.0.1', maxRequestBodySize: 65536 * 2 });
    const url = `http://127.0.0.1:${app.server!.port}/api/v2/keys`;
    try {
      for (const size of [65_537, 100_000, 200_000]) {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'x-api-key': ADMIN_KEY, 'content-type': 'application/json' },
          body: chunked(size, 8192),
          // @ts-expect-error Bun/undici streaming request option
          duplex: 'half',
        });
        expect(res.status).toBe(413);
        const body = await res.json();
        expect(body.error.code).toBe('PAYLOAD_TOO_LARGE');
        expect(body.error.details).toEqual({ limit: 65536 });
      }
      // Just under the limit: parsed and validated as usual (here: a valid key request padded with spaces).
      const json = JSON.stringify({ name: 'streamed', scopes: ['instances:read'] });
      const padded = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new TextEncoder().encode(json));
          c.enqueue(new TextEncoder().encode(' '.repeat(60_000)));
          c.close();
        },
      });
      const ok = await fetch(url, {
        method: 'POST',
        headers: { 'x-api-key': ADMIN_KEY, 'content-type': 'application/json' },
        body: padded,
        // @ts-expect-error Bun/undici streaming request option
        duplex: 'half',
      });
      expect(ok.status).toBe(201);
      expect((await ok.json()).data.name).toBe('streamed');
    } finally {
      await app.stop(true);
      await t.close();
    }
  });
});

describe('JSON nesting depth', () => {
  test('nestedDeeperThan is iterative and exact', () => {
    expect(nestedDeeperThan({ a: [1, { b: 2 }] }, 3)).toBe(false);
    expect(nestedDeeperThan({ a: [1, { b: [] }] }, 3)).toBe(true);
    expect(nestedDeeperThan('x')).toBe(false);
    let deep: unknown = [];
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(nestedDeeperThan(deep)).toBe(true);
  });

  test('100k-deep JSON to /api/v2/keys and 60k-deep settings are 400 with the envelope, not 500', async () => {
    const t = createTestGateway();
    try {
      await t.call('POST', '/api/v2/instances', { name: 'deep', channel: 'api' });
      const deep = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
      const cases: Array<[string, string, string]> = [
        ['POST', '/api/v2/keys', deep(100_000)],
        ['POST', '/api/v2/keys', `{"name":"x","scopes":${deep(100_000)}}`],
        ['PATCH', '/api/v2/instances/deep', `{"settings":{"x":${deep(60_000)}}}`],
        ['POST', '/api/v2/instances', `{"name":"y","channel":"api","agent":{"headers":${deep(5_000)}}}`],
      ];
      for (const [method, path, body] of cases) {
        const res = await t.call(method, path, body);
        expect(res.status).toBe(400);
        expect(res.body.error.code).toBe('VALIDATION_ERROR');
      }
      // Unauthenticated callers still get 401 first.
      const anon = await t.call('POST', '/api/v2/keys', deep(100_000), { 'x-api-key': '' });
      expect(anon.status).toBe(401);
    } finally {
      await t.close();
    }
  }, 30_000);
});
