// GET /ws against its key over a real socket: a stream opened with an expiring key is closed at
// the expiry (4401), not at the next periodic re-check up to a minute later.
import { describe, expect, test } from 'bun:test';
import { buildServer } from '../../src/server.ts';
import { createTestGateway } from '../helpers.ts';

describe('/ws and key expiry', () => {
  test('the stream closes with 4401 when its key expires', async () => {
    const t = createTestGateway();
    const app = buildServer(t.gw).listen({ port: 0, hostname: '127.0.0.1' });
    try {
      const expiresAt = new Date(Date.now() + 1500).toISOString();
      const created = await t.call('POST', '/api/v2/keys', { name: 'short', scopes: ['messages:read'], expiresAt });
      expect(created.status).toBe(201);
      const ws = new WebSocket(`ws://127.0.0.1:${app.server!.port}/ws?apiKey=${created.body.data.key}`);
      const closed = new Promise<{ code: number; at: number }>((resolve) => {
        ws.onclose = (e) => resolve({ code: e.code, at: Date.now() });
      });
      await new Promise((resolve) => (ws.onopen = resolve));
      const result = await Promise.race([closed, Bun.sleep(6000).then(() => null)]);
      expect(result).not.toBeNull();
      expect(result!.code).toBe(4401);
      expect(result!.at).toBeGreaterThanOrEqual(Date.parse(expiresAt));
      expect(result!.at - Date.parse(expiresAt)).toBeLessThan(1000);
    } finally {
      await app.stop(true);
      await t.close();
    }
  }, 15_000);
});
