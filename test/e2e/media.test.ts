// Media through a whole gateway on Evolution stand-ins: an image the webhook carries as base64 is
// stored once (by content) and reaches a JSON agent by signed URL and, with webhook_base64, inline;
// without base64 the gateway asks Evolution's media endpoint (retrying a failure); oversize and
// refused types stay placeholders with a trace step; a voice note is transcribed once through a
// stand-in transcription server (and falls back when it fails); an agent's reply media is fetched
// (http(s) only) and sent through Evolution's sendMedia.
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'bun:test';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { type FakeEvolution, startFakeEvolution } from '../fakes/evolution.ts';
import { until } from '../fixtures.ts';
import { createTestGateway } from '../helpers.ts';
import { elf, oggOpus, png, startFakeTranscriber } from '../media/fixtures.ts';

let evo: FakeEvolution;
let agent: FakeAgent;
let t: ReturnType<typeof createTestGateway> | null = null;

beforeAll(async () => {
  evo = await startFakeEvolution({ apikey: 'EVO-MEDIA-KEY' });
  agent = startFakeAgent({ protocol: 'json', reply: (m) => `got: ${m}` });
});
afterAll(async () => {
  evo.stop();
  await agent.stop();
});
afterEach(async () => {
  await t?.close();
  t = null;
  evo.reset();
  evo.media.clear();
  agent.requests.length = 0;
  agent.setBehaviour({ replyFields: null, failTimes: 0 });
});

async function setup(extra: Record<string, unknown> = {}) {
  t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20' });
  await t.gw.start();
  const created = await t.call('POST', '/api/v1/instances', {
    name: 'wa-media',
    evolution_url: evo.url,
    evolution_key: evo.apikey,
    agent_api_url: agent.url,
    agent_type: 'json',
    agent_timeout: 10,
    ...extra,
  });
  expect(created.status).toBe(201);
  const token = new URL(created.body.webhook_url).searchParams.get('token')!;
  const post = (data: unknown) =>
    t!.call('POST', `/webhook/evolution/wa-media?token=${token}`, {
      event: 'messages.upsert',
      instance: 'wa-media',
      data,
    });
  return { post, id: created.body.id as string };
}

function imageUpsert(id: string, bytes: Uint8Array | null, caption?: string) {
  return {
    key: { remoteJid: '5511999990001@s.whatsapp.net', fromMe: false, id },
    pushName: 'Ana',
    messageTimestamp: 1769830000,
    message: {
      // The sender's word (jpeg) is not what the bytes are (png).
      imageMessage: { mimetype: 'image/jpeg', ...(caption ? { caption } : {}), fileLength: bytes?.byteLength ?? 10 },
      ...(bytes ? { base64: Buffer.from(bytes).toString('base64') } : {}),
    },
  };
}

async function trace(traceId: string) {
  await until(async () => ['completed', 'failed', 'dead_lettered'].includes((await traceOf(traceId)).status), 8000);
  return traceOf(traceId);
}
async function traceOf(traceId: string) {
  return (await t!.call('GET', `/api/v2/traces/${traceId}`)).body.data;
}
const stepsNamed = (tr: any, name: string) => tr.steps.filter((s: any) => s.step === name);

async function fetchSigned(url: string) {
  const u = new URL(url);
  const res = await t!.app.handle(new Request(`http://localhost${u.pathname}${u.search}`));
  return { status: res.status, bytes: new Uint8Array(await res.arrayBuffer()), type: res.headers.get('content-type') };
}

describe('inbound media (Evolution)', () => {
  test('webhook base64 → stored once by content → the agent gets a signed URL and (webhook_base64) the bytes', async () => {
    const { post } = await setup({ webhook_base64: true });
    const first = await post(imageUpsert('IMG-1', png(5), 'what is this?'));
    expect(first.status).toBe(200);
    const tr = await trace(first.body.trace_id);
    expect(tr.status).toBe('completed');
    const fetched = stepsNamed(tr, 'media_fetched');
    expect(fetched).toHaveLength(1);
    expect(fetched[0].status).toBe('success');
    expect(fetched[0].details).toMatchObject({
      source: 'webhook',
      mime_type: 'image/png',
      declared_mime_type: 'image/jpeg',
    });
    // The inbox row keeps the hash, never the bytes.
    const payload = t!.gw.db
      .query<{ payload_json: string }, [string]>('SELECT payload_json FROM inbox WHERE id = ?')
      .get(first.body.trace_id)!.payload_json;
    expect(payload).not.toContain(Buffer.from(png(5)).toString('base64'));
    expect(JSON.parse(payload).media[0].staged).toMatch(/^[0-9a-f]{64}$/);

    expect(agent.requests).toHaveLength(1);
    const body = agent.requests[0]!.body;
    expect(body.message).toBe('what is this?');
    expect(body.media).toHaveLength(1);
    const m = body.media[0];
    expect(m).toMatchObject({
      type: 'image',
      mimeType: 'image/png',
      sizeBytes: png(5).byteLength,
      caption: 'what is this?',
    });
    expect(m.base64).toBe(Buffer.from(png(5)).toString('base64'));
    const got = await fetchSigned(m.url);
    expect(got.status).toBe(200);
    expect(got.type).toBe('image/png');
    expect([...got.bytes]).toEqual([...png(5)]);

    // The same picture again: a second item, the same single file.
    const second = await post(imageUpsert('IMG-2', png(5)));
    await trace(second.body.trace_id);
    const rows = t!.gw.db.query<{ sha256: string }, []>('SELECT sha256 FROM media').all();
    expect(rows).toHaveLength(2);
    expect(new Set(rows.map((r) => r.sha256)).size).toBe(1);
    expect(agent.requests[1]!.body.media[0].id).not.toBe(m.id);
  });

  test('no base64 in the webhook: fetched from Evolution’s media endpoint (a failure retried); not inlined', async () => {
    const { post } = await setup();
    evo.media.set('IMG-EP', { bytes: png(9), mimetype: 'image/jpeg' });
    evo.fail('mediaBase64', 503, 1);
    const res = await post(imageUpsert('IMG-EP', null));
    const tr = await trace(res.body.trace_id);
    expect(tr.status).toBe('completed');
    expect(evo.calls.filter((c) => c.route === 'mediaBase64').map((c) => c.body.message.key.id)).toEqual([
      'IMG-EP',
      'IMG-EP',
    ]);
    const retries = stepsNamed(tr, 'retry_scheduled');
    expect(retries[0].details.stage).toBe('media');
    expect(stepsNamed(tr, 'media_fetched').map((s: any) => s.status)).toEqual(['error', 'success']);
    const m = agent.requests[0]!.body.media[0];
    expect(m.base64).toBeUndefined();
    expect((await fetchSigned(m.url)).bytes).toEqual(png(9));
  });

  test('over the instance’s size limit, or a refused type: kept as a placeholder with a clear trace step', async () => {
    const { post } = await setup();
    expect((await t!.call('PATCH', '/api/v2/instances/wa-media', { media: { maxBytes: 1024 } })).status).toBe(200);
    const big = new Uint8Array(4096);
    big.set(png(1));
    const tooBig = await post(imageUpsert('IMG-BIG', big, 'big one'));
    const tr = await trace(tooBig.body.trace_id);
    expect(tr.status).toBe('completed');
    const step = stepsNamed(tr, 'media_fetched')[0];
    expect(step.status).toBe('error');
    expect(step.details.rejected).toContain('1024');
    expect(agent.requests[0]!.body.message).toBe('big one');
    expect(agent.requests[0]!.body.media).toBeUndefined();

    const exe = await post(imageUpsert('IMG-ELF', elf()));
    const tr2 = await trace(exe.body.trace_id);
    expect(tr2.status).toBe('completed');
    expect(stepsNamed(tr2, 'media_fetched')[0].details.rejected).toContain('not accepted');
    expect(agent.requests[1]!.body.message).toBe('[image]');
    expect(tr2.media[0]).toMatchObject({ status: 'rejected', url: null });
  });
});

describe('transcription', () => {
  function voiceUpsert(id: string) {
    return {
      key: { remoteJid: '5511999990001@s.whatsapp.net', fromMe: false, id },
      messageTimestamp: 1769830000,
      message: {
        audioMessage: { mimetype: 'audio/ogg; codecs=opus', ptt: true },
        base64: Buffer.from(oggOpus()).toString('base64'),
      },
    };
  }

  test('a voice note becomes its transcript (for access rules and the agent), once, with a timed trace step', async () => {
    const stt = startFakeTranscriber('please send the invoice');
    try {
      const { post } = await setup();
      const patched = await t!.call('PATCH', '/api/v2/instances/wa-media', {
        media: { transcription: { url: stt.url, apiKey: 'sk-stt-secret', model: 'whisper-1', language: 'en' } },
      });
      expect(patched.status).toBe(200);
      // An agent failure makes the message retry: the transcript is reused, not asked again.
      agent.setBehaviour({ failTimes: 1 });
      const res = await post(voiceUpsert('VOICE-1'));
      const tr = await trace(res.body.trace_id);
      expect(tr.status).toBe('completed');
      expect(stt.calls).toHaveLength(1);
      expect(stt.calls[0]).toMatchObject({ auth: 'Bearer sk-stt-secret', model: 'whisper-1', language: 'en' });
      expect(stt.calls[0]!.fileType).toStartWith('audio/ogg');
      const step = stepsNamed(tr, 'media_transcribed');
      expect(step).toHaveLength(1);
      expect(step[0].status).toBe('success');
      expect(typeof step[0].duration_ms === 'number' || typeof step[0].durationMs === 'number').toBe(true);
      const last = agent.requests.at(-1)!.body;
      expect(last.message).toBe('please send the invoice');
      expect(last.transcribed).toBe(true);
      expect(last.media[0]).toMatchObject({ type: 'audio', transcript: 'please send the invoice' });
      expect(JSON.stringify(tr)).not.toContain('sk-stt-secret');
      // The trace view (the console's conversation view) lists the item: playable, with its transcript.
      expect(tr.media).toHaveLength(1);
      expect(tr.media[0]).toMatchObject({ direction: 'in', type: 'audio', transcript: 'please send the invoice' });
      expect((await fetchSigned(`http://x${tr.media[0].url}`)).status).toBe(200);
    } finally {
      stt.stop();
    }
  });

  test('a failing transcription falls back to the placeholder, visible in the trace', async () => {
    const stt = startFakeTranscriber();
    stt.failWith = 500;
    try {
      const { post } = await setup();
      await t!.call('PATCH', '/api/v2/instances/wa-media', {
        media: { transcription: { url: stt.url, apiKey: 'k-123456', model: 'whisper-1' } },
      });
      const res = await post(voiceUpsert('VOICE-2'));
      const tr = await trace(res.body.trace_id);
      expect(tr.status).toBe('completed');
      const step = stepsNamed(tr, 'media_transcribed')[0];
      expect(step.status).toBe('error');
      expect(step.details.error).toContain('HTTP 500');
      const body = agent.requests[0]!.body;
      expect(body.message).toBe('[audio]');
      expect(body.transcribed).toBeUndefined();
      expect(body.media[0].transcript).toBeUndefined();
      expect(stt.calls).toHaveLength(1);
    } finally {
      stt.stop();
    }
  });
});

describe('reply media (agent → channel)', () => {
  test('an agent’s image URL is fetched, stored and sent with sendMedia after the text; a non-http URL is not fetched', async () => {
    const site = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      fetch: () => new Response(png(4), { headers: { 'content-type': 'image/png' } }),
    });
    try {
      const { post } = await setup();
      agent.setBehaviour({
        replyFields: () => ({
          media: [
            { url: `http://127.0.0.1:${site.port}/cat.png`, type: 'image', caption: 'a cat' },
            { url: 'file:///etc/passwd', type: 'document' },
          ],
        }),
      });
      const res = await post({
        key: { remoteJid: '5511999990001@s.whatsapp.net', fromMe: false, id: 'ASK-1' },
        message: { conversation: 'show me a cat' },
      });
      const tr = await trace(res.body.trace_id);
      expect(tr.status).toBe('completed');
      expect(evo.sent.map((s) => s.text)).toEqual(['got: show me a cat']);
      const media = evo.calls.filter((c) => c.route === 'sendMedia');
      expect(media).toHaveLength(1);
      expect(media[0]!.body).toMatchObject({ mediatype: 'image', caption: 'a cat', number: '5511999990001' });
      expect(Buffer.from(media[0]!.body.media, 'base64')).toEqual(Buffer.from(png(4)));
      const fetched = stepsNamed(tr, 'reply_media_fetched');
      expect(fetched.map((s: any) => s.status)).toEqual(['success', 'error']);
      expect(fetched[1].details.error).toContain('http(s)');
      // Through the outbox like text: one row per part, sent.
      const parts = t!.gw.db
        .query<{ part: number; status: string }, [string]>(
          'SELECT o.part, o.status FROM outbox o JOIN inbox i ON i.seq = o.inbox_seq WHERE i.id = ? ORDER BY o.part',
        )
        .all(res.body.trace_id);
      expect(parts).toEqual([
        { part: 0, status: 'sent' },
        { part: 20_000, status: 'sent' },
      ]);
    } finally {
      site.stop(true);
    }
  });

  test('a media-only reply (base64, no text) is sent as media alone', async () => {
    const { post } = await setup();
    agent.setBehaviour({
      reply: () => '',
      replyFields: () => ({ text: undefined, media: [{ base64: Buffer.from(png(6)).toString('base64') }] }),
    });
    const res = await post({
      key: { remoteJid: '5511999990001@s.whatsapp.net', fromMe: false, id: 'ASK-2' },
      message: { conversation: 'just the picture' },
    });
    const tr = await trace(res.body.trace_id);
    expect(tr.status).toBe('completed');
    expect(evo.sent).toHaveLength(0);
    const media = evo.calls.filter((c) => c.route === 'sendMedia');
    expect(media).toHaveLength(1);
    expect(media[0]!.body.mediatype).toBe('image');
    agent.setBehaviour({ reply: (m) => `got: ${m}` });
  });
});
