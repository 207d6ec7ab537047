// Every send kind against the Graph API stand-in (which checks path, bearer token and body), and
// what Meta's errors mean: 131047 (24-hour window) fails without retry and says to send a template,
// rate limits are retried with backoff, 190 marks the instance as needing a new token.
import { afterEach, describe, expect, test } from 'bun:test';
import { downloadMedia } from '../../../src/channels/whatsapp-cloud/client.ts';
import { interactiveOf } from '../../../src/channels/whatsapp-cloud/interactive.ts';
import { type FakeAgent, startFakeAgent } from '../../fakes/agents.ts';
import { startFakeGraph } from '../../fakes/whatsapp-cloud.ts';
import { until } from '../../fixtures.ts';
import { type CloudSetup, setupCloud, textWebhook } from './setup.ts';

let s: CloudSetup | null = null;
let agent: FakeAgent | null = null;
afterEach(async () => {
  await s?.close();
  await agent?.stop();
  s = null;
  agent = null;
});

const messagesPath = (g: { version: string; phoneNumberId: string }) => `/${g.version}/${g.phoneNumberId}/messages`;
const sendCalls = (c: CloudSetup) =>
  c.graph.calls.filter((x) => x.method === 'POST' && x.path === messagesPath(c.graph) && x.body?.status !== 'read');

async function withAgent(reply: (m: string) => string, opts: Parameters<typeof setupCloud>[0] = {}) {
  agent = startFakeAgent({ protocol: 'json', reply });
  s = await setupCloud({ agent, ...opts });
  return s;
}

describe('agent replies', () => {
  test('text: to the wa_id, bearer token, messaging_product, preview_url off unless the instance turns it on', async () => {
    const c = await withAgent((m) => `echo: ${m}`);
    await c.post(textWebhook('wamid.IN0001', 'hi there'));
    await until(() => c.graph.sent.length === 1, 8000);
    const call = sendCalls(c)[0]!;
    expect(call.token).toBe(c.graph.accessToken);
    expect(call.body).toEqual({
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: '16505551234',
      type: 'text',
      text: { body: 'echo: hi there', preview_url: false },
    });
    expect(agent!.requests[0]!.body.user_id).toBe('whatsapp:+16505551234');

    await c.t.call('PATCH', `/api/v2/instances/${c.id}`, { channelConfig: { previewUrl: true } });
    await until(() => c.t.gw.instances.get(c.id)?.status === 'connected', 8000);
    await c.post(textWebhook('wamid.IN0002', 'see https://example.com'));
    await until(() => c.graph.sent.length === 2, 8000);
    expect(c.graph.sent[1]!.body.text).toEqual({ body: 'echo: see https://example.com', preview_url: true });
  });

  test('mark as read with the typing indicator while the agent works', async () => {
    agent = startFakeAgent({ protocol: 'json', reply: () => 'done', latencyMs: 150 });
    s = await setupCloud({ agent, env: { TYPING_DELAY_MS: '0' } });
    await s.post(textWebhook('wamid.IN0003', 'think hard'));
    await until(() => s!.graph.sent.length === 1, 8000);
    expect(s.graph.reads).toEqual([
      { messaging_product: 'whatsapp', status: 'read', message_id: 'wamid.IN0003', typing_indicator: { type: 'text' } },
    ]);
    const read = s.graph.calls.findIndex((x) => x.body?.status === 'read');
    const send = s.graph.calls.findIndex((x) => x.body?.type === 'text');
    expect(read).toBeLessThan(send);
  });

  test('interactive buttons and lists from a reply in the JSON shape', async () => {
    const buttons = JSON.stringify({
      text: 'Which size?',
      footer: 'Tap one',
      buttons: [
        { id: 'size-s', title: 'Small' },
        { id: 'size-l', title: 'Large' },
      ],
    });
    const listReply = JSON.stringify({
      text: 'Pick a time',
      list: {
        button: 'Times',
        sections: [{ title: 'Tomorrow', rows: [{ id: 'slot-10', title: '10:00', description: 'morning' }] }],
      },
    });
    const c = await withAgent((m) => (m === 'size' ? buttons : listReply));
    await c.post(textWebhook('wamid.IN0004', 'size'));
    await until(() => c.graph.sent.length === 1, 8000);
    expect(c.graph.sent[0]!.body).toMatchObject({
      to: '16505551234',
      type: 'interactive',
      interactive: {
        type: 'button',
        body: { text: 'Which size?' },
        footer: { text: 'Tap one' },
        action: {
          buttons: [
            { type: 'reply', reply: { id: 'size-s', title: 'Small' } },
            { type: 'reply', reply: { id: 'size-l', title: 'Large' } },
          ],
        },
      },
    });
    await c.post(textWebhook('wamid.IN0005', 'time'));
    await until(() => c.graph.sent.length === 2, 8000);
    expect(c.graph.sent[1]!.body.interactive).toEqual({
      type: 'list',
      body: { text: 'Pick a time' },
      action: {
        button: 'Times',
        sections: [{ title: 'Tomorrow', rows: [{ id: 'slot-10', title: '10:00', description: 'morning' }] }],
      },
    });
  });

  test('outside the 24-hour window (131047): one attempt, no retry; the trace says to send a template', async () => {
    const c = await withAgent(() => 'a late answer');
    c.graph.failSends(131047, { times: 5 });
    const res = await c.post(textWebhook('wamid.IN0006', 'hello?'));
    const traceId = res.body.trace_id as string;
    await until(() => c.t.gw.db.query('SELECT 1 FROM dead_letters').get() !== null, 8000);
    expect(sendCalls(c)).toHaveLength(1);
    const trace = await c.t.call('GET', `/api/v2/traces/${traceId}`);
    const steps = trace.body.data.steps as Array<{ step: string; details: any }>;
    expect(steps.some((x) => x.step === 'retry_scheduled')).toBe(false);
    const dead = steps.find((x) => x.step === 'dead_lettered')!;
    expect(dead.details.retryable).toBe(false);
    expect(dead.details.reason).toContain('24-hour');
    expect(dead.details.reason).toContain('POST /api/v2/messages/template');
    expect(steps.find((x) => x.step === 'cloud_api_called')!.details.error).toContain('131047');
  });

  test('rate limits (130429, 131056, 80007) are retried with backoff, then sent', async () => {
    const c = await withAgent(() => 'eventually');
    c.graph.failSends(130429);
    c.graph.failSends(131056);
    c.graph.failSends(80007);
    const res = await c.post(textWebhook('wamid.IN0007', 'busy?'));
    await until(() => c.graph.sent.length === 1, 8000);
    expect(sendCalls(c)).toHaveLength(4);
    const trace = await c.t.call('GET', `/api/v2/traces/${res.body.trace_id}`);
    const retries = trace.body.data.steps.filter((x: { step: string }) => x.step === 'retry_scheduled');
    expect(retries.map((x: { details: { error: string } }) => x.details.error.match(/Meta error (\d+)/)![1])).toEqual([
      '130429',
      '131056',
      '80007',
    ]);
    expect(agent!.requests).toHaveLength(1);
  });

  test('a rejected token (190) marks the instance as needing new credentials', async () => {
    const c = await withAgent(() => 'x');
    c.graph.failSends(190, { status: 401 });
    await c.post(textWebhook('wamid.IN0008', 'hello'));
    await until(() => c.t.gw.instances.get(c.id)?.status === 'logged_out', 8000);
    const st = (await c.t.call('GET', `/api/v2/instances/${c.id}/status`)).body.data;
    expect(st.status).toBe('logged_out');
    expect(st.reason).toContain('set a new access_token');
    expect(sendCalls(c)).toHaveLength(1);
  });
});

describe('API sends', () => {
  test('reply-to, reaction, media by link, media upload', async () => {
    s = await setupCloud({ env: { PIPELINE_MAX_ATTEMPTS: '1' } });
    const c = s;
    const ok = async (path: string, body: Record<string, unknown>) => {
      const res = await c.t.call('POST', path, { instanceId: 'wa-cloud', to: '+16505551234', ...body });
      expect({ path, status: res.status, body: res.body }).toMatchObject({ path, status: 200 });
      return res;
    };
    await ok('/api/v2/messages', { text: 'About that', replyTo: 'wamid.ORIGINAL' });
    expect(c.graph.sent.at(-1)!.body).toMatchObject({ context: { message_id: 'wamid.ORIGINAL' }, type: 'text' });

    await ok('/api/v2/messages/reaction', { messageId: 'wamid.ORIGINAL', emoji: '👍' });
    expect(c.graph.sent.at(-1)!.body).toEqual({
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: '16505551234',
      type: 'reaction',
      reaction: { message_id: 'wamid.ORIGINAL', emoji: '👍' },
    });

    await ok('/api/v2/messages/media', {
      mediaType: 'document',
      mediaUrl: 'https://files.example.com/invoice.pdf',
      filename: 'invoice.pdf',
      caption: 'Your invoice',
    });
    expect(c.graph.sent.at(-1)!.body).toMatchObject({
      type: 'document',
      document: { link: 'https://files.example.com/invoice.pdf', filename: 'invoice.pdf', caption: 'Your invoice' },
    });

    const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3]);
    await ok('/api/v2/messages/media', { mediaType: 'image', mediaBase64: png.toString('base64'), caption: 'A chart' });
    const upload = c.graph.calls.find((x) => x.path === `/${c.graph.version}/${c.graph.phoneNumberId}/media`)!;
    expect(upload.token).toBe(c.graph.accessToken);
    expect(upload.body).toEqual({ messaging_product: 'whatsapp', type: 'image/jpeg' });
    const [mediaId, stored] = [...c.graph.uploads.entries()][0]!;
    expect(Buffer.from(stored.bytes).equals(png)).toBe(true);
    expect(c.graph.sent.at(-1)!.body).toMatchObject({ type: 'image', image: { id: mediaId, caption: 'A chart' } });
  });

  test('templates: POST /api/v2/messages/template; other channels are refused', async () => {
    s = await setupCloud({ env: { PIPELINE_MAX_ATTEMPTS: '1' } });
    const components = [{ type: 'body', parameters: [{ type: 'text', text: 'Sheena' }] }];
    const res = await s.t.call('POST', '/api/v2/messages/template', {
      instanceId: 'wa-cloud',
      to: '+16505551234',
      name: 'order_update',
      language: 'en_US',
      components,
    });
    expect(res.status).toBe(200);
    expect(res.body.data.externalMessageId).toStartWith('wamid.FAKE');
    expect(s.graph.sent.at(-1)!.body).toEqual({
      messaging_product: 'whatsapp',
      recipient_type: 'individual',
      to: '16505551234',
      type: 'template',
      template: { name: 'order_update', language: { code: 'en_US' }, components },
    });

    const evo = await s.t.call('POST', '/api/v2/instances', {
      name: 'evo',
      channel: 'whatsapp-evolution',
      channelConfig: { evolutionUrl: 'http://127.0.0.1:9', evolutionKey: 'k' },
    });
    expect(evo.status).toBe(201);
    const refused = await s.t.call('POST', '/api/v2/messages/template', {
      instanceId: 'evo',
      to: '+16505551234',
      name: 'order_update',
      language: 'en_US',
    });
    expect(refused.status).toBe(400);
    expect(refused.body.error.message).toContain('no message templates');
  });

  test('a free-form API send outside the window is a 502 whose reason says to send a template', async () => {
    s = await setupCloud();
    s.graph.failSends(131047);
    const res = await s.t.call('POST', '/api/v2/messages', {
      instanceId: 'wa-cloud',
      to: '16505551234',
      text: 'hello again',
    });
    expect(res.status).toBe(502);
    expect(res.body.error.message).toContain('send a template');
    expect(sendCalls(s)).toHaveLength(1);
  });

  test('groups are not Cloud API recipients', async () => {
    s = await setupCloud({ env: { PIPELINE_MAX_ATTEMPTS: '1' } });
    const res = await s.t.call('POST', '/api/v2/messages', { instanceId: 'wa-cloud', to: '1203630@g.us', text: 'hi' });
    expect(res.status).toBe(400);
  });
});

describe('client and reply shapes', () => {
  test('inbound media download by media id (lookup, then the URL with the bearer token)', async () => {
    const graph = await startFakeGraph();
    try {
      graph.media.set('1003383421387256', { bytes: new Uint8Array([1, 2, 3, 4]), mimeType: 'image/jpeg' });
      const cfg = {
        baseUrl: graph.url,
        version: graph.version,
        phoneNumberId: graph.phoneNumberId,
        accessToken: graph.accessToken,
      };
      const got = await downloadMedia(cfg, '1003383421387256', { fetch });
      expect([...got.bytes]).toEqual([1, 2, 3, 4]);
      expect(got.mimeType).toBe('image/jpeg');
      expect(graph.calls.map((c) => [c.path, c.token])).toEqual([
        [`/${graph.version}/1003383421387256`, graph.accessToken],
        ['/media-download/1003383421387256', graph.accessToken],
      ]);
      await expect(downloadMedia(cfg, '1003383421387256', { fetch, maxBytes: 2 })).rejects.toThrow(
        'larger than 2 bytes',
      );
    } finally {
      graph.stop();
    }
  });

  test('interactive JSON: prose and other JSON are text; a broken interactive reply fails without retry', () => {
    expect(interactiveOf('Just text')).toBeNull();
    expect(interactiveOf('{"text": "json but no buttons"}')).toBeNull();
    expect(interactiveOf('{not json')).toBeNull();
    const broken = [
      { text: 'x', buttons: [] },
      { text: 'x', buttons: [{ id: 'a', title: 'A title that is far too long' }] },
      { text: 'x', buttons: [1, 2, 3, 4].map((i) => ({ id: `${i}`, title: `${i}` })) },
      { text: 'x', buttons: [{ id: 'a', title: 'A' }], list: {} },
      { buttons: [{ id: 'a', title: 'A' }] },
      {
        text: 'x',
        list: {
          button: 'B',
          sections: [{ rows: Array.from({ length: 11 }, (_, i) => ({ id: `${i}`, title: `${i}` })) }],
        },
      },
    ];
    for (const b of broken) {
      let err: any = null;
      try {
        interactiveOf(JSON.stringify(b));
      } catch (e) {
        err = e;
      }
      expect({ b, retryable: err?.retryable, message: String(err?.message) }).toMatchObject({
        b,
        retryable: false,
        message: expect.stringContaining('interactive reply not sent'),
      });
    }
  });
});
