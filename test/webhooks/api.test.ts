// The /api/v2/webhooks resource (and its /api/v1 alias): secrets shown on create and rotation
// only, scopes, instance-bound keys, URL rules, test events, the delivery log and redelivery,
// against a loopback receiver that verifies every request with standardwebhooks.
import { afterEach, describe, expect, test } from 'bun:test';
import { createTestGateway } from '../helpers.ts';
import { type Receiver, startReceiver, until } from './receiver.ts';

let t: ReturnType<typeof createTestGateway> | null = null;
let rx: Receiver | null = null;
afterEach(async () => {
  await t?.close();
  rx?.stop();
  t = null;
  rx = null;
});

function gateway() {
  t = createTestGateway();
  t.gw.webhooks.start();
  return t;
}

describe('webhook subscriptions API', () => {
  test('create shows the whsec_ secret once; list, get and patch mask it; delete answers success', async () => {
    const t = gateway();
    const c = await t.call('POST', '/api/v2/webhooks', {
      url: 'https://crm.example.com/hooks',
      events: ['message.received', 'message.sent'],
      description: 'CRM',
    });
    expect(c.status).toBe(201);
    expect(c.body.data).toMatchObject({
      url: 'https://crm.example.com/hooks',
      events: ['message.received', 'message.sent'],
      instanceIds: null,
      active: true,
      description: 'CRM',
    });
    const secret: string = c.body.data.secret;
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const id = c.body.data.id;
    const list = await t.call('GET', '/api/v2/webhooks');
    expect(list.body.items).toHaveLength(1);
    expect(list.body.items[0].secret).toBe(`whsec_****${secret.slice(-4)}`);
    expect(JSON.stringify(list.body)).not.toContain(secret);
    const got = await t.call('GET', `/api/v2/webhooks/${id}`);
    expect(got.body.data.secret).not.toBe(secret);
    const v1 = await t.call('GET', `/api/v1/webhooks/${id}`);
    expect(v1.status).toBe(200);
    expect(v1.body.data.id).toBe(id);
    const p = await t.call('PATCH', `/api/v2/webhooks/${id}`, { events: [], active: false });
    expect(p.body.data).toMatchObject({ events: [], active: false });
    expect(p.body.data.secret).not.toBe(secret);
    expect((await t.call('DELETE', `/api/v1/webhooks/${id}`)).body).toEqual({ success: true });
    expect((await t.call('GET', `/api/v2/webhooks/${id}`)).status).toBe(404);
  });

  test('URLs: http(s) only; link-local and metadata addresses are always refused; unknown event types too', async () => {
    const t = gateway();
    for (const url of [
      'ftp://example.com/x',
      'not a url',
      'http://169.254.169.254/latest/meta-data',
      'http://[fd00:ec2::254]/',
      'http://metadata.google.internal/',
    ]) {
      const r = await t.call('POST', '/api/v2/webhooks', { url });
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe('VALIDATION_ERROR');
    }
    expect((await t.call('POST', '/api/v2/webhooks', { url: 'https://x.example/', events: ['nope'] })).status).toBe(
      400,
    );
    const ok = await t.call('POST', '/api/v2/webhooks', { url: 'https://x.example/' });
    expect(
      (await t.call('PATCH', `/api/v2/webhooks/${ok.body.data.id}`, { url: 'http://169.254.169.254/' })).status,
    ).toBe(400);
  });

  test('scopes: webhooks:read lists, webhooks:write changes; other keys are refused', async () => {
    const t = gateway();
    const made = await t.call('POST', '/api/v2/webhooks', { url: 'https://x.example/' });
    const reader = t.gw.keys.create({ name: 'r', scopes: ['webhooks:read'], instanceIds: null }).key;
    const writer = t.gw.keys.create({ name: 'w', scopes: ['webhooks:write'], instanceIds: null }).key;
    const other = t.gw.keys.create({ name: 'o', scopes: ['events:read'], instanceIds: null }).key;
    expect((await t.call('GET', '/api/v2/webhooks', undefined, { 'x-api-key': reader })).status).toBe(200);
    expect(
      (await t.call('GET', `/api/v2/webhooks/${made.body.data.id}/deliveries`, undefined, { 'x-api-key': reader }))
        .status,
    ).toBe(200);
    expect(
      (await t.call('POST', '/api/v2/webhooks', { url: 'https://y.example/' }, { 'x-api-key': reader })).status,
    ).toBe(403);
    expect(
      (await t.call('POST', '/api/v2/webhooks', { url: 'https://y.example/' }, { 'x-api-key': writer })).status,
    ).toBe(201);
    expect((await t.call('GET', '/api/v1/webhooks', undefined, { 'x-api-key': other })).status).toBe(403);
  });

  test('instance-bound keys see and create only subscriptions limited to their instances', async () => {
    const t = gateway();
    const a = (await t.call('POST', '/api/v2/instances', { name: 'alpha', channel: 'api' })).body.data.id;
    const b = (await t.call('POST', '/api/v2/instances', { name: 'beta', channel: 'api' })).body.data.id;
    const all = await t.call('POST', '/api/v2/webhooks', { url: 'https://all.example/' });
    const onB = await t.call('POST', '/api/v2/webhooks', { url: 'https://b.example/', instanceIds: ['beta'] });
    expect(onB.body.data.instanceIds).toEqual([b]);
    const key = t.gw.keys.create({ name: 'alpha', scopes: ['webhooks:read', 'webhooks:write'], instanceIds: [a] }).key;
    const h = { 'x-api-key': key };
    // Without instanceIds: limited to the key's instances.
    const mine = await t.call('POST', '/api/v2/webhooks', { url: 'https://a.example/' }, h);
    expect(mine.status).toBe(201);
    expect(mine.body.data.instanceIds).toEqual([a]);
    expect((await t.call('POST', '/api/v2/webhooks', { url: 'https://a.example/', instanceIds: null }, h)).status).toBe(
      403,
    );
    expect(
      (await t.call('POST', '/api/v2/webhooks', { url: 'https://a.example/', instanceIds: ['beta'] }, h)).status,
    ).toBe(404);
    const list = await t.call('GET', '/api/v2/webhooks', undefined, h);
    expect(list.body.items.map((s: any) => s.id)).toEqual([mine.body.data.id]);
    for (const other of [all, onB]) {
      expect((await t.call('GET', `/api/v2/webhooks/${other.body.data.id}`, undefined, h)).status).toBe(404);
      expect((await t.call('DELETE', `/api/v2/webhooks/${other.body.data.id}`, undefined, h)).status).toBe(404);
      expect((await t.call('POST', `/api/v2/webhooks/${other.body.data.id}/rotate-secret`, undefined, h)).status).toBe(
        404,
      );
    }
    // The admin sees all three.
    expect((await t.call('GET', '/api/v2/webhooks')).body.items).toHaveLength(3);
  });

  test('a credential in the receiver URL is shown once, masked after; the masked URL sent back keeps the real one', async () => {
    const t = gateway();
    const url = 'https://crm.example.com/hooks?token=s3cr3t-receiver-token&team=7';
    const c = await t.call('POST', '/api/v2/webhooks', { url });
    expect(c.body.data.url).toBe(url);
    const id = c.body.data.id;
    const shown = (await t.call('GET', `/api/v2/webhooks/${id}`)).body.data.url;
    expect(shown).toBe('https://crm.example.com/hooks?token=****&team=7');
    expect(JSON.stringify((await t.call('GET', '/api/v2/webhooks')).body)).not.toContain('s3cr3t');
    const patched = await t.call('PATCH', `/api/v2/webhooks/${id}`, { url: shown, description: 'CRM' });
    expect(patched.status).toBe(200);
    expect(patched.body.data).toMatchObject({ url: shown, description: 'CRM' });
    // The rotation answer shows it in full again: the stored URL was kept.
    expect((await t.call('POST', `/api/v2/webhooks/${id}/rotate-secret`)).body.data.url).toBe(url);
  });

  test('cursor pages of subscriptions', async () => {
    const t = gateway();
    for (let i = 0; i < 5; i++) await t.call('POST', '/api/v2/webhooks', { url: `https://h${i}.example/` });
    const p1 = await t.call('GET', '/api/v2/webhooks?limit=2');
    expect(p1.body.meta.hasMore).toBe(true);
    const p2 = await t.call('GET', `/api/v2/webhooks?limit=2&cursor=${p1.body.meta.cursor}`);
    const p3 = await t.call('GET', `/api/v2/webhooks?limit=2&cursor=${p2.body.meta.cursor}`);
    const urls = [...p1.body.items, ...p2.body.items, ...p3.body.items].map((s: any) => s.url);
    expect(new Set(urls).size).toBe(5);
    expect(p3.body.meta).toMatchObject({ hasMore: false, cursor: null });
  });

  test('test event, rotation (both signatures), delivery log and redelivery with the same webhook-id', async () => {
    const t = gateway();
    rx = startReceiver();
    const c = await t.call('POST', '/api/v2/webhooks', { url: rx.url, events: ['message.sent'] });
    const id = c.body.data.id;
    rx.secrets = [c.body.data.secret];
    // A test event goes out even though the filter names only message.sent.
    const test1 = await t.call('POST', `/api/v2/webhooks/${id}/test`);
    expect(test1.status).toBe(202);
    expect(test1.body.data).toMatchObject({ eventType: 'webhook.test', status: 'pending' });
    await until(() => rx!.got.length === 1, 5000, 'the test event');
    expect(rx.got[0]).toMatchObject({ type: 'webhook.test', webhookId: test1.body.data.webhookId });
    expect(rx.got[0].data.subscriptionId).toBe(id);
    await until(
      () => t.gw.webhooks.outbox.get(test1.body.data.id)?.status === 'delivered',
      2000,
      'the delivery recorded',
    );
    const log = await t.call('GET', `/api/v2/webhooks/${id}/deliveries`);
    expect(log.body.items[0]).toMatchObject({
      id: test1.body.data.id,
      status: 'delivered',
      attempts: 1,
      lastStatusCode: 200,
      lastError: null,
      nextAttemptAt: null,
    });

    // Rotation: the new secret once; both secrets sign during the grace period.
    const old = c.body.data.secret;
    const rot = await t.call('POST', `/api/v2/webhooks/${id}/rotate-secret`);
    expect(rot.body.data.secret).toMatch(/^whsec_/);
    expect(rot.body.data.secret).not.toBe(old);
    expect(rot.body.data.previousSecretExpiresAt).not.toBeNull();
    expect((await t.call('GET', `/api/v2/webhooks/${id}`)).body.data.secret).not.toBe(rot.body.data.secret);
    rx.secrets = [old, rot.body.data.secret]; // each must verify on its own
    const test2 = await t.call('POST', `/api/v2/webhooks/${id}/test`);
    await until(() => rx!.got.length === 2, 5000, 'the second test event');
    expect(rx.got[1].signatures).toHaveLength(2);

    // Redeliver the first: same webhook-id and body, verified with the current secrets.
    const re = await t.call('POST', `/api/v1/webhooks/${id}/deliveries/${test1.body.data.id}/redeliver`);
    expect(re.status).toBe(202);
    expect(re.body.data.webhookId).toBe(test1.body.data.webhookId);
    await until(() => rx!.got.length === 3, 5000, 'the redelivery');
    expect(rx.got[2].webhookId).toBe(rx.got[0].webhookId);
    expect(rx.got[2].data).toEqual(rx.got[0].data);
    expect(rx.got[2].timestamp).toBe(rx.got[0].timestamp);
    expect(test2.body.data.webhookId).not.toBe(test1.body.data.webhookId);
    expect(rx.unverified).toEqual([]);

    expect((await t.call('POST', `/api/v2/webhooks/${id}/deliveries/nope/redeliver`)).status).toBe(404);
    const filtered = await t.call('GET', `/api/v2/webhooks/${id}/deliveries?status=failed`);
    expect(filtered.body.items).toEqual([]);
  });

  test('a 410 answer disables the subscription (visible in the API); redelivery waits for it to be enabled', async () => {
    const t = gateway();
    rx = startReceiver();
    rx.answer = () => new Response('gone', { status: 410 });
    const c = await t.call('POST', '/api/v2/webhooks', { url: rx.url });
    rx.secrets = [c.body.data.secret];
    const d = await t.call('POST', `/api/v2/webhooks/${c.body.data.id}/test`);
    await until(() => t.gw.webhooks.subscriptions.get(c.body.data.id)?.active === 0, 5000, 'disabled');
    const s = await t.call('GET', `/api/v2/webhooks/${c.body.data.id}`);
    expect(s.body.data).toMatchObject({ active: false, disabledReason: 'the receiver answered 410 Gone' });
    const re = await t.call('POST', `/api/v2/webhooks/${c.body.data.id}/deliveries/${d.body.data.id}/redeliver`);
    expect(re.status).toBe(409);
    rx.answer = () => new Response('ok');
    await t.call('PATCH', `/api/v2/webhooks/${c.body.data.id}`, { active: true });
    expect(
      (await t.call('POST', `/api/v2/webhooks/${c.body.data.id}/deliveries/${d.body.data.id}/redeliver`)).status,
    ).toBe(202);
    await until(() => t.gw.webhooks.outbox.get(d.body.data.id)?.status === 'delivered', 5000, 'redelivered');
  });
});
