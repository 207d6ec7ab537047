// A local stand-in for the WhatsApp Cloud API (Meta's Graph API), for tests. It checks what the
// real one checks and we rely on: the path (version, phone number id), the bearer token, and the
// body of every send kind (text, reply context, reaction, media by link or id, interactive, template,
// mark-as-read with typing indicator); it takes media uploads and serves media downloads. Failures
// in Meta's error shape can be queued (e.g. 131047 outside the 24-hour window).

export interface GraphCall {
  method: string;
  path: string;
  /** The bearer token sent, or null. */
  token: string | null;
  /** Parsed JSON body (messages), or the multipart fields (uploads). */
  body: any;
  status: number;
  at: number;
}

export interface FakeGraphOptions {
  accessToken?: string;
  phoneNumberId?: string;
  version?: string;
}

export interface FakeGraph {
  url: string;
  accessToken: string;
  phoneNumberId: string;
  version: string;
  calls: GraphCall[];
  /** Accepted POST .../messages that send something (not the read receipts): the wamid given and the body. */
  sent: Array<{ id: string; body: any }>;
  /** Accepted read receipts (mark as read), with their typing indicator. */
  reads: any[];
  /** Accepted uploads: media id → what was uploaded. */
  uploads: Map<string, { type: string; filename: string; bytes: Uint8Array }>;
  /** Media the download route serves (media id → bytes and type). */
  media: Map<string, { bytes: Uint8Array<ArrayBuffer>; mimeType: string }>;
  /** The next `times` POST .../messages sends (not read receipts) fail with Meta's error `code`. */
  failSends(code: number, opts?: { status?: number; times?: number }): void;
  reset(): void;
  stop(): void;
}

const MEDIA_KINDS = ['image', 'video', 'audio', 'document', 'sticker'];

/** Why a send body is not what the Cloud API takes, or null. */
function problemOf(b: any): string | null {
  if (b?.messaging_product !== 'whatsapp') return 'messaging_product must be whatsapp';
  if (b.status === 'read') return typeof b.message_id === 'string' ? null : 'message_id required';
  if (typeof b.to !== 'string' || !/^\d{6,20}$/.test(b.to)) return 'to must be digits';
  if (b.context !== undefined && typeof b.context?.message_id !== 'string') return 'context.message_id required';
  const type = b.type;
  const o = b[type];
  if (!o || typeof o !== 'object') return `${type} object required`;
  if (type === 'text') return typeof o.body === 'string' && o.body.length <= 4096 ? null : 'text.body required';
  if (MEDIA_KINDS.includes(type)) {
    if (!o.link === !o.id) return `${type}: exactly one of link or id`;
    if (type === 'audio' && o.caption !== undefined) return 'audio takes no caption';
    return null;
  }
  if (type === 'reaction') return typeof o.message_id === 'string' && typeof o.emoji === 'string' ? null : 'reaction';
  if (type === 'template')
    return typeof o.name === 'string' && typeof o.language?.code === 'string' ? null : 'template name/language';
  if (type === 'interactive') {
    if (typeof o.body?.text !== 'string') return 'interactive.body.text required';
    if (o.type === 'button')
      return Array.isArray(o.action?.buttons) &&
        o.action.buttons.length >= 1 &&
        o.action.buttons.length <= 3 &&
        o.action.buttons.every((x: any) => x.type === 'reply' && x.reply?.id && x.reply?.title?.length <= 20)
        ? null
        : 'interactive buttons';
    if (o.type === 'list')
      return typeof o.action?.button === 'string' && Array.isArray(o.action.sections) ? null : 'interactive list';
    return 'interactive type';
  }
  return `unsupported type ${type}`;
}

const graphError = (code: number, message: string, status = 400) =>
  Response.json(
    {
      error: {
        message: `(#${code}) ${message}`,
        type: 'OAuthException',
        code,
        error_data: { messaging_product: 'whatsapp', details: message },
        fbtrace_id: 'AbCdEfGhIjKlMnOp',
      },
    },
    { status },
  );

export async function startFakeGraph(opts: FakeGraphOptions = {}): Promise<FakeGraph> {
  const accessToken = opts.accessToken ?? 'EAAG-test-token';
  const phoneNumberId = opts.phoneNumberId ?? '106540352242922';
  const version = opts.version ?? 'v23.0';
  let failures: Array<{ code: number; status: number }> = [];
  let seq = 0;
  const state = {
    calls: [] as GraphCall[],
    sent: [] as Array<{ id: string; body: any }>,
    reads: [] as any[],
    uploads: new Map<string, { type: string; filename: string; bytes: Uint8Array }>(),
    media: new Map<string, { bytes: Uint8Array<ArrayBuffer>; mimeType: string }>(),
  };

  const base = () => `http://127.0.0.1:${server.port}`;
  const server: ReturnType<typeof Bun.serve> = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req): Promise<Response> {
      const url = new URL(req.url);
      const auth = req.headers.get('authorization');
      const token = auth?.startsWith('Bearer ') ? auth.slice(7) : null;
      const call: GraphCall = {
        method: req.method,
        path: url.pathname + url.search,
        token,
        body: null,
        status: 0,
        at: Date.now(),
      };
      state.calls.push(call);
      const answer = (res: Response) => {
        call.status = res.status;
        return res;
      };
      if (token !== accessToken) return answer(graphError(190, 'Error validating access token', 401));

      const [, ver, id, sub] = url.pathname.split('/');
      if (url.pathname.startsWith('/media-download/')) {
        const m = state.media.get(url.pathname.slice('/media-download/'.length));
        return answer(
          m ? new Response(m.bytes, { headers: { 'content-type': m.mimeType } }) : new Response('', { status: 404 }),
        );
      }
      if (ver !== version) return answer(graphError(100, 'Unknown path components'));

      if (req.method === 'GET' && id === phoneNumberId && !sub)
        return answer(Response.json({ display_phone_number: '+1 555-078-3881', verified_name: 'Test Shop', id }));
      if (req.method === 'GET' && id && !sub) {
        const m = state.media.get(id);
        if (!m) return answer(graphError(100, 'Invalid parameter'));
        return answer(
          Response.json({
            messaging_product: 'whatsapp',
            url: `${base()}/media-download/${id}`,
            mime_type: m.mimeType,
            sha256: 'fake',
            file_size: m.bytes.byteLength,
            id,
          }),
        );
      }
      if (req.method !== 'POST' || id !== phoneNumberId) return answer(graphError(100, 'Unsupported post request'));

      if (sub === 'media') {
        const form = await req.formData();
        const file = form.get('file');
        call.body = { messaging_product: form.get('messaging_product'), type: form.get('type') };
        if (
          form.get('messaging_product') !== 'whatsapp' ||
          typeof form.get('type') !== 'string' ||
          !(file instanceof Blob)
        )
          return answer(graphError(100, 'Invalid parameter'));
        const mediaId = `${9000000000000000 + ++seq}`;
        state.uploads.set(mediaId, {
          type: String(form.get('type')),
          filename: (file as File).name,
          bytes: new Uint8Array(await file.arrayBuffer()),
        });
        return answer(Response.json({ id: mediaId }));
      }
      if (sub !== 'messages') return answer(graphError(100, 'Unknown path components'));
      if (!req.headers.get('content-type')?.includes('application/json'))
        return answer(graphError(100, 'JSON required'));
      const body = await req.json().catch(() => null);
      call.body = body;
      const problem = problemOf(body);
      if (problem) return answer(graphError(100, `Invalid parameter: ${problem}`));
      if (body.status === 'read') {
        state.reads.push(body);
        return answer(Response.json({ success: true }));
      }
      const failure = failures.shift();
      if (failure) return answer(graphError(failure.code, 'Failure requested by the test', failure.status));
      const wamid = `wamid.FAKE${String(++seq).padStart(8, '0')}`;
      state.sent.push({ id: wamid, body });
      return answer(
        Response.json({
          messaging_product: 'whatsapp',
          contacts: [{ input: body.to, wa_id: body.to }],
          messages: [{ id: wamid, ...(body.type === 'template' ? { message_status: 'accepted' } : {}) }],
        }),
      );
    },
  });

  return {
    url: `http://127.0.0.1:${server.port}`,
    accessToken,
    phoneNumberId,
    version,
    ...state,
    failSends(code, o = {}) {
      for (let i = 0; i < (o.times ?? 1); i++) failures.push({ code, status: o.status ?? 400 });
    },
    reset() {
      state.calls.length = 0;
      state.sent.length = 0;
      state.reads.length = 0;
      state.uploads.clear();
      failures = [];
    },
    stop() {
      server.stop(true);
    },
  };
}
