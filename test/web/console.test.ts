// The web console in a real browser: Debian's Chromium driven by playwright-core against a real
// gateway on 127.0.0.1, with local stand-ins for Evolution, a streaming AG-UI agent and a Baileys
// socket. Screenshots go to test-artifacts/web/ (kept by CI, not committed).
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jsQR from 'jsqr';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { PNG } from 'pngjs';
import { silentLogger } from '../../src/log.ts';
import { webConsole } from '../../src/web/index.ts';
import { type FakeAgent, startFakeAgent } from '../fakes/agents.ts';
import { fakeSocketFactory } from '../fakes/baileys-socket.ts';
import { type FakeEvolution, startFakeEvolution } from '../fakes/evolution.ts';
import { ADMIN_KEY, createTestGateway } from '../helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(import.meta.dir, '..', '..', 'test-artifacts', 'web');
const REPLY = 'Hello Pavan! Here is a streamed answer that arrives a few characters at a time.';

let evo: FakeEvolution;
let agent: FakeAgent;
let sockets: ReturnType<typeof fakeSocketFactory>;
let t: ReturnType<typeof createTestGateway>;
let base: string;
let userDataDir: string;
let context: BrowserContext;
let page: Page;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does this)`);
  mkdirSync(SHOTS, { recursive: true });
  evo = await startFakeEvolution({ apikey: 'EVO-KEY-123456' });
  // Slow enough that the browser sees the reply grow: ~20 deltas of 4 characters, 90 ms apart,
  // after a short think so the conversation page is open before the first delta.
  agent = startFakeAgent({ protocol: 'agui', reply: () => REPLY, deltaChars: 4, deltaDelayMs: 90, latencyMs: 600 });
  sockets = fakeSocketFactory();
  t = createTestGateway(
    { PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20' },
    { pipeline: { adapterDeps: { baileysSocketFactory: sockets.factory } } },
  );
  await t.gw.start();
  t.app.listen({ port: 0, hostname: '127.0.0.1' });
  base = `http://127.0.0.1:${t.app.server!.port}`;
  userDataDir = mkdtempSync(join(tmpdir(), 'switchboard-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
    viewport: { width: 1280, height: 860 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(8000);
}, 30_000);

afterAll(async () => {
  await context?.close();
  await t?.app.stop(true);
  await t?.close();
  await evo?.stop();
  await agent?.stop();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
}, 15_000);

const label = (text: string) => page.getByLabel(text, { exact: true });
const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

async function until<T>(fn: () => T | Promise<T>, ms = 8000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error('timed out waiting');
    await Bun.sleep(20);
  }
}

describe('web console in Chromium', () => {
  test('sign in: a wrong key is refused with the API message, the right one opens the console', async () => {
    await page.goto(base);
    await label('API key').fill('not-a-key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expectVisible(page.locator('.alert.error'));
    expect(await page.locator('.alert.error').innerText()).toContain('UNAUTHORIZED');
    await label('API key').fill(ADMIN_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    // The overview is the landing page (test/web/overview.test.ts); the instances are one link away.
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.getByRole('link', { name: 'Instances', exact: true }).click();
    await page.getByRole('heading', { name: 'Instances' }).waitFor();
    await page.locator('.live-state.live-live').waitFor();
    // The key lives in this tab's sessionStorage only.
    expect(await page.evaluate(() => sessionStorage.getItem('switchboard.apiKey'))).toBe(ADMIN_KEY);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    await shot('01-instances-empty');
  }, 20_000);

  test("create an instance through the form; a bad name shows the API's problem next to the field", async () => {
    await page.getByRole('link', { name: 'New instance' }).click();
    await label('Name').fill('Bad Name!');
    await label('Channel').selectOption('whatsapp-evolution');
    await page.getByRole('button', { name: 'Create instance' }).click();
    const nameError = page.locator(`#${(await label('Name').getAttribute('aria-describedby'))!.split(' ').at(-1)!}`);
    await expectVisible(nameError);
    expect(await nameError.innerText()).toContain('must be a slug');
    expect(await label('Name').getAttribute('aria-invalid')).toBe('true');
    // Missing Evolution fields are reported beside their own inputs too.
    expect(await page.locator('.field-error').allInnerTexts()).toContainEqual(
      expect.stringContaining('is required for a whatsapp-evolution instance'),
    );
    await shot('02-validation-error');

    await label('Name').fill('support-bot');
    await label('Evolution API URL').fill(evo.url);
    await label('Evolution API key').fill(evo.apikey);
    await label('Agent URL').fill(agent.url);
    await label('Agent protocol').selectOption('agui');
    await page.getByRole('button', { name: 'Create instance' }).click();
    const row = page.locator('tr[data-instance="support-bot"]');
    await row.waitFor();
    expect(await row.innerText()).toContain('whatsapp-evolution');
    const created = await t.call('GET', '/api/v2/instances/support-bot');
    expect(created.body.data.agent.url).toBe(agent.url);
    expect(created.body.data.agent.type).toBe('agui');
    expect(created.body.data.channelConfig.evolutionUrl).toBe(evo.url);
  }, 20_000);

  test("a conversation shows the agent's reply growing as it streams, then the final reply and its steps", async () => {
    const inst = (await t.call('GET', '/api/v2/instances/support-bot')).body.data;
    const token = new URL(inst.webhookUrl).searchParams.get('token');
    const hook = await t.call(
      'POST',
      `/webhook/evolution/support-bot?token=${token}`,
      {
        event: 'messages.upsert',
        instance: 'support-bot',
        data: {
          key: { remoteJid: '15551234567@s.whatsapp.net', fromMe: false, id: 'web-1' },
          pushName: 'Pavan',
          messageTimestamp: 1765375800,
          message: { conversation: 'tell me something' },
        },
      },
      { 'x-api-key': '' },
    );
    expect(hook.status).toBe(200);
    const traceId: string = hook.body.trace_id;

    await page.getByRole('link', { name: 'Conversations', exact: true }).first().click();
    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
    await page.locator('tr[data-conversation] a').first().click();
    const reply = page.locator(`[data-reply-for="${traceId}"] .reply-text`);
    await reply.waitFor({ state: 'attached' });

    // Sample the reply as the browser shows it until it is complete.
    const seen: string[] = [];
    const end = Date.now() + 15000;
    for (;;) {
      const text = await reply.textContent();
      if (text !== null && text !== seen.at(-1)) seen.push(text);
      if (text === REPLY) break;
      if (Date.now() > end) throw new Error(`reply never completed; saw ${JSON.stringify(seen)}`);
      if (seen.length === 3) await shot('03-conversation-streaming');
      await Bun.sleep(15);
    }
    const partial = seen.filter((s) => s !== '' && s !== REPLY);
    expect(partial.length).toBeGreaterThanOrEqual(3);
    for (const s of partial) expect(REPLY.startsWith(s)).toBe(true);
    for (let i = 1; i < partial.length; i++) expect(partial[i]!.length).toBeGreaterThan(partial[i - 1]!.length);

    // It stays equal to what was delivered, and the trace steps appear beside the message.
    await evo.waitForSent(1);
    expect(evo.sent[0]!.text).toBe(REPLY);
    const steps = page.locator(`[data-trace="${traceId}"] .turn-steps`);
    await until(
      async () => (await steps.innerText()).includes('agent called') && (await steps.innerText()).includes('completed'),
    );
    expect(await reply.textContent()).toBe(REPLY);
    await shot('04-conversation-done');

    // Phone width: the same view fits without sideways scrolling.
    await page.setViewportSize({ width: 390, height: 844 });
    await Bun.sleep(100);
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
    await shot('05-conversation-phone');
    await page.setViewportSize({ width: 1280, height: 860 });

    // Traces page: the step timeline with durations.
    await page.goto(`${base}/#/traces/${traceId}`);
    await page.getByRole('heading', { name: 'Steps' }).waitFor();
    const agentStep = page.locator('li.step[data-step="agent_called"]');
    await agentStep.waitFor();
    expect(await agentStep.locator('.step-ms').innerText()).toMatch(/^\d+(\.\d+)? (ms|s)$/);
    await shot('06-trace');
  }, 20_000);

  test('pairing a WhatsApp (Baileys) instance shows the QR as an image and turns "connected" by itself', async () => {
    await page.goto(`${base}/#/instances/new`);
    await label('Name').fill('wa-phone');
    await label('Channel').selectOption('whatsapp-baileys');
    await page.getByRole('button', { name: 'Create instance' }).click();
    // The form goes straight to pairing for an active Baileys instance.
    await page.getByRole('heading', { name: 'Pair wa-phone' }).waitFor();
    const socket = await until(() => sockets.sockets.at(-1));
    const qrPayload = '2@web-console-test-qr,BASE64KEY=,IDENTITY=,ADV=';
    socket.emitQr(qrPayload);

    const img = page.locator('img.qr');
    await img.waitFor();
    const src = (await img.getAttribute('src'))!;
    expect(src.startsWith('data:image/png;base64,')).toBe(true);
    // The image is a real QR of what the socket produced.
    const png = PNG.sync.read(Buffer.from(src.slice('data:image/png;base64,'.length), 'base64'));
    expect(jsQR(new Uint8ClampedArray(png.data), png.width, png.height)?.data).toBe(qrPayload);
    expect(await img.evaluate((el: HTMLImageElement) => el.complete && el.naturalWidth > 0)).toBe(true);
    await shot('07-pairing-qr');

    // A new QR round replaces the image without a reload.
    socket.emitQr(`${qrPayload}ROUND2`);
    await until(async () => (await img.getAttribute('src')) !== src);

    // The pairing-code alternative shows the code the socket returned for that phone.
    await label('Phone number (international format)').fill('+15551234567');
    await page.getByRole('button', { name: 'Get pairing code' }).click();
    await page.locator('.pair-code').waitFor();
    expect(await page.locator('.pair-code').innerText()).toBe(socket.pairingCode);
    expect(sockets.calls.some((c) => c.kind === 'pairing' && c.phone.replace(/\D/g, '') === '15551234567')).toBe(true);

    const id = (await t.call('GET', '/api/v2/instances/wa-phone')).body.data.id;
    const badge = page.locator(`[data-status-for="${id}"]`);
    socket.emitOpen();
    await page.locator('.connected').waitFor();
    expect(await page.locator('.connected').innerText()).toContain('Connected');
    expect(await badge.innerText()).toBe('connected');
    expect(await page.locator('img.qr').count()).toBe(0);
    await shot('08-pairing-connected');
  }, 20_000);

  test('the instance list shows the live status; deactivate, and delete only after confirming', async () => {
    await page.goto(`${base}/#/instances`);
    const row = page.locator('tr[data-instance="wa-phone"]');
    await row.waitFor();
    expect(await row.locator('.badge').innerText()).toBe('connected');

    const bot = page.locator('tr[data-instance="support-bot"]');
    await bot.getByRole('button', { name: 'Deactivate' }).click();
    await bot.getByRole('button', { name: 'Activate' }).waitFor();
    expect((await t.call('GET', '/api/v2/instances/support-bot')).body.data.isActive).toBe(false);

    page.once('dialog', (d) => void d.dismiss());
    await row.getByRole('button', { name: 'Delete' }).click();
    await Bun.sleep(200);
    expect((await t.call('GET', '/api/v2/instances/wa-phone')).status).toBe(200);
    page.once('dialog', (d) => void d.accept());
    await row.getByRole('button', { name: 'Delete' }).click();
    await row.waitFor({ state: 'detached' });
    expect((await t.call('GET', '/api/v2/instances/wa-phone')).status).toBe(404);
  }, 20_000);

  test("keys page shows a created key once (or the API's error when the keys API is absent)", async () => {
    await page.goto(`${base}/#/keys`);
    await label('Name').fill('ci-reader');
    await label('events:read').check();
    const probe = await t.call('GET', '/api/v2/keys');
    await page.getByRole('button', { name: 'Create key' }).click();
    if (probe.status === 200) {
      const key = page.locator('code.new-key');
      await key.waitFor();
      const plaintext = await key.innerText();
      // The key shown works against the API with the scope it was given.
      expect((await t.call('GET', '/api/v2/traces', undefined, { 'x-api-key': plaintext })).status).toBe(200);
      await page.reload();
      await page.getByRole('heading', { name: 'API keys' }).waitFor();
      expect(await page.locator('code.new-key').count()).toBe(0);

      // Signing in with that narrower key works; pages it may not read show the API's refusal.
      await page.getByRole('button', { name: 'Sign out' }).click();
      await label('API key').fill(plaintext);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('heading', { name: 'Overview' }).waitFor();
      await page.getByRole('link', { name: 'Instances', exact: true }).click();
      await page.getByRole('heading', { name: 'Instances' }).waitFor();
      await page.locator('.alert.error').waitFor();
      expect(await page.locator('.alert.error').innerText()).toContain('FORBIDDEN');
      await page.getByRole('link', { name: 'Traces', exact: true }).click();
      await page.locator('tr[data-trace]').first().waitFor();
    } else {
      const alert = page.locator('.alert.error').first();
      await alert.waitFor();
      expect(await alert.innerText()).toContain(probe.body.error.message);
    }
    await shot('09-keys');
  }, 20_000);

  test('keyboard: every nav link and the sign-out button are reachable with Tab and show a focus ring', async () => {
    await page.goto(`${base}/#/instances`);
    await page.getByRole('heading', { name: 'Instances' }).waitFor();
    const reached = new Set<string>();
    for (let i = 0; i < 12; i++) {
      await page.keyboard.press('Tab');
      const info = await page.evaluate(() => {
        const el = document.activeElement as HTMLElement | null;
        return el ? { text: el.textContent?.trim() ?? '', outline: getComputedStyle(el).outlineStyle } : null;
      });
      if (info) {
        reached.add(info.text);
        if (['Traces', 'Sign out'].includes(info.text)) expect(info.outline).not.toBe('none');
      }
    }
    for (const name of ['Overview', 'Instances', 'Conversations', 'Traces', 'Dead letters', 'Keys', 'Sign out'])
      expect(reached).toContain(name);
  }, 20_000);
});

describe('web console serving', () => {
  test('pages need no key, stay out of OpenAPI, and load nothing from other origins', async () => {
    const res = await fetch(`${base}/`);
    expect(res.status).toBe(200);
    const html = await res.text();
    expect(html).not.toMatch(/https?:\/\//);
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    const js = await (await fetch(`${base}/app.js`)).text();
    expect(js).not.toMatch(/https?:\/\/(?!127\.0\.0\.1)[a-z]/i);
    const css = await (await fetch(`${base}/app.css`)).text();
    expect(css).not.toMatch(/@import|url\(/);
    const spec = await t.call('GET', '/docs/json');
    expect(Object.keys(spec.body.paths).filter((p) => ['/', '/app.js', '/app.css'].includes(p))).toEqual([]);
  }, 20_000);

  test('a console that fails to build answers 500 with the reason while the API keeps working', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchboard-web-'));
    const entry = join(dir, 'broken.ts');
    writeFileSync(entry, 'import { nothing } from "../does-not-exist.ts";\nconsole.log(nothing);\n');
    try {
      const app = webConsole({ log: silentLogger }, { entry });
      const res = await app.handle(new Request('http://localhost/'));
      expect(res.status).toBe(500);
      const body = await res.text();
      expect(body).toContain('could not be built');
      expect(body).toContain('does-not-exist');
      expect((await app.handle(new Request('http://localhost/app.js'))).status).toBe(500);
      expect((await t.call('GET', '/api/v2/instances')).status).toBe(200);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function expectVisible(locator: ReturnType<Page['locator']>) {
  await locator.first().waitFor({ state: 'visible' });
}
