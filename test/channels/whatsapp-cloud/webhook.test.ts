// The Cloud API webhook through the gateway: Meta's GET subscription check, the signature over the
// raw body checked before anything is parsed or stored, batches, dedupe by wamid, and statuses
// recorded on the outbox row and the message's trace.
import { afterEach, describe, expect, test } from 'bun:test';
import {
  APP_SECRET,
  type CloudSetup,
  fixture,
  metaSignature,
  setupCloud,
  statusWebhook,
  textWebhook,
  VERIFY_TOKEN,
} from './setup.ts';

let s: CloudSetup | null = null;
afterEach(async () => {
  await s?.close();
  s = null;
});

const noAgentCalls = { PIPELINE_MAX_ATTEMPTS: '1' };

describe('subscription handshake (GET)', () => {
  test('hub.mode=subscribe with the verify token → the challenge as text/plain; anything else → 403 in the error envelope', async () => {
    s = await setupCloud({ env: noAgentCalls });
    const get = (q: string, name = 'wa-cloud') =>
      s!.t.app.handle(new Request(`http://localhost/webhook/whatsapp-cloud/${name}?${q}`));
    const ok = await get(`hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=1158201444`);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toStartWith('text/plain');
    expect(await ok.text()).toBe('1158201444');

    for (const q of [
      'hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1',
      `hub.mode=unsubscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=1`,
      'hub.mode=subscribe&hub.challenge=1',
    ]) {
      const res = await get(q);
      expect({ q, status: res.status }).toEqual({ q, status: 403 });
      const text = await res.text();
      expect(text).not.toContain('1');
      expect(JSON.parse(text).error.code).toBe('FORBIDDEN'); // the API's error envelope
    }
    // An unknown instance looks like a wrong token.
    const unknown = await get(`hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=1`, 'nope');
    expect([unknown.status, (await unknown.json()).error.code]).toEqual([403, 'FORBIDDEN']);
  });

  test('a verify token is generated when the instance has none, and shown (it is not a secret)', async () => {
    s = await setupCloud({ env: noAgentCalls, channelConfig: { verifyToken: undefined } });
    const got = await s.t.call('GET', `/api/v2/instances/${s.id}`);
    const token = got.body.data.channelConfig.verifyToken as string;
    expect(token.length).toBeGreaterThanOrEqual(20);
    const res = await s.t.app.handle(
      new Request(
        `http://localhost/webhook/whatsapp-cloud/wa-cloud?hub.mode=subscribe&hub.verify_token=${token}&hub.challenge=77`,
      ),
    );
    expect(await res.text()).toBe('77');
    // Stable across edits.
    await s.t.call('PATCH', `/api/v2/instances/${s.id}`, { channelConfig: { wabaId: '102290129340398' } });
    expect((await s.t.call('GET', `/api/v2/instances/${s.id}`)).body.data.channelConfig.verifyToken).toBe(token);
  });
});

describe('signature (POST)', () => {
  test('missing, wrong, or over a body altered by one byte → 401 and no inbox row', async () => {
    s = await setupCloud({ env: noAgentCalls });
    const raw = JSON.stringify(textWebhook('wamid.SIG0001', 'hello'));
    const altered = raw.replace('hello', 'hellp');
    expect(altered.length).toBe(raw.length);
    const cases: Array<[string, string, string | null]> = [
      ['missing', raw, null],
      ['wrong secret', raw, metaSignature(raw, 'not-the-app-secret')],
      ['not hex', raw, 'sha256=zz'],
      ['sha1 form', raw, `sha1=${metaSignature(raw).slice(7)}`],
      ['altered body', altered, metaSignature(raw)],
    ];
    for (const [what, body, signature] of cases) {
      const res = await s.post(body, { signature });
      expect({ what, status: res.status }).toEqual({ what, status: 401 });
    }
    // Not even parsed: a forged body that is not JSON is still a 401, not a 400.
    expect((await s.post('{not json', { signature: metaSignature('{not json', 'x') })).status).toBe(401);
    await Bun.sleep(50);
    expect(s.inboxRows()).toBe(0);
    expect(s.graph.sent).toHaveLength(0);

    const good = await s.post(raw);
    expect(good.status).toBe(200);
    expect(good.body.status).toBe('received');
    expect(s.inboxRows()).toBe(1);
    expect(APP_SECRET).not.toBe('not-the-app-secret');
  });

  test('an unknown instance answers like a bad signature', async () => {
    s = await setupCloud({ env: noAgentCalls });
    const raw = JSON.stringify(textWebhook('wamid.SIG0002', 'hi'));
    const res = await s.t.call('POST', '/webhook/whatsapp-cloud/nope', raw, {
      'x-api-key': '',
      'x-hub-signature-256': metaSignature(raw),
    });
    expect(res.status).toBe(401);
  });
});

describe('messages and statuses', () => {
  test('a batch: every message of every entry and change is stored before the 200; redelivery dedupes by wamid', async () => {
    s = await setupCloud({ env: noAgentCalls });
    const res = await s.post(fixture('batch'));
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('received');
    expect(res.body.message).toContain('3 of 3 messages accepted');
    expect(res.body.message).toContain('another phone number');
    const rows = s.t.gw.db
      .query<{ provider_message_id: string; sender_id: string; text: string }, []>(
        'SELECT provider_message_id, sender_id, text FROM inbox ORDER BY seq',
      )
      .all();
    expect(rows.map((r) => r.text)).toEqual(['first', 'second', 'third, from another user']);
    expect(rows[0]!.sender_id).toBe('16505551234@s.whatsapp.net');
    expect(res.body.trace_id).toBeTruthy();

    const again = await s.post(fixture('batch'));
    expect(again.status).toBe(200);
    expect(again.body.status).toBe('duplicate');
    expect(s.inboxRows()).toBe(3);
  });

  test('statuses of a sent message land on its outbox row (furthest state) and as trace steps', async () => {
    s = await setupCloud({ env: noAgentCalls });
    const sent = await s.t.call('POST', '/api/v2/messages', {
      instanceId: 'wa-cloud',
      to: '+1 650 555 1234',
      text: 'Your order shipped',
    });
    expect(sent.status).toBe(200);
    const wamid = sent.body.data.externalMessageId as string;
    expect(wamid).toStartWith('wamid.FAKE');
    expect(s.graph.sent[0]!.body).toMatchObject({
      to: '16505551234',
      type: 'text',
      text: { body: 'Your order shipped' },
    });

    for (const st of ['sent', 'delivered', 'read', 'delivered', 'read']) {
      const res = await s.post(statusWebhook(wamid, st));
      expect(res.status).toBe(200);
      expect(res.body.status).toBe('ignored'); // no message in it
    }
    const outbox = s.t.gw.db
      .query<{ delivery_status: string; delivery_status_at: string }, [string]>(
        'SELECT delivery_status, delivery_status_at FROM outbox WHERE platform_message_id = ?',
      )
      .get(wamid)!;
    expect(outbox.delivery_status).toBe('read');
    expect(outbox.delivery_status_at).toBe(new Date(1749416400000).toISOString());
    const trace = await s.t.call('GET', `/api/v2/traces/${sent.body.data.messageId}`);
    const receipts = trace.body.data.steps.filter((x: { step: string }) => x.step.startsWith('delivery_'));
    // A late or repeated receipt adds nothing.
    expect(receipts.map((x: { step: string }) => x.step)).toEqual([
      'delivery_sent',
      'delivery_delivered',
      'delivery_read',
    ]);
    expect(receipts[2].details).toMatchObject({ platform_message_id: wamid, part: 0 });

    // A receipt for a message this instance never sent changes nothing.
    expect((await s.post(statusWebhook('wamid.UNKNOWN', 'read'))).status).toBe(200);
  });

  test('a failed status records the error code on the trace', async () => {
    s = await setupCloud({ env: noAgentCalls });
    const sent = await s.t.call('POST', '/api/v2/messages', {
      instanceId: 'wa-cloud',
      to: '16505551234',
      text: 'late',
    });
    const wamid = sent.body.data.externalMessageId as string;
    await s.post(statusWebhook(wamid, 'failed'));
    const trace = await s.t.call('GET', `/api/v2/traces/${sent.body.data.messageId}`);
    const failed = trace.body.data.steps.find((x: { step: string }) => x.step === 'delivery_failed');
    expect(failed.status).toBe('error');
    expect(failed.details.error_code).toBe(131047);
    expect(failed.details.error).toContain('template');
  });
});
