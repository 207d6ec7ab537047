// Media per channel through the whole gateway, each against its stand-in. WhatsApp Cloud is the
// issue's "done when": a voice note with transcription on reaches a JSON agent as the transcript
// plus a working signed URL to the audio, and an agent answering with an image makes the Graph API
// stand-in receive an image message. Baileys: the stand-in socket's downloadMedia. Telegram:
// getFile, then the file path. Discord: the attachment's CDN URL; an image reply is uploaded.
// Slack: a file_share event's url_private_download, fetched with the bot token.
import { afterEach, describe, expect, test } from 'bun:test';
import { fixture, setupCloud, textWebhook } from '../channels/whatsapp-cloud/setup.ts';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { fakeSocketFactory } from '../fakes/baileys-socket.ts';
import { discordThroughGateway } from '../fakes/discord/gateway.ts';
import { DM_CHANNEL_ID } from '../fakes/discord/server.ts';
import { eventCallback, signRequest } from '../fakes/slack/events.ts';
import { FakeSlack } from '../fakes/slack/server.ts';
import { FakeTelegram } from '../fakes/telegram/server.ts';
import { message, messageUpdate } from '../fakes/telegram/updates.ts';
import { until } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';
import { oggOpus, png, startFakeTranscriber } from '../media/fixtures.ts';

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function jsonAgent(): FakeAgent {
  const agent = startFakeAgent({ protocol: 'json', reply: (m) => `heard: ${m}` });
  cleanups.push(() => agent.stop());
  return agent;
}

type TestGateway = ReturnType<typeof createTestGateway>;

async function fetchSigned(t: TestGateway, url: string) {
  const u = new URL(url);
  const res = await t.app.handle(new Request(`http://localhost${u.pathname}${u.search}`));
  return { status: res.status, bytes: new Uint8Array(await res.arrayBuffer()), type: res.headers.get('content-type') };
}

async function finished(t: TestGateway, traceId: string) {
  await until(
    async () => (await t.call('GET', `/api/v2/traces/${traceId}`)).body.data.status === 'completed',
    8000,
    'message completed',
  );
  return (await t.call('GET', `/api/v2/traces/${traceId}`)).body.data;
}

describe('WhatsApp Cloud (done when)', () => {
  test('voice note + transcription on → JSON agent gets the transcript and a working signed URL; an image reply reaches the Graph stand-in as an image message', async () => {
    const stt = startFakeTranscriber('where is my order?');
    cleanups.push(() => stt.stop());
    const picture = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: () => new Response(png(3), { headers: { 'content-type': 'image/png' } }),
    });
    cleanups.push(() => picture.stop(true));
    const agent = jsonAgent();
    agent.setBehaviour({
      replyFields: () => ({
        media: [{ url: `http://127.0.0.1:${picture.port}/map.png`, type: 'image', caption: 'here' }],
      }),
    });
    const s = await setupCloud({ agent });
    cleanups.push(() => s.close());
    const patched = await s.t.call('PATCH', `/api/v2/instances/${s.id}`, {
      media: { transcription: { url: stt.url, apiKey: 'sk-test-transcribe', model: 'whisper-1' } },
    });
    expect(patched.status).toBe(200);

    const voice = fixture('audio');
    const mediaId = voice.entry[0].changes[0].value.messages[0].audio.id as string;
    s.graph.media.set(mediaId, { bytes: oggOpus(), mimeType: 'audio/ogg; codecs=opus' });
    const res = await s.post(voice);
    expect(res.status).toBe(200);
    const trace = await finished(s.t, res.body.trace_id);

    // The Graph API was asked for the media by its id, then the short-lived URL, with the token.
    expect(s.graph.calls.some((c) => c.path.endsWith(`/${mediaId}`))).toBe(true);
    expect(s.graph.calls.some((c) => c.path === `/media-download/${mediaId}` && c.token === s.graph.accessToken)).toBe(
      true,
    );
    expect(agent.requests).toHaveLength(1);
    const body = agent.requests[0]!.body;
    expect(body.message).toBe('where is my order?');
    expect(body.transcribed).toBe(true);
    expect(body.media).toHaveLength(1);
    expect(body.media[0]).toMatchObject({ type: 'audio', transcript: 'where is my order?' });
    expect(body.media[0].mimeType).toStartWith('audio/ogg');
    const audio = await fetchSigned(s.t, body.media[0].url);
    expect(audio.status).toBe(200);
    expect([...audio.bytes]).toEqual([...oggOpus()]);
    const steps = trace.steps.map((x: { step: string }) => x.step);
    expect(steps).toContain('media_fetched');
    expect(steps).toContain('media_transcribed');
    expect(steps.indexOf('media_transcribed')).toBeLessThan(steps.indexOf('agent_called'));

    // The reply: its text, then the image uploaded and sent by the media id Meta gave.
    expect(s.graph.sent.map((m) => m.body.type)).toEqual(['text', 'image']);
    const image = s.graph.sent[1]!.body;
    expect(image.image.caption).toBe('here');
    const upload = s.graph.uploads.get(image.image.id);
    expect(upload).toBeDefined();
    expect([...upload!.bytes]).toEqual([...png(3)]);

    // A text message afterwards still has no media at all.
    const plain = await s.post(textWebhook('wamid.MEDIA-TEXT', 'thanks'));
    await finished(s.t, plain.body.trace_id);
    expect(agent.requests[1]!.body.media).toBeUndefined();
  });

  test('an image by media id is stored and given to the agent with its sniffed type', async () => {
    const agent = jsonAgent();
    const s = await setupCloud({ agent });
    cleanups.push(() => s.close());
    const img = fixture('image');
    const mediaId = img.entry[0].changes[0].value.messages[0].image.id as string;
    s.graph.media.set(mediaId, { bytes: png(8), mimeType: 'image/jpeg' });
    const res = await s.post(img);
    const trace = await finished(s.t, res.body.trace_id);
    expect(trace.steps.find((x: { step: string }) => x.step === 'media_fetched').details.mime_type).toBe('image/png');
    const m = agent.requests[0]!.body.media[0];
    expect(m.type).toBe('image');
    expect((await fetchSigned(s.t, m.url)).bytes).toEqual(png(8));
  });
});

describe('WhatsApp (Baileys)', () => {
  test('an image is downloaded through the socket, stored, and given to the agent by URL', async () => {
    const agent = jsonAgent();
    const sockets = fakeSocketFactory();
    const t = createTestGateway(
      { PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20', TYPING_DELAY_MS: '0' },
      { pipeline: { adapterDeps: { baileysSocketFactory: sockets.factory } } },
    );
    cleanups.push(() => t.close());
    await t.gw.start();
    const res = await t.call('POST', '/api/v2/instances', {
      name: 'wa',
      channel: 'whatsapp-baileys',
      channelConfig: { whatsappSendRatePerSecond: 100 },
      agent: { url: agent.url, type: 'json', timeoutSeconds: 5 },
    });
    expect(res.status).toBe(201);
    await until(() => sockets.sockets.length > 0);
    const sock = sockets.last();
    sock.emitOpen();
    await until(() => t.gw.instances.get(res.body.data.id)?.status === 'connected');
    sock.media.set('BAI-IMG-1', png(2));
    // The first download fails (e.g. a network blip): the message retries, it is not lost.
    sock.downloadErrors.push(Object.assign(new Error('socket hang up'), { output: { statusCode: 503 } }));
    sock.emitMessages([
      {
        key: { remoteJid: '5511988887777@s.whatsapp.net', id: 'BAI-IMG-1', fromMe: false },
        messageTimestamp: Math.floor(Date.now() / 1000),
        pushName: 'Ana',
        message: {
          imageMessage: {
            url: 'https://mmg.whatsapp.net/x',
            mimetype: 'image/jpeg',
            caption: 'my receipt',
            fileLength: 30,
            mediaKey: new Uint8Array([1, 2, 3, 4]),
            directPath: '/v/t62/x',
          },
        },
      },
    ]);
    await until(() => agent.requests.length >= 1, 8000, 'agent called');
    const downloads = sock.calls.filter((c) => c.kind === 'downloadMedia');
    expect(downloads).toHaveLength(2);
    const body = agent.requests[0]!.body;
    expect(body.message).toBe('my receipt');
    expect(body.media[0]).toMatchObject({ type: 'image', mimeType: 'image/png', caption: 'my receipt' });
    expect((await fetchSigned(t, body.media[0].url)).bytes).toEqual(png(2));
    // The media key survived the inbox (BufferJSON) as bytes.
    const row = t.gw.db.query<{ payload_json: string }, []>('SELECT payload_json FROM inbox').get()!;
    expect(row.payload_json).toContain('"mediaKey"');
    await until(() => sock.sent().length >= 1, 8000, 'reply sent');
  });
});

describe('Telegram', () => {
  test('a voice message: getFile, the file path, stored, given to the agent', async () => {
    const agent = jsonAgent();
    const tg = new FakeTelegram().start();
    cleanups.push(() => tg.stop());
    const t = createTestGateway({
      PUBLIC_URL: 'https://gw.example.test',
      PIPELINE_RETRY_BASE_MS: '5',
      PIPELINE_RETRY_MAX_MS: '20',
      TYPING_DELAY_MS: '0',
    });
    cleanups.push(() => t.close());
    await t.gw.start();
    const res = await t.call('POST', '/api/v2/instances', {
      name: 'tg',
      channel: 'telegram',
      channelConfig: { telegramBotToken: tg.token, telegramApiUrl: tg.apiUrl, telegramMode: 'webhook' },
      agent: { url: agent.url, type: 'json', timeoutSeconds: 10 },
    });
    expect(res.status).toBe(201);
    await until(() => t.gw.instances.get(res.body.data.id)?.status === 'connected', 8000);
    tg.files.set('VOICE-FILE-1', oggOpus());
    const m = message('', {
      extra: {
        text: undefined,
        voice: { file_id: 'VOICE-FILE-1', file_unique_id: 'uq1', duration: 2, mime_type: 'audio/ogg', file_size: 64 },
      },
    });
    const hook = await t.call('POST', '/webhook/telegram/tg', JSON.stringify(messageUpdate(m)), {
      'x-telegram-bot-api-secret-token': tg.webhook?.secretToken ?? '',
      'x-api-key': '',
    });
    expect(hook.status).toBe(200);
    await finished(t, hook.body.trace_id);
    expect(tg.callsOf('getFile')[0]!.params.file_id).toBe('VOICE-FILE-1');
    expect(tg.callsOf('file')[0]!.params.path).toBe('VOICE-FILE-1');
    const body = agent.requests[0]!.body;
    expect(body.message).toBe('[audio]');
    expect(body.media[0]).toMatchObject({ type: 'audio', sizeBytes: 64 });
    expect(body.media[0].url).toStartWith('https://gw.example.test/media/');
    expect((await fetchSigned(t, body.media[0].url)).bytes).toEqual(oggOpus());
  });
});

describe('Discord', () => {
  test('an attachment is fetched from its URL and given to the agent; an image reply is uploaded as a file', async () => {
    const cdn = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: () => new Response(png(12), { headers: { 'content-type': 'image/png' } }),
    });
    cleanups.push(() => cdn.stop(true));
    const agent = jsonAgent();
    agent.setBehaviour({ replyFields: () => ({ media: [{ base64: Buffer.from(png(13)).toString('base64') }] }) });
    const t = await discordThroughGateway({ url: agent.url, type: 'json' }, cleanups);
    const { discord } = t;
    discord.dispatchMessage({
      content: 'look',
      attachments: [
        {
          id: '1300000000000000001',
          filename: 'photo.png',
          size: png(12).byteLength,
          url: `http://127.0.0.1:${cdn.port}/attachments/1/photo.png?ex=1&hm=2`,
          proxy_url: `http://127.0.0.1:${cdn.port}/attachments/1/photo.png`,
          content_type: 'image/png',
        },
      ],
    });
    const posts = () =>
      discord.sent.filter((c) => c.method === 'POST' && c.path === `/channels/${DM_CHANNEL_ID}/messages`);
    await until(() => posts().length >= 2, 8000, 'reply text and image');
    const body = agent.requests[0]!.body;
    expect(body.message).toBe('look');
    expect(body.media[0]).toMatchObject({ type: 'image', mimeType: 'image/png', filename: 'photo.png' });
    expect((await fetchSigned(t, body.media[0].url)).bytes).toEqual(png(12));
    expect(posts()[0]!.body.content).toBe('heard: look');
  });
});

describe('Slack', () => {
  const SECRET = 'media-signing-secret-0123456789abcdef';
  const BOT_TOKEN = 'xoxb-media-bot-token';

  async function setupSlack(standInToken = BOT_TOKEN) {
    const agent = jsonAgent();
    const slack = new FakeSlack({ botToken: standInToken }).start();
    cleanups.push(() => slack.stop());
    const t = createTestGateway({
      PUBLIC_URL: 'https://gw.example.test',
      PIPELINE_RETRY_BASE_MS: '5',
      PIPELINE_RETRY_MAX_MS: '20',
      TYPING_DELAY_MS: '0',
    });
    cleanups.push(() => t.close());
    await t.gw.start();
    const res = await t.call('POST', '/api/v2/instances', {
      name: 'sl',
      channel: 'slack',
      channelConfig: { slackBotToken: BOT_TOKEN, slackSigningSecret: SECRET, slackApiUrl: slack.apiUrl },
      agent: { url: agent.url, type: 'json', timeoutSeconds: 10 },
    });
    expect(res.status).toBe(201);
    const id = res.body.data.id as string;
    await until(() => t.gw.instances.get(id)?.status === 'connected', 8000);
    const post = (body: unknown, headers: Record<string, string> = {}) => {
      const raw = JSON.stringify(body);
      return t.call('POST', '/webhook/slack/sl', raw, { ...signRequest(SECRET, raw), 'x-api-key': '', ...headers });
    };
    return { t, id, agent, slack, post };
  }

  const fileShare = (slack: FakeSlack, fileId: string, ts: string, text: string) => ({
    type: 'message',
    subtype: 'file_share',
    user: 'UHUMAN01',
    text,
    ts,
    channel: 'D0000001',
    channel_type: 'im',
    upload: true,
    files: [slack.fileObject(fileId)],
  });

  test('a file_share event: downloaded with the bot token, stored once, given to the agent by a working signed URL', async () => {
    const s = await setupSlack();
    s.slack.files.set('F0000001', { bytes: png(21), mimetype: 'image/png', name: 'chart.png' });
    const body = eventCallback(fileShare(s.slack, 'F0000001', '1765375900.000100', 'what does this show?'), {
      eventId: 'EvFILE00001',
    });
    const res = await s.post(body);
    expect(res.status).toBe(200);
    expect(res.body.message).toBe('accepted');
    const trace = await finished(s.t, res.body.trace_id);
    // Slack redelivers the same event: one inbox row, no second download.
    const retry = await s.post(body, { 'x-slack-retry-num': '1', 'x-slack-retry-reason': 'http_timeout' });
    expect(retry.body).toMatchObject({ trace_id: res.body.trace_id, message: 'duplicate' });

    expect(s.slack.downloads).toEqual([{ fileId: 'F0000001', token: BOT_TOKEN, served: true }]);
    const fetched = trace.steps.filter((x: { step: string }) => x.step === 'media_fetched');
    expect(fetched).toHaveLength(1);
    expect(fetched[0]).toMatchObject({ status: 'success', details: { source: 'channel', mime_type: 'image/png' } });
    expect(s.agent.requests).toHaveLength(1);
    const agentBody = s.agent.requests[0]!.body;
    expect(agentBody.message).toBe('what does this show?');
    expect(agentBody.media).toHaveLength(1);
    expect(agentBody.media[0]).toMatchObject({ type: 'image', mimeType: 'image/png', filename: 'chart.png' });
    expect(agentBody.media[0].url).toStartWith('https://gw.example.test/media/');
    const got = await fetchSigned(s.t, agentBody.media[0].url);
    expect(got.status).toBe(200);
    expect([...got.bytes]).toEqual([...png(21)]);
    const rows = s.t.gw.db.query<{ sha256: string }, []>('SELECT sha256 FROM media').all();
    expect(rows).toHaveLength(1);
    await until(() => s.slack.callsOf('chat.postMessage').length >= 1, 8000, 'reply posted');
    expect(s.slack.callsOf('chat.postMessage')[0]!.params.text).toBe('heard: what does this show?');
  });

  test('a token the stand-in does not accept: a failed media_fetched step, the placeholder reaches the agent, the instance runs on', async () => {
    const s = await setupSlack('xoxb-some-other-token');
    s.slack.files.set('F0000002', { bytes: png(22), mimetype: 'image/png', name: 'scan.png' });
    const res = await s.post(eventCallback(fileShare(s.slack, 'F0000002', '1765375901.000100', '')));
    expect(res.status).toBe(200);
    const trace = await finished(s.t, res.body.trace_id);
    expect(s.slack.downloads).toEqual([{ fileId: 'F0000002', token: BOT_TOKEN, served: false }]);
    const fetched = trace.steps.filter((x: { step: string }) => x.step === 'media_fetched');
    expect(fetched).toHaveLength(1);
    expect(fetched[0].status).toBe('error');
    expect(fetched[0].details.error).toContain('sign-in page');
    expect(fetched[0].details.placeholder).toBe(true);
    const agentBody = s.agent.requests[0]!.body;
    expect(agentBody.message).toBe('[image]');
    expect(agentBody.media ?? []).toHaveLength(0);
    expect(s.t.gw.instances.get(s.id)?.status).toBe('connected');
  });
});
