// The real `switchboard` binary (bun cli/main.ts, a child process) against a gateway listening on
// 127.0.0.1 in this process, with an Evolution stand-in as the WhatsApp channel: create, send,
// conversations, traces (listed and followed live over /ws), dead letters, keys, login, pairing
// by QR, --json output and the documented exit codes. Pairing also runs against the Baileys
// stand-in socket (QR drawn and pairing code), the channel whose QR the gateway itself makes.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jsQR from 'jsqr';
import { PNG } from 'pngjs';
import { fakeSocketFactory } from '../fakes/baileys-socket.ts';
import { evolutionUpsert, until, useFakeEvolutionAndAgent } from '../fixtures.ts';
import { ADMIN_KEY, createTestGateway } from '../helpers.ts';

const CLI = join(import.meta.dir, '../../cli/main.ts');
const fakes = useFakeEvolutionAndAgent({ evolution: { apikey: 'EVO-KEY-CLI' }, agent: { protocol: 'json' } });
// Every whatsapp-baileys instance of the gateway connects through one of these.
const baileys = fakeSocketFactory();

let t: ReturnType<typeof createTestGateway>;
let server: { stop(force?: boolean): Promise<void> | void };
let base: string;
let home: string;

beforeAll(async () => {
  t = createTestGateway(
    { PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20', PIPELINE_MAX_ATTEMPTS: '2' },
    { pipeline: { adapterDeps: { baileysSocketFactory: baileys.factory } } },
  );
  await t.gw.start();
  const listening = t.app.listen({ port: 0, hostname: '127.0.0.1' });
  server = listening.server!;
  base = `http://127.0.0.1:${listening.server!.port}`;
  home = mkdtempSync(join(tmpdir(), 'switchboard-cli-'));
});
afterAll(async () => {
  await server.stop(true);
  await t.close();
});

function env(extra: Record<string, string | undefined> = {}) {
  // An empty HOME: no config file unless a test writes one; nothing of the real user's.
  const e: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: home };
  for (const [k, v] of Object.entries({ SWITCHBOARD_URL: base, SWITCHBOARD_API_KEY: ADMIN_KEY, ...extra }))
    if (v !== undefined) e[k] = v;
  return e;
}

function spawn(args: string[], extraEnv: Record<string, string | undefined> = {}) {
  return Bun.spawn([process.execPath, CLI, ...args], { env: env(extraEnv), stdout: 'pipe', stderr: 'pipe' });
}

async function cli(args: string[], extraEnv: Record<string, string | undefined> = {}) {
  const p = spawn(args, extraEnv);
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { stdout, stderr, code };
}

/** Reads a child's stream into a growing string. */
function collect(stream: ReadableStream<Uint8Array>) {
  const acc = { text: '' };
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of stream) acc.text += dec.decode(chunk, { stream: true });
  })();
  return acc;
}

async function createEvolutionInstance(name: string, extra: string[] = []) {
  const r = await cli([
    'instances',
    'create',
    name,
    '--channel',
    'whatsapp-evolution',
    '--set',
    `evolutionUrl=${fakes.evo.url}`,
    '--set',
    `evolutionKey=${fakes.evo.apikey}`,
    '--agent-url',
    fakes.agent.url,
    '--json',
    ...extra,
  ]);
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as { id: string; name: string; webhookUrl: string };
}

/** A whatsapp-baileys instance made by the CLI, and the stand-in socket it connected with. */
async function createBaileysInstance(name: string) {
  const before = baileys.sockets.length;
  const r = await cli(['instances', 'create', name, '--channel', 'whatsapp-baileys', '--agent-url', fakes.agent.url]);
  expect(r.code).toBe(0);
  await until(() => baileys.sockets.length > before, 10_000, 'the Baileys socket');
  return baileys.last();
}

/** The last QR drawing on stdout (the half-block rows above its "Scan with WhatsApp" line), decoded. */
function lastDrawnQr(stdout: string): string | null {
  const lines = stdout.split('\n');
  const scan = lines.findLastIndex((l) => l.startsWith('Scan with WhatsApp'));
  let start = scan;
  while (start > 0 && /^[█▀▄ ]+$/.test(lines[start - 1])) start--;
  return decodeDrawing(lines.slice(start, scan));
}

const inbound = async (inst: { name: string; webhookUrl: string }, id: string, text: string, phone: string) => {
  const token = new URL(inst.webhookUrl).searchParams.get('token')!;
  const res = await fetch(`${base}/webhook/evolution/${inst.name}?token=${token}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(evolutionUpsert({ id, text, phone, name: 'Caio' })),
  });
  expect(res.status).toBe(200);
};

describe('switchboard CLI', () => {
  test('instances create/list/show/delete, in tables and as JSON', async () => {
    const created = await createEvolutionInstance('cli-crud');
    expect(created).toMatchObject({ name: 'cli-crud' });
    const list = await cli(['instances', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n')[0]).toMatch(/^NAME\s+ID\s+CHANNEL\s+STATUS\s+ACTIVE$/);
    expect(list.stdout).toContain(`cli-crud  ${created.id}`);
    const listed = JSON.parse((await cli(['instances', 'list', '--json'])).stdout);
    expect(listed.map((i: any) => i.name)).toContain('cli-crud');
    const shown = JSON.parse((await cli(['--json', 'instances', 'show', 'cli-crud'])).stdout);
    expect(shown).toMatchObject({ id: created.id, live: { channel: 'whatsapp-evolution' } });
    const del = await cli(['instances', 'delete', 'cli-crud']);
    expect(del).toMatchObject({ code: 0, stdout: 'Deleted cli-crud\n' });
    expect(t.gw.instances.resolve('cli-crud')).toBeNull();
  });

  test('send reaches the stand-in once per idempotency key; conversations and traces read it back', async () => {
    const inst = await createEvolutionInstance('cli-send');
    const sent = await cli([
      'send',
      'cli-send',
      '15550007777',
      'hello',
      'from',
      'the',
      'cli',
      '--idempotency-key',
      'k-1',
    ]);
    expect(sent.code).toBe(0);
    expect(sent.stdout).toMatch(/^Sent \S+ \(platform id 3EB0\w+\)\n$/);
    const again = await cli([
      'send',
      'cli-send',
      '15550007777',
      'hello from the cli',
      '--idempotency-key',
      'k-1',
      '--json',
    ]);
    expect(again.code).toBe(0);
    const result = JSON.parse(again.stdout);
    expect(result.status).toBe('sent');
    expect(fakes.evo.sentTo('15550007777')).toEqual(['hello from the cli']);

    const traces = JSON.parse((await cli(['traces', '--instance', 'cli-send', '--json'])).stdout);
    expect(traces.map((x: any) => x.id)).toEqual([result.messageId]);
    const one = await cli(['traces', result.messageId]);
    expect(one.code).toBe(0);
    expect(one.stdout).toContain('STEP');
    expect(one.stdout).toContain('completed');

    const convs = JSON.parse((await cli(['conversations', '--instance', inst.id, '--json'])).stdout);
    expect(convs).toHaveLength(1);
    const conv = await cli(['conversations', convs[0].id]);
    expect(conv.stdout).toContain('api: hello from the cli');
  });

  test('traces --follow prints a message as it finishes, live over /ws', async () => {
    const inst = await createEvolutionInstance('cli-follow');
    const p = spawn(['traces', '--follow', '--json', '--instance', 'cli-follow']);
    const stdout = collect(p.stdout);
    const stderr = collect(p.stderr);
    try {
      await until(() => stderr.text.includes('Following traces'), 10_000, 'the subscription');
      await inbound(inst, 'CLI-LIVE-1', 'live one', '15550008888');
      await until(() => stdout.text.includes('live one'), 10_000, 'the followed trace');
      const line = stdout.text.split('\n').find((l) => l.includes('live one'))!;
      const trace = JSON.parse(line);
      expect(trace).toMatchObject({ instanceName: 'cli-follow', text: 'live one', responseText: 'echo: live one' });
    } finally {
      p.kill();
      await p.exited;
    }
  });

  test('dead-letters list and replay', async () => {
    const inst = await createEvolutionInstance('cli-dead');
    fakes.agent.setBehaviour({ failTimes: 1_000 });
    try {
      await inbound(inst, 'CLI-DEAD-1', 'doomed', '15550009999');
      let dead: any[] = [];
      await until(async () => {
        dead = JSON.parse((await cli(['dead-letters', 'list', '--instance', inst.id, '--json'])).stdout);
        return dead.length === 1;
      }, 10_000);
      expect((await cli(['dead-letters', 'list'])).stdout).toContain(dead[0].id);
      fakes.agent.setBehaviour({ failTimes: 0 });
      const replay = await cli(['dead-letters', 'replay', dead[0].id]);
      expect(replay.code).toBe(0);
      expect(replay.stdout).toContain(`trace ${dead[0].traceId} is pending`);
      await until(() => fakes.evo.sentTo('15550009999').includes('echo: doomed'), 10_000, 'the replayed reply');
    } finally {
      fakes.agent.setBehaviour({ failTimes: 0 });
    }
  });

  test('keys create, list and revoke; a revoked key is a bad key (exit 1, UNAUTHORIZED)', async () => {
    const created = await cli([
      'keys',
      'create',
      'ci bot',
      '--scope',
      'instances:read',
      '--scope',
      'messages:send',
      '--json',
    ]);
    expect(created.code).toBe(0);
    const k = JSON.parse(created.stdout);
    expect(k.scopes).toEqual(['instances:read', 'messages:send']);
    expect((await cli(['instances', 'list'], { SWITCHBOARD_API_KEY: k.key })).code).toBe(0);
    expect((await cli(['keys', 'list'])).stdout).toContain(`${k.id}`);
    const revoked = await cli(['keys', 'revoke', k.id]);
    expect(revoked).toMatchObject({ code: 0, stdout: `Revoked ${k.id} (ci bot)\n` });
    const refused = await cli(['instances', 'list'], { SWITCHBOARD_API_KEY: k.key });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain('UNAUTHORIZED');
  });

  test('exit codes: unknown instance 1, bad key 1, unreachable 3, usage 2; errors come from the envelope', async () => {
    const unknown = await cli(['instances', 'show', 'no-such-instance']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toBe("switchboard: NOT_FOUND: Instance 'no-such-instance' not found\n");
    const asJson = await cli(['instances', 'show', 'no-such-instance', '--json']);
    expect(JSON.parse(asJson.stderr).error.code).toBe('NOT_FOUND');

    const badKey = await cli(['instances', 'list', '--key', 'sb_wrong']);
    expect(badKey.code).toBe(1);
    expect(badKey.stderr).toContain('UNAUTHORIZED: Invalid, expired or revoked API key');

    const dead = Bun.serve({ port: 0, hostname: '127.0.0.1', fetch: () => new Response('') });
    const deadUrl = `http://127.0.0.1:${dead.port}`;
    dead.stop(true);
    const unreachable = await cli(['instances', 'list'], { SWITCHBOARD_URL: deadUrl });
    expect(unreachable.code).toBe(3);
    expect(unreachable.stderr).toContain(`cannot reach ${deadUrl}`);

    expect((await cli(['send', 'only-instance'])).code).toBe(2);
    expect((await cli(['no-such-command'])).code).toBe(2);
    expect((await cli(['instances', 'list', '--limit', 'many'])).code).toBe(2);
    const noKey = await cli(['instances', 'list'], { SWITCHBOARD_API_KEY: undefined });
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('no API key');

    const invalid = await cli(['send', 'cli-send', 'not-a-number', 'hi']);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toContain('VALIDATION_ERROR');
  });

  test('login saves url and key (mode 0600); later commands need no flags or env', async () => {
    const cfgHome = mkdtempSync(join(tmpdir(), 'switchboard-login-'));
    const noEnv = { SWITCHBOARD_URL: undefined, SWITCHBOARD_API_KEY: undefined, HOME: cfgHome };
    const bad = await cli(['login', '--url', base, '--key', 'sb_wrong'], noEnv);
    expect(bad.code).toBe(1);
    const ok = await cli(['login', '--url', base, '--key', ADMIN_KEY], noEnv);
    expect(ok.code).toBe(0);
    const path = join(cfgHome, '.config', 'switchboard', 'config.json');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ url: base, key: ADMIN_KEY });
    expect((await cli(['instances', 'list', '--json'], noEnv)).code).toBe(0);
  });

  test('pair draws the QR of the Evolution stand-in in the terminal, refreshes it, and ends once connected', async () => {
    // The stand-in knows the instance as not linked yet, so it hands out QR codes.
    fakes.evo.instances.set('evo-pair', { state: 'close', webhook: null, qrCode: null });
    await createEvolutionInstance('cli-pair', ['--set', 'whatsappInstance=evo-pair']);
    const p = spawn(['pair', 'cli-pair', '--interval', '0.1', '--timeout', '20']);
    const stdout = collect(p.stdout);
    await until(() => (stdout.text.match(/Scan with WhatsApp/g) ?? []).length >= 2, 10_000, 'two QR drawings');
    const lines = stdout.text.split('\n');
    const scan = lines.findIndex((l) => l.startsWith('Scan with WhatsApp'));
    let start = scan;
    while (start > 0 && /^[█▀▄ ]+$/.test(lines[start - 1])) start--;
    expect(decodeDrawing(lines.slice(start, scan))).toMatch(/^2@fake-evo-pair-\d+$/);
    fakes.evo.setState('evo-pair', 'open');
    expect(await p.exited).toBe(0);
    expect(stdout.text).toContain('✔ cli-pair is connected');
  });

  test('pair draws the QR of a Baileys stand-in socket, redraws a new one, and exits 0 once it opens', async () => {
    const sock = await createBaileysInstance('cli-baileys');
    const p = spawn(['pair', 'cli-baileys', '--interval', '0.1', '--timeout', '20']);
    const stdout = collect(p.stdout);
    const stderr = collect(p.stderr);
    try {
      // No QR until the socket shows one: the CLI says it waits and keeps polling.
      await until(() => stderr.text.includes('Waiting for a QR code'), 10_000, 'the waiting note');
      const first = '2@Q2xpUGFpckZpcnN0UXI5OA,ABCDEFGHIJKLMNOP,QRSTUVWXYZ012345,abcdefghijklmnop';
      sock.emitQr(first);
      await until(() => stdout.text.includes('Scan with WhatsApp'), 10_000, 'the first QR drawing');
      expect(lastDrawnQr(stdout.text)).toBe(first);
      // Baileys rotates the QR; the terminal shows the new one.
      const second = '2@Q2xpUGFpclNlY29uZFFyMg,BCDEFGHIJKLMNOPQ,RSTUVWXYZ0123456,bcdefghijklmnopq';
      sock.emitQr(second);
      await until(() => (stdout.text.match(/Scan with WhatsApp/g) ?? []).length >= 2, 10_000, 'the second drawing');
      expect(lastDrawnQr(stdout.text)).toBe(second);
      sock.emitOpen();
      expect(await p.exited).toBe(0);
      expect(stdout.text).toContain('✔ cli-baileys is connected');
      expect(t.gw.instances.resolve('cli-baileys')?.status).toBe('connected');
    } finally {
      p.kill();
      await p.exited;
    }
  });

  test('pair --phone prints the pairing code the Baileys stand-in gives, then exits 0 once it opens', async () => {
    const sock = await createBaileysInstance('cli-baileys-phone');
    sock.pairingCode = 'CLIP4IR1';
    const p = spawn([
      'pair',
      'cli-baileys-phone',
      '--phone',
      '+55 11 97777-6666',
      '--interval',
      '0.1',
      '--timeout',
      '20',
    ]);
    const stdout = collect(p.stdout);
    try {
      // Baileys takes a pairing request only once the server offers pairing (its first QR).
      sock.emitQr('2@offer,AAAA,BBBB,CCCC');
      await until(() => stdout.text.includes('Pairing code:'), 10_000, 'the pairing code');
      expect(stdout.text).toStartWith(
        'Pairing code: CLIP4IR1\nOn the phone: Linked devices → Link a device → Link with phone number.\n',
      );
      expect(baileys.calls).toContainEqual({ kind: 'pairing', phone: '5511977776666' });
      sock.emitOpen();
      expect(await p.exited).toBe(0);
      // With --phone no QR is drawn.
      expect(stdout.text).not.toContain('Scan with WhatsApp');
      expect(stdout.text).toContain('✔ cli-baileys-phone is connected');
    } finally {
      p.kill();
      await p.exited;
    }
  });

  test('pair gives up with exit code 4 when the instance never connects', async () => {
    fakes.evo.instances.set('evo-never', { state: 'close', webhook: null, qrCode: null });
    await createEvolutionInstance('cli-never', ['--set', 'whatsappInstance=evo-never']);
    const r = await cli(['pair', 'cli-never', '--interval', '0.1', '--timeout', '0.3', '--json']);
    expect(r.code).toBe(4);
    expect(JSON.parse(r.stdout.split('\n')[0])).toMatchObject({ event: 'qr' });
    expect(r.stderr).toContain('did not connect within 0.3s');
  });
});

/** Half-block drawing (light modules are ink) → PNG → jsQR: what a phone would read. */
function decodeDrawing(rows: string[]): string | null {
  const light: boolean[][] = [];
  for (const row of rows) {
    const chars = [...row];
    light.push(chars.map((c) => c === '█' || c === '▀'));
    light.push(chars.map((c) => c === '█' || c === '▄'));
  }
  const scale = 6;
  const h = light.length;
  const w = light[0].length;
  const png = new PNG({ width: w * scale, height: h * scale });
  for (let y = 0; y < h * scale; y++)
    for (let x = 0; x < w * scale; x++) {
      const v = light[Math.floor(y / scale)][Math.floor(x / scale)] ? 255 : 0;
      const i = (y * w * scale + x) * 4;
      png.data[i] = png.data[i + 1] = png.data[i + 2] = v;
      png.data[i + 3] = 255;
    }
  return jsQR(new Uint8ClampedArray(png.data), png.width, png.height)?.data ?? null;
}
