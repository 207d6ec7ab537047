// Chaos harness: runs the real gateway (`bun src/main.ts`) as a child process against stand-ins
// living in the test process, drives webhooks at it like a real Evolution server would (retrying
// until acked), crashes and restarts it, and records everything into a History.
import { Database } from 'bun:sqlite';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FakeAgent, type FakeBehaviour, startFakeAgent } from '../fakes/agents.ts';
import { type FakeEvolution, startFakeEvolution } from '../fakes/evolution.ts';
import { History } from './history.ts';

const ROOT = join(import.meta.dir, '..', '..');
export const CHAOS_KEY = 'chaos-admin-key-0123456789abcdef';
export const replyFor = (text: string) => `echo: ${text}`;

export function freePort(): number {
  const s = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response('') });
  const p = s.port!;
  s.stop(true);
  return p;
}

export interface GatewayProcess {
  proc: ReturnType<typeof Bun.spawn>;
  url: string;
  epoch: number;
  stderr: () => string;
  /** Resolves when the process is gone; records the exit in the history. */
  exited: Promise<{ signal: string | null; code: number | null }>;
  stop(): Promise<void>;
}

export class ChaosRun {
  readonly dir = mkdtempSync(join(tmpdir(), 'sb-chaos-'));
  readonly dbPath = join(this.dir, 'gw.db');
  readonly port = freePort();
  readonly url = `http://127.0.0.1:${this.port}`;
  readonly history: History;
  evo!: FakeEvolution;
  agent!: FakeAgent;
  token = '';
  /** The instance's id (what /ws filters and turn frames carry), set by createInstance. */
  instanceId = '';
  private epoch = -1;
  current: GatewayProcess | null = null;

  constructor(
    readonly name: string,
    readonly env: Record<string, string> = {},
  ) {
    this.history = new History(join(this.dir, 'history.jsonl'));
  }

  async standIns(agent: Partial<FakeBehaviour> = {}): Promise<void> {
    this.evo = await startFakeEvolution({ apikey: 'EVO-CHAOS-KEY' });
    this.agent = startFakeAgent({ protocol: 'agui', reply: (m) => replyFor(m), deltaChars: 3, ...agent });
  }

  async start(crashAt: string | null = null): Promise<GatewayProcess> {
    const epoch = ++this.epoch;
    let errText = '';
    const proc = Bun.spawn([process.execPath, 'src/main.ts'], {
      cwd: ROOT,
      env: {
        ...process.env,
        DATABASE_PATH: this.dbPath,
        PORT: String(this.port),
        HOST: '127.0.0.1',
        SWITCHBOARD_API_KEY: CHAOS_KEY,
        LOG_LEVEL: 'warn',
        PIPELINE_RETRY_BASE_MS: '20',
        PIPELINE_RETRY_MAX_MS: '200',
        ACTOR_IDLE_MS: '100',
        ...this.env,
        ...(crashAt ? { SWITCHBOARD_CRASH_AT: crashAt } : { SWITCHBOARD_CRASH_AT: '' }),
      },
      stdout: 'ignore',
      stderr: 'pipe',
    });
    void (async () => {
      for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) errText += new TextDecoder().decode(chunk);
    })();
    this.history.add({ src: 'harness', type: 'start', epoch, crashAt, at: Date.now() });
    const rssTimer = setInterval(() => {
      try {
        const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, 'utf8'));
        if (m) this.history.add({ src: 'harness', type: 'rss', epoch, bytes: Number(m[1]) * 1024, at: Date.now() });
      } catch {
        // process gone
      }
    }, 100);
    const exited = proc.exited.then((code) => {
      clearInterval(rssTimer);
      const r = {
        signal: proc.signalCode == null ? null : String(proc.signalCode),
        code: proc.signalCode ? null : code,
      };
      this.history.add({ src: 'harness', type: 'exit', epoch, signal: r.signal, code: r.code, at: Date.now() });
      return r;
    });
    const g: GatewayProcess = {
      proc,
      url: this.url,
      epoch,
      exited,
      stderr: () => errText,
      async stop() {
        proc.kill('SIGTERM');
        await exited;
      },
    };
    this.current = g;
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) break; // crashed while starting: caller sees it
      try {
        if ((await fetch(`${this.url}/health`)).ok) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`gateway did not start: ${errText}`);
      await Bun.sleep(20);
    }
    return g;
  }

  /** Creates the Evolution instance 'bot' (first start only) and remembers its webhook token. */
  async createInstance(extra: Record<string, unknown> = {}): Promise<void> {
    const res = await fetch(`${this.url}/api/v1/instances`, {
      method: 'POST',
      headers: { 'x-api-key': CHAOS_KEY, 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'bot',
        evolution_url: this.evo.url,
        evolution_key: this.evo.apikey,
        agent_api_url: this.agent.url,
        agent_type: 'agui',
        agent_timeout: 10,
        ...extra,
      }),
    });
    const body = (await res.json()) as { webhook_url: string };
    if (res.status !== 201) throw new Error(`create instance: ${res.status} ${JSON.stringify(body)}`);
    this.token = new URL(body.webhook_url).searchParams.get('token')!;
    // The instance actor connects asynchronously; wait until it is up so the first messages do not retry.
    await until(async () => {
      const r = await fetch(`${this.url}/api/v1/instances`, { headers: { 'x-api-key': CHAOS_KEY } });
      const list = (await r.json()) as Array<{ name: string; status?: string }>;
      return list.some((i) => i.name === 'bot');
    }, 5000);
    const v2 = await fetch(`${this.url}/api/v2/instances/bot`, { headers: { 'x-api-key': CHAOS_KEY } });
    this.instanceId = ((await v2.json()) as { data: { id: string } }).data.id;
  }

  /**
   * Posts one webhook until it is acked (as a real webhook sender does: a connection error or a
   * 5xx is retried). Every attempt and answer goes into the history.
   */
  async deliver(id: string, chat: string, text: string, deadlineMs = 30_000): Promise<void> {
    const end = Date.now() + deadlineMs;
    const body = JSON.stringify(upsert(id, chat, text));
    for (;;) {
      this.history.add({ src: 'load', type: 'post', id, chat, text, at: Date.now() });
      try {
        const res = await fetch(`${this.url}/webhook/evolution/bot?token=${this.token}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(5000),
        });
        const json = (await res.json().catch(() => ({}))) as { status?: string; trace_id?: string | null };
        this.history.add({
          src: 'load',
          type: 'ack',
          id,
          http: res.status,
          status: json.status ?? 'error',
          traceId: json.trace_id ?? null,
          at: Date.now(),
        });
        if (res.status === 200) return;
      } catch (_err) {
        this.history.add({ src: 'load', type: 'ack', id, http: 0, status: 'error', traceId: null, at: Date.now() });
      }
      if (Date.now() > end) throw new Error(`webhook ${id} never acked`);
      await Bun.sleep(50);
    }
  }

  /** Waits until the gateway has `expected` rows and none is unfinished (reads its database file). */
  async settled(expected: number, timeoutMs = 30_000): Promise<void> {
    const db = new Database(this.dbPath);
    try {
      await until(() => {
        const r = db
          .query<{ total: number; open: number }, []>(
            "SELECT COUNT(*) AS total, COALESCE(SUM(status IN ('pending','processing')), 0) AS open FROM inbox",
          )
          .get()!;
        return r.total >= expected && r.open === 0;
      }, timeoutMs);
    } finally {
      db.close();
    }
  }

  /** Appends the stand-ins' records and the gateway's own view (from its database) to the history. */
  collect(): void {
    for (const r of this.agent.requests)
      this.history.add({ src: 'agent', type: 'call', key: r.idempotencyKey, message: r.message, at: r.at });
    for (const s of this.evo.sent)
      this.history.add({ src: 'channel', type: 'send', number: s.number, text: s.text, at: s.at });
    const db = new Database(this.dbPath);
    try {
      const rows = db
        .query<
          {
            id: string;
            provider_message_id: string;
            conversation_id: string;
            seq: number;
            status: string;
            response_text: string | null;
            possible_duplicate: number;
            attempts: number;
            runs: number;
          },
          []
        >(
          `SELECT i.id, i.provider_message_id, i.conversation_id, i.seq, i.status, i.response_text, i.possible_duplicate, i.attempts,
                (SELECT COUNT(*) FROM trace_steps s WHERE s.trace_id = i.id AND s.step = 'agent_called' AND s.status = 'success') AS runs
         FROM inbox i ORDER BY i.seq`,
        )
        .all();
      for (const r of rows) {
        this.history.add({
          src: 'gateway',
          type: 'trace',
          traceId: r.id,
          providerId: r.provider_message_id,
          conversationId: r.conversation_id,
          seq: r.seq,
          status: r.status,
          responseText: r.response_text,
          possibleDuplicate: r.possible_duplicate,
          agentRuns: r.runs,
          attempts: r.attempts,
        });
      }
      const one = (sql: string) => db.query<{ n: number }, []>(sql).get()!.n;
      this.history.add({
        src: 'gateway',
        type: 'summary',
        inboxUnfinished: one("SELECT COUNT(*) AS n FROM inbox WHERE status IN ('pending','processing')"),
        outboxSending: one("SELECT COUNT(*) AS n FROM outbox WHERE status = 'sending'"),
        deadLetters: one('SELECT COUNT(*) AS n FROM dead_letters'),
      });
    } finally {
      db.close();
    }
  }

  async dispose(keepFiles = false): Promise<void> {
    if (this.current && this.current.proc.exitCode === null && this.current.proc.signalCode === null)
      this.current.proc.kill('SIGKILL');
    await this.current?.exited;
    await this.evo?.stop();
    await this.agent?.stop();
    if (!keepFiles) rmSync(this.dir, { recursive: true, force: true });
  }
}

export function upsert(id: string, chat: string, text: string) {
  return {
    event: 'messages.upsert',
    instance: 'bot',
    data: {
      key: { remoteJid: `${chat}@s.whatsapp.net`, fromMe: false, id },
      pushName: 'Load',
      messageTimestamp: 1765375800,
      message: { conversation: text },
    },
  };
}

export async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms`);
    await Bun.sleep(20);
  }
}

/** Runs fn over items with at most `n` in flight. */
export async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}
