// Minimal stand-ins for benchmarks: an instant AG-UI streaming agent (10 deltas per reply, the
// whole body written at once) and an Evolution server that only counts and timestamps sends.
// They do as little as possible so the figures measure the gateway, not the stand-ins.

export interface BenchStandIns {
  agentUrl: string;
  evolutionUrl: string;
  evolutionKey: string;
  /** message text (one word) → Date.now() when its reply's sendText arrived (first copy). */
  sentAt: Map<string, number>;
  sends: number;
  agentCalls: number;
  onSend: ((text: string, at: number) => void) | null;
  /** While set, agent calls wait for it (an ack-only phase: conversations take no further work). */
  agentHold: Promise<void> | null;
  stop(): void;
}

const frame = (o: object) => `data: ${JSON.stringify(o)}\n\n`;

export function startBenchStandIns(opts: { deltas?: number } = {}): BenchStandIns {
  const deltas = opts.deltas ?? 10;
  const s: BenchStandIns = {
    agentUrl: '',
    evolutionUrl: '',
    evolutionKey: 'EVO-BENCH',
    sentAt: new Map(),
    sends: 0,
    agentCalls: 0,
    onSend: null,
    agentHold: null,
    stop() {
      agent.stop(true);
      evo.stop(true);
    },
  };
  const agent = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      const body = (await req.json()) as { messages?: Array<{ content?: string }>; threadId?: string; runId?: string };
      s.agentCalls++;
      if (s.agentHold) await s.agentHold;
      const msg = body.messages?.at(-1)?.content ?? '';
      let out = frame({ type: 'RUN_STARTED', threadId: body.threadId ?? 't', runId: body.runId ?? 'r' });
      out += frame({ type: 'TEXT_MESSAGE_START', messageId: 'm', role: 'assistant' });
      // The reply is the message itself (so the bench can match it) split over `deltas` deltas.
      const text = `re ${msg} — a short instant reply from the bench agent.`;
      const step = Math.ceil(text.length / deltas);
      for (let i = 0; i < deltas; i++)
        out += frame({
          type: 'TEXT_MESSAGE_CONTENT',
          messageId: 'm',
          delta: text.slice(i * step, (i + 1) * step) || '.',
        });
      out += frame({ type: 'TEXT_MESSAGE_END', messageId: 'm' });
      out += frame({ type: 'RUN_FINISHED', threadId: body.threadId ?? 't', runId: body.runId ?? 'r' });
      return new Response(out, { headers: { 'content-type': 'text/event-stream' } });
    },
  });
  let n = 0;
  const evo = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      const path = new URL(req.url).pathname;
      if (path.startsWith('/message/sendText/')) {
        const body = (await req.json()) as { text: string; number: string };
        const at = Date.now();
        s.sends++;
        const key = /^re (\S+)/.exec(body.text)?.[1] ?? body.text;
        if (!s.sentAt.has(key)) s.sentAt.set(key, at);
        s.onSend?.(body.text, at);
        return Response.json(
          { key: { remoteJid: `${body.number}@s.whatsapp.net`, fromMe: true, id: `B${++n}` }, status: 'PENDING' },
          { status: 201 },
        );
      }
      if (path.startsWith('/instance/connectionState/')) return Response.json({ instance: { state: 'open' } });
      if (path.startsWith('/chat/sendPresence/')) return Response.json({ presence: 'composing' }, { status: 201 });
      return Response.json({ ok: true }, { status: 201 });
    },
  });
  s.agentUrl = `http://127.0.0.1:${agent.port}/agent`;
  s.evolutionUrl = `http://127.0.0.1:${evo.port}`;
  return s;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function fmt(n: number, digits = 1): string {
  return Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 })
    : 'n/a';
}
