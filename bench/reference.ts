// The references the gateway is measured against (issue 24), each a child process like the
// gateway, driven by the same load generator against the same stand-ins:
//  P1 — a bare Elysia route: the gateway's webhook route shape (instance param, token) validating
//       the same Evolution body with the same parser, answering without storing anything.
//  P2 — the smallest honest durable pipeline: the same route, then a durable inbox row before the
//       ack (bun:sqlite, WAL, synchronous NORMAL, writes of one event-loop turn group-committed,
//       duplicates refused by provider id), per-chat order (one message of a chat at a time, in
//       inbox order), a streaming AG-UI agent call (SSE parsed as it arrives), the Evolution
//       sendText, and a group-committed done mark. Unfinished rows are resumed at start. Nothing else.
// Run alone: bun bench/reference.ts p1|p2   (env REF_PORT, REF_DB, REF_AGENT_URL, REF_EVOLUTION_URL, REF_EVOLUTION_KEY)
import { Database } from 'bun:sqlite';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Elysia, t } from 'elysia';
import { createParser } from 'eventsource-parser';
import { parseEvolutionWebhook } from '../src/channels/evolution/parse.ts';
import { constantTimeEqual } from '../src/services/ids.ts';
import { type BenchGateway, procCpuMs, procRss } from './gateway.ts';

export type ReferenceKind = 'p1' | 'p2';
const TOKEN = 'ref-webhook-token-0123456789';

/** Starts a reference as a child process; `webhook` is its webhook URL (with token). */
export async function startReference(
  kind: ReferenceKind,
  standIns: { agentUrl: string; evolutionUrl: string; evolutionKey: string },
): Promise<Pick<BenchGateway, 'url' | 'pid' | 'rssBytes' | 'cpuMs' | 'stop'> & { webhook: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'sb-ref-'));
  const probe = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response('') });
  const port = probe.port!;
  probe.stop(true);
  const proc = Bun.spawn([process.execPath, join(import.meta.dir, 'reference.ts'), kind], {
    env: {
      ...process.env,
      REF_PORT: String(port),
      REF_DB: join(dir, 'ref.db'),
      REF_AGENT_URL: standIns.agentUrl,
      REF_EVOLUTION_URL: standIns.evolutionUrl,
      REF_EVOLUTION_KEY: standIns.evolutionKey,
    },
    stdout: 'ignore',
    stderr: 'inherit',
  });
  const url = `http://127.0.0.1:${port}`;
  const end = Date.now() + 15_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {}
    if (proc.exitCode !== null || Date.now() > end) throw new Error(`reference ${kind} did not start`);
    await Bun.sleep(20);
  }
  return {
    url,
    pid: proc.pid,
    webhook: `${url}/webhook/evolution/bench?token=${TOKEN}`,
    rssBytes: () => procRss(proc.pid),
    cpuMs: () => procCpuMs(proc.pid),
    async stop() {
      proc.kill('SIGTERM');
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ── the reference servers ────────────────────────────────────────────────────────────────────

type Answer = { status: string; trace_id: string | null; message: string };

function route(handle: (body: unknown) => Answer | Promise<Answer>) {
  return new Elysia()
    .get('/health', () => 'ok')
    .post(
      '/webhook/evolution/:instance',
      ({ query, body, set }) => {
        if (typeof query.token !== 'string' || !constantTimeEqual(query.token, TOKEN)) {
          set.status = 401;
          return { status: 'error', trace_id: null, message: 'unauthorized' };
        }
        return handle(body);
      },
      {
        params: t.Object({ instance: t.String({ maxLength: 100 }) }),
        query: t.Object({ token: t.Optional(t.String({ maxLength: 200 })) }),
        body: t.Unknown(),
      },
    );
}

function serveP1(port: number): void {
  route((body) => {
    const { messages, ignored } = parseEvolutionWebhook(body, 'ref');
    if (messages.length === 0) return { status: 'ignored', trace_id: null, message: ignored.join('; ') };
    return { status: 'received', trace_id: null, message: 'Message accepted' };
  }).listen({ port, hostname: '127.0.0.1' });
}

function serveP2(port: number, env: Record<string, string | undefined>): void {
  const db = new Database(env.REF_DB!, { create: true, strict: true });
  db.exec('PRAGMA journal_mode = WAL');
  db.exec('PRAGMA synchronous = NORMAL');
  db.exec(`CREATE TABLE IF NOT EXISTS inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, provider_id TEXT NOT NULL UNIQUE,
    chat TEXT NOT NULL, text TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0)`);
  db.exec('CREATE INDEX IF NOT EXISTS inbox_open ON inbox (seq) WHERE done = 0');
  const insert = db.query<{ seq: number }, [string, string, string, string]>(
    'INSERT INTO inbox (id, provider_id, chat, text) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING seq',
  );
  const markDone = db.query<unknown, [number]>('UPDATE inbox SET done = 1 WHERE seq = ?');

  // Group commit: every write of one event-loop turn in one transaction; callers resume after it.
  let writes: Array<{ write: () => void; resolve: () => void; reject: (e: unknown) => void }> = [];
  const commit = (write: () => void) =>
    new Promise<void>((resolve, reject) => {
      if (writes.push({ write, resolve, reject }) === 1)
        setImmediate(() => {
          const batch = writes;
          writes = [];
          try {
            db.transaction(() => {
              for (const w of batch) w.write();
            }).immediate();
          } catch (e) {
            for (const w of batch) w.reject(e);
            return;
          }
          for (const w of batch) w.resolve();
        });
    });

  // Per-chat order: one runner per chat with work, taking its rows in inbox order.
  type Row = { seq: number; chat: string; text: string; id: string };
  const chats = new Map<string, Row[]>();
  const enqueue = (row: Row) => {
    const q = chats.get(row.chat);
    if (q) q.push(row);
    else {
      chats.set(row.chat, [row]);
      void runChat(row.chat);
    }
  };
  const agentUrl = env.REF_AGENT_URL!;
  const sendUrl = `${env.REF_EVOLUTION_URL}/message/sendText/bench`;
  const apikey = env.REF_EVOLUTION_KEY!;
  async function runChat(chat: string): Promise<void> {
    const q = chats.get(chat)!;
    while (q.length) {
      const row = q[0]!;
      for (let attempt = 0; ; attempt++) {
        try {
          await process1(row);
          break;
        } catch (err) {
          if (attempt >= 2) {
            console.error(`reference: giving up on ${row.id}: ${err}`);
            break;
          }
          await Bun.sleep(100 * 2 ** attempt);
        }
      }
      q.shift();
    }
    chats.delete(chat);
  }
  async function process1(row: Row): Promise<void> {
    const res = await fetch(agentUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({
        threadId: row.chat,
        runId: `run_${row.id}`,
        messages: [{ id: row.id, role: 'user', content: row.text }],
        tools: [],
        context: [],
        state: {},
        forwardedProps: {},
      }),
    });
    if (!res.ok || !res.body) throw new Error(`agent ${res.status}`);
    let reply = '';
    let finished = false;
    const parser = createParser({
      onEvent: (e) => {
        const ev = JSON.parse(e.data) as { type: string; delta?: string };
        if (ev.type === 'TEXT_MESSAGE_CONTENT') reply += ev.delta ?? '';
        else if (ev.type === 'RUN_FINISHED') finished = true;
        else if (ev.type === 'RUN_ERROR') throw new Error('agent run error');
      },
    });
    const dec = new TextDecoder();
    for await (const chunk of res.body) parser.feed(dec.decode(chunk, { stream: true }));
    if (!finished) throw new Error('agent stream cut');
    const sent = await fetch(sendUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', apikey },
      body: JSON.stringify({ number: row.chat, text: reply }),
    });
    await sent.arrayBuffer();
    if (!sent.ok) throw new Error(`sendText ${sent.status}`);
    await commit(() => markDone.run(row.seq));
  }

  // Resume what a previous run left unfinished, in inbox order.
  for (const r of db.query<Row, []>('SELECT seq, chat, text, id FROM inbox WHERE done = 0 ORDER BY seq').all())
    enqueue(r);

  route(async (body) => {
    const { messages, ignored } = parseEvolutionWebhook(body, 'ref');
    if (messages.length === 0) return { status: 'ignored', trace_id: null, message: ignored.join('; ') };
    const m = messages[0]!;
    const id = crypto.randomUUID();
    const chat = m.chat.chatId.split('@')[0]!;
    let seq: number | null = null;
    await commit(() => {
      seq = insert.get(id, m.providerMessageId, chat, m.text)?.seq ?? null;
    });
    if (seq === null) return { status: 'duplicate', trace_id: null, message: 'Message already received' };
    enqueue({ seq, chat, text: m.text, id });
    return { status: 'received', trace_id: id, message: 'Message accepted' };
  }).listen({ port, hostname: '127.0.0.1' });
}

if (import.meta.main) {
  const kind = process.argv[2];
  const port = Number(process.env.REF_PORT);
  if (kind === 'p1') serveP1(port);
  else if (kind === 'p2') serveP2(port, process.env);
  else throw new Error('usage: bun bench/reference.ts p1|p2');
  process.on('SIGTERM', () => process.exit(0));
}
