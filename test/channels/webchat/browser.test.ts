// The web chat widget in a real browser (Debian's Chromium driven by playwright-core): a page served
// from ANOTHER origin embeds /webchat.js, sends, sees the echo reply grow and complete, reloads and
// sees its history; a second browser context is another visitor and cannot read the first one's
// conversation; HTML in messages stays text; the console's demo button and Try it panels work.
// Screenshots go to test-artifacts/webchat/ (kept by CI, not committed).
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { type FakeEvolution, startFakeEvolution } from '../../fakes/evolution.ts';
import { ADMIN_KEY, createTestGateway } from '../../helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(import.meta.dir, '..', '..', '..', 'test-artifacts', 'webchat');

let t: ReturnType<typeof createTestGateway>;
let gateway: string;
let site: ReturnType<typeof Bun.serve>;
let siteOrigin: string;
let evo: FakeEvolution;
let browser: Browser;

/** The embedding page: it lives on its own origin and loads nothing but the widget script. */
function sitePage(instance: string, gatewayOrigin: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Shop</title></head>
<body><h1>A shop somewhere else</h1><p>Questions? Use the chat.</p>
<script src="${gatewayOrigin}/webchat.js" data-instance="${instance}"></script></body></html>`;
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does this)`);
  mkdirSync(SHOTS, { recursive: true });
  evo = await startFakeEvolution({ apikey: 'EVO-KEY-123456' });
  t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20' });
  await t.gw.start();
  t.app.listen({ port: 0, hostname: '127.0.0.1' });
  gateway = `http://127.0.0.1:${t.app.server!.port}`;
  site = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch(req) {
      const u = new URL(req.url);
      const instance = u.searchParams.get('chat') ?? 'site-chat';
      // A strict policy: the page may load the gateway's script and talk to it, nothing else; no inline styles.
      return new Response(sitePage(instance, gateway), {
        headers: {
          'content-type': 'text/html; charset=utf-8',
          'content-security-policy': `default-src 'none'; script-src ${gateway}; connect-src ${gateway}; style-src 'none'; img-src 'none'`,
        },
      });
    },
  });
  siteOrigin = `http://127.0.0.1:${site.port}`;
  const created = await t.call('POST', '/api/v2/instances', {
    name: 'site-chat',
    channel: 'webchat',
    agent: { type: 'echo' },
    channelConfig: { webchatAllowedOrigins: siteOrigin, webchatWelcomeText: 'Hello! Ask <b>anything</b>.' },
  });
  expect(created.status).toBe(201);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update'],
  });
}, 30_000);

afterAll(async () => {
  await browser?.close();
  site?.stop(true);
  await t?.app.stop(true);
  await t?.close();
  await evo?.stop();
}, 15_000);

async function until<T>(fn: () => T | Promise<T>, ms = 10_000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error('timed out waiting');
    await Bun.sleep(15);
  }
}

/** Texts of the widget's message bubbles (inside its shadow root), in order. */
const bubbles = (page: Page, dir: 'in' | 'out') =>
  page.evaluate((d) => {
    const host = document.querySelector('[data-switchboard-webchat]');
    return [...(host?.shadowRoot?.querySelectorAll(`.msg.${d} .text`) ?? [])].map((e) => e.textContent ?? '');
  }, dir);

async function newVisitor(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 390, height: 760 } }); // a phone-width screen
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  (page as unknown as { errors: string[] }).errors = errors;
  return { context, page };
}

describe('widget embedded on another origin', () => {
  let first: { context: BrowserContext; page: Page };
  const message = 'Hello <b>there</b>, please echo these words back to me one at a time';
  const xss = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';

  test('send a message and see the echo grow and complete; HTML stays text', async () => {
    first = await newVisitor();
    const { page } = first;
    await page.goto(`${siteOrigin}/`);
    // Keyboard: the bubble is a button reachable with Tab; Enter opens the panel and focuses the input.
    const bubble = page.getByRole('button', { name: 'Open chat' });
    await bubble.waitFor();
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.getAttribute('data-switchboard-webchat'))).toBe(
      'site-chat',
    );
    await page.keyboard.press('Enter');
    const input = page.getByRole('textbox', { name: 'Message' });
    await input.waitFor();
    await until(async () => (await bubbles(page, 'out')).includes('Hello! Ask <b>anything</b>.'));
    expect(await input.evaluate((e) => e === (e.getRootNode() as ShadowRoot).activeElement)).toBe(true);

    // Watch the reply bubble's text from inside the page, so every intermediate state is seen.
    await page.evaluate(() => {
      const w = window as unknown as { seen: string[] };
      w.seen = [];
      const root = document.querySelector('[data-switchboard-webchat]')!.shadowRoot!;
      new MutationObserver(() => {
        const out = [...root.querySelectorAll('.msg.out .text')].map((e) => e.textContent ?? '');
        const last = out.at(-1) ?? '';
        if (w.seen.at(-1) !== last) w.seen.push(last);
      }).observe(root, { subtree: true, childList: true, characterData: true });
    });
    await input.fill(message);
    await page.keyboard.press('Enter');
    await until(async () => (await bubbles(page, 'out')).includes(message));
    const seen = await page.evaluate(() => (window as unknown as { seen: string[] }).seen);
    const partial = seen.filter((s) => s && s !== message && message.startsWith(s) && s !== '…');
    // It grew: several partial texts, each longer than the last, before the complete reply.
    expect(partial.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < partial.length; i++) expect(partial[i].length).toBeGreaterThan(partial[i - 1].length);
    expect(await bubbles(page, 'in')).toEqual([message]);
    await page.screenshot({ path: join(SHOTS, '01-echo.png') });

    // Markup in a message is shown as text: no element is created, no script runs.
    await input.fill(xss);
    await page.keyboard.press('Enter');
    await until(async () => (await bubbles(page, 'out')).includes(xss));
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined();
    const markup = await page.evaluate(() => {
      const root = document.querySelector('[data-switchboard-webchat]')!.shadowRoot!;
      return root.querySelectorAll('.log b, .log img, .log script').length;
    });
    expect(markup).toBe(0);
    expect((first.page as unknown as { errors: string[] }).errors).toEqual([]);
  }, 30_000);

  test('after a reload the same visitor sees the history', async () => {
    const { page } = first;
    await page.reload();
    await page.getByRole('button', { name: 'Open chat' }).click();
    await until(async () => (await bubbles(page, 'in')).length === 2);
    expect(await bubbles(page, 'in')).toEqual([message, xss]);
    expect(await bubbles(page, 'out')).toEqual(['Hello! Ask <b>anything</b>.', message, xss]);
    // Escape closes the panel and gives the focus back to the bubble.
    await page.keyboard.press('Escape');
    expect(await page.getByRole('button', { name: 'Open chat' }).getAttribute('aria-expanded')).toBe('false');
    await page.screenshot({ path: join(SHOTS, '02-after-reload.png') });
  }, 20_000);

  test('a dropped stream reconnects and catches up on the reply', async () => {
    const { page } = first;
    await page.getByRole('button', { name: 'Open chat' }).click();
    const long = Array.from({ length: 40 }, (_, i) => `part${i}`).join(' ');
    const input = page.getByRole('textbox', { name: 'Message' });
    await input.fill(long);
    await page.keyboard.press('Enter');
    await until(async () => (await bubbles(page, 'out')).some((s) => s.startsWith('part0 part1')));
    // The gateway drops every live stream mid-reply (as a proxy restart or a network cut would).
    t.gw.pipeline.hub.disconnectAll(1006, 'cut');
    t.gw.pipeline.hub.disconnecting = false;
    await until(async () => (await bubbles(page, 'out')).includes(long), 15_000);
    const status = await page.evaluate(
      () => document.querySelector('[data-switchboard-webchat]')!.shadowRoot!.querySelector('.status')!.textContent,
    );
    expect(status).toBe('');
  }, 30_000);

  test('a second browser is another visitor and cannot read the first conversation', async () => {
    const second = await newVisitor();
    const { page } = second;
    await page.goto(`${siteOrigin}/`);
    await page.getByRole('button', { name: 'Open chat' }).click();
    await until(async () => (await bubbles(page, 'out')).includes('Hello! Ask <b>anything</b>.'));
    await Bun.sleep(300);
    expect(await bubbles(page, 'in')).toEqual([]);
    expect(await bubbles(page, 'out')).toEqual(['Hello! Ask <b>anything</b>.']);
    // Its own token opens only its own conversation: the first visitor's is not found.
    const firstConversation = await first.page.evaluate(async (gw) => {
      const token = Object.entries(localStorage).find(([k]) => k.startsWith('switchboard-webchat:'))![1];
      const res = await fetch(`${gw}/webchat/site-chat/session`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token }),
      });
      return (await res.json()).conversationId as string;
    }, gateway);
    const peek = await page.evaluate(
      async ([gw, conversation]) => {
        const token = Object.entries(localStorage).find(([k]) => k.startsWith('switchboard-webchat:'))![1];
        const res = await fetch(`${gw}/webchat/site-chat/conversations/${conversation}/messages`, {
          headers: { authorization: `Bearer ${token}` },
        });
        return { status: res.status, body: await res.text() };
      },
      [gateway, firstConversation],
    );
    expect(peek.status).toBe(404);
    expect(peek.body).not.toContain('please echo');
    await second.context.close();
  }, 20_000);

  test('a site whose origin is not allowed is refused', async () => {
    await t.call('POST', '/api/v2/instances', { name: 'closed-chat', channel: 'webchat', agent: { type: 'echo' } });
    const { context, page } = await newVisitor();
    await page.goto(`${siteOrigin}/?chat=closed-chat`);
    await page.getByRole('button', { name: 'Open chat' }).click();
    const status = await until(() =>
      page.evaluate(
        () => document.querySelector('[data-switchboard-webchat]')!.shadowRoot!.querySelector('.status')!.textContent,
      ),
    );
    expect(status).toBe('This site may not use this chat.');
    await context.close();
    await first.context.close();
  }, 20_000);
});

describe('console', () => {
  test('the demo button creates a working web chat + echo instance, tried on its page', async () => {
    // A fresh gateway: the console's instance list is empty.
    const g = createTestGateway();
    await g.gw.start();
    g.app.listen({ port: 0, hostname: '127.0.0.1' });
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const page = await context.newPage();
      page.setDefaultTimeout(10_000);
      await page.goto(`http://127.0.0.1:${g.app.server!.port}/`);
      await page.getByLabel('API key', { exact: true }).fill(ADMIN_KEY);
      await page.getByRole('button', { name: 'Sign in' }).click();
      // The console opens on the overview; the demo is offered on the (empty) instance list.
      await page.getByRole('heading', { name: 'Overview' }).waitFor();
      await page.getByRole('link', { name: 'Instances', exact: true }).click();
      await page.getByRole('button', { name: 'Create a demo (web chat + echo agent)' }).click();
      await page.getByRole('heading', { name: 'Try it' }).waitFor();
      const demo = (await g.call('GET', '/api/v2/instances/demo')).body.data;
      expect(demo).toMatchObject({ channel: 'webchat', isActive: true, agent: { type: 'echo' } });
      // The panel holds the instance's own widget, open inline.
      const input = page.getByRole('textbox', { name: 'Message', exact: true });
      await input.fill('demo works end to end');
      await input.press('Enter');
      await until(async () => (await bubbles(page, 'out')).includes('demo works end to end'));
      await page.screenshot({ path: join(SHOTS, '03-console-demo.png'), fullPage: true });
      // Through the whole pipeline: the message has a completed trace.
      const traces = await until(async () => {
        const items = (await g.call('GET', `/api/v2/traces?instanceId=${demo.id}`)).body.items;
        return items.length && items[0].status === 'completed' ? items : null;
      });
      expect(traces).toHaveLength(1);
      // The page's form edits the chat's settings (numbers stay numbers).
      await page.getByLabel('Longest message (characters)', { exact: true }).fill('500');
      await page.getByRole('button', { name: 'Save changes' }).click();
      await page.getByRole('heading', { name: 'Instances' }).waitFor();
      expect((await g.call('GET', '/api/v2/instances/demo')).body.data.channelConfig.webchatMaxMessageChars).toBe(500);
    } finally {
      await context.close();
      await g.app.stop(true);
      await g.close();
    }
  }, 30_000);

  test('Try it on another channel talks through the pipeline and never reaches the platform', async () => {
    const created = await t.call('POST', '/api/v2/instances', {
      name: 'shop-whatsapp',
      channel: 'whatsapp-evolution',
      channelConfig: { evolutionUrl: evo.url, evolutionKey: evo.apikey },
      agent: { type: 'script', script: { rules: [{ pattern: 'price', reply: 'It costs <i>10</i> euros.' }] } },
    });
    expect(created.status).toBe(201);
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    try {
      const page = await context.newPage();
      page.setDefaultTimeout(10_000);
      await page.goto(`${gateway}/`);
      await page.getByLabel('API key', { exact: true }).fill(ADMIN_KEY);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.goto(`${gateway}/#/instances/${created.body.data.id}/edit`);
      await page.getByRole('heading', { name: 'Try it' }).waitFor();
      await page.getByLabel('Test message', { exact: true }).fill('what is the price?');
      await page.getByRole('button', { name: 'Send', exact: true }).click();
      const reply = page.locator('.try-log .msg.agent .reply-text');
      await until(async () => (await reply.textContent()) === 'It costs <i>10</i> euros.');
      expect(await page.locator('.try-log i').count()).toBe(0);
      await page.screenshot({ path: join(SHOTS, '04-console-try-it.png'), fullPage: true });
      // Nothing went to WhatsApp.
      expect(evo.sent).toEqual([]);
    } finally {
      await context.close();
    }
  }, 30_000);
});
