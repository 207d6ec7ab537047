// Local stand-in agents: the seed JSON contract, AG-UI SSE (framed by the reference
// @ag-ui/encoder, as Leo does), OpenAI chat-completions SSE, and plain `data:` text SSE.
// Each can misbehave on demand: latency, slow streaming, cut mid-stream, N× 5xx, garbage bytes,
// never answering, a fixed status (e.g. 401), a required bearer token. Every request is recorded.
import { EventEncoder } from '@ag-ui/encoder';

export type FakeProtocol = 'json' | 'agui' | 'openai' | 'plain';

export interface RecordedRequest {
  index: number;
  method: string;
  path: string;
  headers: Record<string, string>;
  body: any;
  /** The user's text, wherever the protocol puts it. */
  message: string;
  idempotencyKey: string | null;
  at: number;
  /** The client went away before the response was complete. */
  clientAborted: boolean;
}

export interface FakeBehaviour {
  /** Reply text; an array gives several text messages (AG-UI) or is joined (others). */
  reply: (message: string, req: RecordedRequest) => string | string[];
  /** Delay before answering: fixed ms or a uniform random range. */
  latencyMs: number | { min: number; max: number };
  /** Delay between streamed deltas (ms). */
  deltaDelayMs: number;
  /** Characters per streamed delta (0 = one delta per word). */
  deltaChars: number;
  /** Stop the stream (clean close, no end marker) after this many deltas (stream protocols). */
  cutAfterDeltas: number | null;
  /** Answer `failStatus` to this many requests first, then behave. */
  failTimes: number;
  failStatus: number;
  /** Answer every request with this status and a small JSON error. */
  status: number | null;
  /** Answer 200 with bytes that are not the protocol. */
  garbage: boolean;
  /** Never answer (until the client gives up or the fake stops). */
  hang: boolean;
  /** Stream but stop sending after the first delta, keeping the connection open. */
  stall: boolean;
  /** Answer 401 unless `authorization: Bearer <token>`. */
  requireBearer: string | null;
  /** SSE keepalive comment before the first event. */
  keepaliveComment: boolean;
  /** JSON protocol: more fields of the answer (e.g. a reply's `media`). */
  replyFields: ((req: RecordedRequest) => Record<string, unknown>) | null;
}

export interface FakeAgent {
  url: string;
  protocol: FakeProtocol;
  requests: RecordedRequest[];
  setBehaviour(b: Partial<FakeBehaviour>): void;
  /** Override per request (e.g. cut only the first attempt). */
  plan(fn: ((req: RecordedRequest) => Partial<FakeBehaviour> | undefined) | null): void;
  stop(): Promise<void>;
}

const DEFAULTS: FakeBehaviour = {
  reply: (m) => `echo: ${m}`,
  latencyMs: 0,
  deltaDelayMs: 0,
  deltaChars: 0,
  cutAfterDeltas: null,
  failTimes: 0,
  failStatus: 503,
  status: null,
  garbage: false,
  hang: false,
  stall: false,
  requireBearer: null,
  keepaliveComment: false,
  replyFields: null,
};

const encoder = new EventEncoder();
const te = new TextEncoder();

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });
}

/** Splits a text into deltas: per word (keeping spaces) or per N characters (code points). */
export function splitDeltas(text: string, chars: number): string[] {
  if (chars > 0) {
    const cps = Array.from(text);
    const out: string[] = [];
    for (let i = 0; i < cps.length; i += chars) out.push(cps.slice(i, i + chars).join(''));
    return out;
  }
  return text.match(/\s*\S+\s*|\s+/g) ?? [];
}

function messageOf(protocol: FakeProtocol, body: any): string {
  if (protocol === 'agui' || protocol === 'openai') {
    const msgs = Array.isArray(body?.messages) ? body.messages : [];
    const last = msgs[msgs.length - 1];
    if (typeof last?.content === 'string') return last.content;
    // Content parts (a message with media): its text parts.
    if (Array.isArray(last?.content))
      return last.content
        .filter((p: any) => p?.type === 'text' && typeof p.text === 'string')
        .map((p: any) => p.text)
        .join('\n');
    return '';
  }
  return typeof body?.message === 'string' ? body.message : '';
}

/** SSE frames (strings) for one reply in the given streaming protocol. */
export function sseFrames(
  protocol: Exclude<FakeProtocol, 'json'>,
  texts: string[],
  deltaChars: number,
  body: any,
): {
  head: string[];
  deltas: string[];
  tail: string[];
} {
  if (protocol === 'agui') {
    const threadId = body?.threadId ?? 't';
    const runId = body?.runId ?? 'r';
    const head = [encoder.encodeSSE({ type: 'RUN_STARTED', threadId, runId } as any)];
    const deltas: string[] = [];
    texts.forEach((t, i) => {
      const messageId = `msg_${i}`;
      const parts = splitDeltas(t, deltaChars);
      // START travels with the first delta so that "cut after N deltas" cuts inside a message.
      parts.forEach((delta, j) => {
        const start =
          j === 0 ? encoder.encodeSSE({ type: 'TEXT_MESSAGE_START', messageId, role: 'assistant' } as any) : '';
        const end = j === parts.length - 1 ? encoder.encodeSSE({ type: 'TEXT_MESSAGE_END', messageId } as any) : '';
        deltas.push(start + encoder.encodeSSE({ type: 'TEXT_MESSAGE_CONTENT', messageId, delta } as any) + end);
      });
    });
    return { head, deltas, tail: [encoder.encodeSSE({ type: 'RUN_FINISHED', threadId, runId } as any)] };
  }
  const text = texts.join('\n\n');
  const parts = splitDeltas(text, deltaChars);
  if (protocol === 'openai') {
    const id = 'chatcmpl-fake';
    const chunk = (delta: object, finish: string | null) =>
      `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
    return {
      head: [chunk({ role: 'assistant' }, null)],
      deltas: parts.map((p) => chunk({ content: p }, null)),
      tail: [chunk({}, 'stop'), 'data: [DONE]\n\n'],
    };
  }
  // plain: multi-line data keeps newlines inside one event
  return {
    head: [],
    deltas: parts.map(
      (p) =>
        `${p
          .split('\n')
          .map((l) => `data: ${l}\n`)
          .join('')}\n`,
    ),
    tail: [],
  };
}

export function startFakeAgent(opts: { protocol: FakeProtocol } & Partial<FakeBehaviour>): FakeAgent {
  const { protocol, ...initial } = opts;
  let behaviour: FakeBehaviour = { ...DEFAULTS, ...initial };
  let planFn: ((req: RecordedRequest) => Partial<FakeBehaviour> | undefined) | null = null;
  let failuresLeft = behaviour.failTimes;
  const requests: RecordedRequest[] = [];
  const stopper = new AbortController();

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    idleTimeout: 60,
    async fetch(request) {
      const raw = await request.text();
      let body: any = null;
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
      const headers: Record<string, string> = Object.fromEntries(request.headers);
      const rec: RecordedRequest = {
        index: requests.length,
        method: request.method,
        path: new URL(request.url).pathname,
        headers,
        body,
        message: messageOf(protocol, body),
        idempotencyKey: request.headers.get('idempotency-key'),
        at: Date.now(),
        clientAborted: false,
      };
      requests.push(rec);
      request.signal.addEventListener('abort', () => (rec.clientAborted = true), { once: true });
      const b: FakeBehaviour = { ...behaviour, ...(planFn?.(rec) ?? {}) };
      const signal = AbortSignal.any([request.signal, stopper.signal]);

      const lat =
        typeof b.latencyMs === 'number'
          ? b.latencyMs
          : b.latencyMs.min + Math.random() * (b.latencyMs.max - b.latencyMs.min);
      await sleep(lat, signal);

      if (b.hang) {
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
        return new Response('gone', { status: 503 });
      }
      if (b.requireBearer !== null && headers.authorization !== `Bearer ${b.requireBearer}`) {
        return Response.json({ error: 'unauthorized', message: 'token expired' }, { status: 401 });
      }
      if (b.status !== null) return Response.json({ error: `status ${b.status}` }, { status: b.status });
      if (failuresLeft > 0) {
        failuresLeft--;
        return Response.json({ error: 'temporarily unavailable' }, { status: b.failStatus });
      }
      const contentType = protocol === 'json' ? 'application/json' : 'text/event-stream';
      if (b.garbage) {
        const junk = new Uint8Array([
          0xff, 0xfe, 0x00, 0x7b, 0x22, 0xc3, 0x28, 0x0a, 0x0d, 0x3a, 0x80, 0x81, 0x7d, 0x0a, 0x0a,
        ]);
        return new Response(junk, { headers: { 'content-type': contentType } });
      }
      const replies = b.reply(rec.message, rec);
      const texts = Array.isArray(replies) ? replies : [replies];

      if (protocol === 'json') {
        const full = JSON.stringify({ text: texts.join('\n\n'), ...(b.replyFields?.(rec) ?? {}) });
        return new Response(full, { headers: { 'content-type': contentType } });
      }

      const frames = sseFrames(protocol, texts, b.deltaChars, body);
      const stream = new ReadableStream<Uint8Array>({
        async start(c) {
          const send = (s: string) => c.enqueue(te.encode(s));
          try {
            if (b.keepaliveComment) send(': keepalive\n\n');
            frames.head.forEach(send);
            for (let i = 0; i < frames.deltas.length; i++) {
              if (b.cutAfterDeltas !== null && i >= b.cutAfterDeltas) {
                c.close();
                return;
              }
              if (i > 0) await sleep(b.deltaDelayMs, signal);
              if (signal.aborted) return;
              send(frames.deltas[i]!);
              if (b.stall) {
                await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
                return;
              }
            }
            frames.tail.forEach(send);
            c.close();
          } catch {
            // client went away
          }
        },
      });
      return new Response(stream, { headers: { 'content-type': contentType, 'cache-control': 'no-cache' } });
    },
  });

  return {
    url: `http://127.0.0.1:${server.port}/agent`,
    protocol,
    requests,
    setBehaviour(b) {
      behaviour = { ...behaviour, ...b };
      if (b.failTimes !== undefined) failuresLeft = b.failTimes;
    },
    plan(fn) {
      planFn = fn;
    },
    async stop() {
      stopper.abort();
      await server.stop(true);
    },
  };
}

/**
 * A raw TCP "HTTP server" that answers every request with exactly `response` bytes and closes
 * the socket: for cuts that Bun.serve would repair (e.g. a body shorter than its Content-Length).
 */
export function startRawHttpAgent(response: string): { url: string; stop(): void } {
  const listener = Bun.listen<{ seen: string }>({
    hostname: '127.0.0.1',
    port: 0,
    socket: {
      data(socket, chunk) {
        const seen = (socket.data?.seen ?? '') + chunk.toString('latin1');
        socket.data = { seen };
        const headerEnd = seen.indexOf('\r\n\r\n');
        if (headerEnd < 0) return;
        const len = Number(/content-length:\s*(\d+)/i.exec(seen.slice(0, headerEnd))?.[1] ?? 0);
        if (seen.length - headerEnd - 4 < len) return;
        socket.end(response);
      },
    },
  });
  return { url: `http://127.0.0.1:${listener.port}/agent`, stop: () => listener.stop(true) };
}
