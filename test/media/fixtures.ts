// Media for the media tests: the smallest bytes each type is recognised by (file-type sniffs the
// first bytes), and a stand-in OpenAI-compatible transcription server.

/** A 1×1 PNG header (signature + IHDR): sniffed as image/png. */
export function png(seed = 0): Uint8Array<ArrayBuffer> {
  return new Uint8Array([
    0x89,
    0x50,
    0x4e,
    0x47,
    0x0d,
    0x0a,
    0x1a,
    0x0a,
    0,
    0,
    0,
    0x0d,
    0x49,
    0x48,
    0x44,
    0x52,
    0,
    0,
    0,
    1,
    0,
    0,
    0,
    1,
    8,
    6,
    0,
    0,
    0,
    seed & 0xff,
  ]);
}

/** The first page of an Ogg Opus stream (OpusHead at byte 28): sniffed as audio/ogg (opus). */
export function oggOpus(): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(64);
  b.set([0x4f, 0x67, 0x67, 0x53, 0, 2]); // "OggS", version 0, first page
  b[26] = 1; // one segment
  b[27] = 19; // of 19 bytes
  b.set([0x4f, 0x70, 0x75, 0x73, 0x48, 0x65, 0x61, 0x64, 1, 1], 28); // "OpusHead", version 1, 1 channel
  return b;
}

/** An ELF executable header: a type the store refuses. */
export function elf(): Uint8Array<ArrayBuffer> {
  return new Uint8Array([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0x3e, 0, 1, 0, 0, 0]);
}

export interface FakeTranscriber {
  /** The API base to configure (…/v1). */
  url: string;
  calls: Array<{ auth: string | null; model: string | null; language: string | null; fileType: string; size: number }>;
  /** Answer this status instead of a transcript. */
  failWith: number | null;
  stop(): void;
}

/** POST /v1/audio/transcriptions (multipart file, model, language) → {"text"}. */
export function startFakeTranscriber(text = 'hello from the voice note'): FakeTranscriber {
  const state: FakeTranscriber = {
    url: '',
    calls: [],
    failWith: null,
    stop: () => server.stop(true),
  };
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      if (new URL(req.url).pathname !== '/v1/audio/transcriptions' || req.method !== 'POST')
        return new Response('not found', { status: 404 });
      const form = await req.formData();
      const file = form.get('file') as File | null;
      state.calls.push({
        auth: req.headers.get('authorization'),
        model: form.get('model') as string | null,
        language: form.get('language') as string | null,
        fileType: file?.type ?? '',
        size: file?.size ?? 0,
      });
      if (state.failWith) return Response.json({ error: { message: 'boom' } }, { status: state.failWith });
      return Response.json({ text });
    },
  });
  state.url = `http://127.0.0.1:${server.port}/v1`;
  return state;
}
