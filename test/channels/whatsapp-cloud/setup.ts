// A gateway with one WhatsApp Cloud API instance pointed at the Graph API stand-in, and a way to
// post webhooks signed the way Meta signs them (HMAC-SHA256 of the raw body with the app secret).

import { expect } from 'bun:test';
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FakeAgent } from '../../fakes/agents.ts';
import { type FakeGraph, startFakeGraph } from '../../fakes/whatsapp-cloud.ts';
import { until } from '../../fixtures.ts';
import { createTestGateway } from '../../helpers.ts';

export const APP_SECRET = 'meta-app-secret-0123456789abcdef';
export const VERIFY_TOKEN = 'verify-me-please';

export function fixture(name: string): any {
  return JSON.parse(readFileSync(join(import.meta.dir, '../../fixtures/whatsapp-cloud', `${name}.json`), 'utf8'));
}

/** X-Hub-Signature-256 as Meta sends it. */
export function metaSignature(raw: string, secret = APP_SECRET): string {
  return `sha256=${createHmac('sha256', secret).update(raw).digest('hex')}`;
}

/** A text message webhook from `waId` with the given wamid. */
export function textWebhook(wamid: string, body: string, waId = '16505551234') {
  const f = fixture('text');
  const value = f.entry[0].changes[0].value;
  value.contacts[0].wa_id = waId;
  value.messages[0] = { ...value.messages[0], from: waId, id: wamid, text: { body } };
  return f;
}

/** A status webhook for a message we sent. */
export function statusWebhook(wamid: string, status: string, extra: Record<string, unknown> = {}) {
  const f = fixture(`status-${status}`);
  f.entry[0].changes[0].value.statuses[0] = { ...f.entry[0].changes[0].value.statuses[0], id: wamid, ...extra };
  return f;
}

export interface CloudSetup {
  t: ReturnType<typeof createTestGateway>;
  graph: FakeGraph;
  id: string;
  /** POSTs a body (object or raw string), signed unless `signature` says otherwise (null: no header). */
  post(body: unknown, opts?: { signature?: string | null }): ReturnType<ReturnType<typeof createTestGateway>['call']>;
  inboxRows(): number;
  close(): Promise<void>;
}

export async function setupCloud(
  opts: {
    agent?: FakeAgent;
    env?: Record<string, string>;
    channelConfig?: Record<string, unknown>;
    name?: string;
  } = {},
): Promise<CloudSetup> {
  const graph = await startFakeGraph();
  const t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20', ...opts.env });
  await t.gw.start();
  const name = opts.name ?? 'wa-cloud';
  const res = await t.call('POST', '/api/v2/instances', {
    name,
    channel: 'whatsapp-cloud',
    channelConfig: {
      phoneNumberId: graph.phoneNumberId,
      accessToken: graph.accessToken,
      appSecret: APP_SECRET,
      verifyToken: VERIFY_TOKEN,
      whatsappCloudApiUrl: graph.url,
      ...opts.channelConfig,
    },
    ...(opts.agent ? { agent: { url: opts.agent.url, type: 'json', timeoutSeconds: 10 } } : {}),
  });
  expect(res.status).toBe(201);
  const id = res.body.data.id as string;
  await until(() => t.gw.instances.get(id)?.status === 'connected', 8000, 'instance connected');
  return {
    t,
    graph,
    id,
    post(body, o = {}) {
      const raw = typeof body === 'string' ? body : JSON.stringify(body);
      const signature = o.signature === undefined ? metaSignature(raw) : o.signature;
      return t.call('POST', `/webhook/whatsapp-cloud/${name}`, raw, {
        'x-api-key': '',
        ...(signature === null ? {} : { 'x-hub-signature-256': signature }),
      });
    },
    inboxRows: () => t.gw.db.query<{ n: number }, []>('SELECT COUNT(*) AS n FROM inbox').get()!.n,
    async close() {
      await t.close();
      graph.stop();
    },
  };
}
