// Starts the real gateway (`bun src/main.ts`) as a child process on a temp database for benchmarks.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dir, '..');
export const BENCH_KEY = 'bench-admin-key-0123456789abcdef';

export interface BenchGateway {
  url: string;
  pid: number;
  dbPath: string;
  rssBytes(): number;
  /** CPU time used so far (ms): the main JS thread alone, and the whole process (all threads). */
  cpuMs(): { main: number; total: number };
  /** Sets a runtime setting (PUT /api/v2/settings/:key), e.g. a rate limit a benchmark would hit. */
  setSetting(key: string, value: unknown): Promise<void>;
  /** Creates an Evolution instance; returns its webhook URL (with token). */
  createInstance(name: string, body: Record<string, unknown>): Promise<string>;
  stop(): Promise<void>;
}

export async function startBenchGateway(env: Record<string, string> = {}): Promise<BenchGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'sb-bench-'));
  const probe = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response('') });
  const port = probe.port!;
  probe.stop(true);
  const dbPath = join(dir, 'gw.db');
  let err = '';
  const proc = Bun.spawn(
    [
      process.execPath,
      ...(process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []),
      ...(process.env.BENCH_PRELOAD ? ['--preload', process.env.BENCH_PRELOAD] : []),
      'src/main.ts',
    ],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        DATABASE_PATH: dbPath,
        PORT: String(port),
        HOST: '127.0.0.1',
        SWITCHBOARD_API_KEY: BENCH_KEY,
        LOG_LEVEL: 'error',
        SWITCHBOARD_CRASH_AT: '',
        ...env,
      },
      stdout: 'ignore',
      stderr: 'pipe',
    },
  );
  void (async () => {
    for await (const c of proc.stderr as ReadableStream<Uint8Array>) err += new TextDecoder().decode(c);
  })();
  const url = `http://127.0.0.1:${port}`;
  const end = Date.now() + 15_000;
  for (;;) {
    try {
      if ((await fetch(`${url}/health`)).ok) break;
    } catch {}
    if (proc.exitCode !== null || Date.now() > end) throw new Error(`gateway did not start: ${err}`);
    await Bun.sleep(20);
  }
  return {
    url,
    pid: proc.pid,
    dbPath,
    rssBytes: () => procRss(proc.pid),
    cpuMs: () => procCpuMs(proc.pid),
    async setSetting(key, value) {
      const res = await fetch(`${url}/api/v2/settings/${key}`, {
        method: 'PUT',
        headers: { 'x-api-key': BENCH_KEY, 'content-type': 'application/json' },
        body: JSON.stringify({ value }),
      });
      if (!res.ok) throw new Error(`setting ${key}: ${res.status} ${await res.text()}`);
    },
    async createInstance(name, body) {
      const res = await fetch(`${url}/api/v1/instances`, {
        method: 'POST',
        headers: { 'x-api-key': BENCH_KEY, 'content-type': 'application/json' },
        body: JSON.stringify({ name, ...body }),
      });
      const j = (await res.json()) as { webhook_url: string };
      if (res.status !== 201) throw new Error(`create instance ${res.status}: ${JSON.stringify(j)}`);
      const u = new URL(j.webhook_url);
      return `${url}${u.pathname}${u.search}`;
    },
    async stop() {
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await proc.exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Resident set size of a process (bytes), from /proc. */
export function procRss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** CPU time a process used so far (ms): its main thread alone, and all its threads. */
export function procCpuMs(pid: number): { main: number; total: number } {
  // utime + stime are fields 14 and 15 of /proc/.../stat, in clock ticks (100 per second on Linux).
  const ticks = (file: string) => {
    const f = readFileSync(file, 'utf8');
    const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) * 10;
  };
  return { main: ticks(`/proc/${pid}/task/${pid}/stat`), total: ticks(`/proc/${pid}/stat`) };
}

export function upsertBody(id: string, chat: string, text: string): string {
  return JSON.stringify({
    event: 'messages.upsert',
    instance: 'bench',
    data: {
      key: { remoteJid: `${chat}@s.whatsapp.net`, fromMe: false, id },
      pushName: 'Bench',
      messageTimestamp: 1765375800,
      message: { conversation: text },
    },
  });
}
