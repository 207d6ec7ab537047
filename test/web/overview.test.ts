// The console's overview, conversations and traces in Chromium (playwright-core + Debian's
// Chromium, as test/web/console.test.ts) after real traffic through the Evolution and streaming
// agent stand-ins: the charts hold the API's numbers for the same window (read from the charts'
// data, not their pixels), a failing agent shows as failures, two chats with one display name are
// told apart, search finds a chat by phone, a first-try answer shows 1 attempt. Screenshots go to
// test-artifacts/web/ (kept by CI).
import { afterAll, beforeAll, describe, expect, test } from 'bun:test';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { evolutionInstance, evolutionUpsert, until, useFakeEvolutionAndAgent } from '../fixtures.ts';
import { ADMIN_KEY, createTestGateway } from '../helpers.ts';

const CHROMIUM = '/usr/bin/chromium';
const SHOTS = join(import.meta.dir, '..', '..', 'test-artifacts', 'web');

const fakes = useFakeEvolutionAndAgent({
  evolution: { apikey: 'EVO-KEY-OVERVIEW' },
  agent: { protocol: 'agui', deltaChars: 5, deltaDelayMs: 10, latencyMs: 30 },
});

let t: ReturnType<typeof createTestGateway>;
let base: string;
let userDataDir: string;
let context: BrowserContext;
let page: Page;
let ids: { shop: string; desk: string };
const traceIds: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does this)`);
  mkdirSync(SHOTS, { recursive: true });
  t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20' });
  const shop = await evolutionInstance(t, { name: 'shop', ...fakes });
  const desk = await evolutionInstance(t, { name: 'desk', ...fakes });
  ids = { shop: shop.id, desk: desk.id };
  await t.gw.start();
  t.app.listen({ port: 0, hostname: '127.0.0.1' });
  base = `http://127.0.0.1:${t.app.server!.port}`;

  // Traffic: two different people both called Pavan, and a third chat; then an agent that fails.
  fakes.agent.setBehaviour({ reply: () => 'Thanks! Let me check that for you.' });
  const sends = [
    shop.post(
      evolutionUpsert({
        instance: 'shop',
        id: 'o-1',
        text: 'where is my order',
        phone: '5511999990001',
        name: 'Pavan',
      }),
    ),
    shop.post(
      evolutionUpsert({ instance: 'shop', id: 'o-2', text: 'cancel please', phone: '5511888880002', name: 'Pavan' }),
    ),
    shop.post(
      evolutionUpsert({ instance: 'shop', id: 'o-3', text: 'opening hours?', phone: '5511777770003', name: 'Lia' }),
    ),
  ];
  for (const r of await Promise.all(sends)) traceIds.push(r.body.trace_id);
  await fakes.evo.waitForSent(3);
  fakes.agent.setBehaviour({ status: 500 });
  const failing = await desk.post(
    evolutionUpsert({ instance: 'desk', id: 'd-1', text: 'is anyone there', phone: '5511666660004', name: 'Rui' }),
  );
  traceIds.push(failing.body.trace_id);
  // Settled: every message terminal and its events written.
  await until(
    async () => {
      const o = (await t.call('GET', '/api/v2/stats/overview')).body.data;
      return o.totals.sent === 3 && o.totals.deadLetters === 1 && o.totals.backlog === 0;
    },
    10_000,
    'traffic to settle',
  );

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
    viewport: { width: 1280, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(8000);
}, 40_000);

afterAll(async () => {
  await context?.close();
  await t?.app.stop(true);
  await t?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
}, 15_000);

const shot = (name: string) => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

/** What a chart holds: its series' labels and uPlot's data arrays (x first). */
async function chartData(id: string): Promise<{ labels: string[]; points: Array<Array<number | null>> }> {
  const fig = page.locator(`figure[data-chart="${id}"]`);
  await fig.waitFor();
  return {
    labels: JSON.parse((await fig.getAttribute('data-labels'))!),
    points: JSON.parse((await fig.getAttribute('data-points'))!),
  };
}

/** The API's overview for the window the page shows. */
async function apiOverview(query = '') {
  const end = await page.locator('section.overview').getAttribute('data-end');
  const window = await page.locator('section.overview').getAttribute('data-window');
  const res = await t.call('GET', `/api/v2/stats/overview?window=${window}&until=${end}${query}`);
  expect(res.status).toBe(200);
  return res.body.data;
}

async function expectChartsMatch(o: any) {
  const s = o.series;
  const expected: Record<string, [string, Array<number | null>][]> = {
    messages: [
      ['In', s.messagesIn],
      ['Sent', s.sent],
    ],
    latency: [
      ['Agent p50', s.agentP50Ms],
      ['Agent p95', s.agentP95Ms],
      ['First token p50', s.firstTokenP50Ms],
      ['First token p95', s.firstTokenP95Ms],
    ],
    failures: [
      ['Agent failures', s.agentFailures],
      ['Send failures', s.sendFailures],
      ['Dead letters', s.deadLetters],
      ['Shed', s.shed],
    ],
    load: [
      ['Backlog', s.backlog],
      ['Active conversations', s.activeConversations],
    ],
  };
  for (const [id, lines] of Object.entries(expected)) {
    const c = await chartData(id);
    expect(c.points[0]).toEqual(s.t);
    expect(c.labels).toEqual(lines.map(([label]) => label));
    for (const [i, [, values]] of lines.entries()) expect(c.points[i + 1]).toEqual(values);
  }
}

const sum = (xs: Array<number | null>) => xs.reduce<number>((a, b) => a + (b ?? 0), 0);

describe('console overview in Chromium', () => {
  test('signing in lands on the overview; its charts hold the numbers the API reports for the same window', async () => {
    await page.goto(base);
    await page.getByLabel('API key', { exact: true }).fill(ADMIN_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await page.locator('figure[data-chart="messages"] canvas').waitFor();
    const o = await apiOverview();
    expect(o.totals).toMatchObject({ messagesIn: 4, sent: 3, deadLetters: 1, backlog: 0 });
    await expectChartsMatch(o);
    // Traffic is in the charts (not only zeros), and the streaming agent's first token was timed.
    const messages = await chartData('messages');
    expect(sum(messages.points[1]!)).toBe(4);
    expect(sum(messages.points[2]!)).toBe(3);
    const latency = await chartData('latency');
    expect(latency.points[1]!.some((v) => v !== null && v > 0)).toBe(true);
    expect(latency.points[3]!.some((v) => v !== null)).toBe(true);
    // The tiles say the same in words.
    expect(await page.locator('[data-total="messagesIn"] .tile-value').innerText()).toBe('4');
    expect(await page.locator('[data-total="sent"] .tile-value').innerText()).toBe('3');
    await shot('10-overview');
  }, 20_000);

  test('a failing agent shows as failures and a dead letter, on the chart and on its instance', async () => {
    const o = await apiOverview();
    const failures = await chartData('failures');
    expect(sum(failures.points[1]!)).toBe(o.totals.agentFailures);
    expect(o.totals.agentFailures).toBeGreaterThanOrEqual(1);
    expect(sum(failures.points[3]!)).toBe(1);
    const failTile = page.locator('[data-total="failures"]');
    expect(await failTile.innerText()).toContain(`agent ${o.totals.agentFailures}`);
    expect(await failTile.getAttribute('class')).toContain('bad');
    const desk = page.locator('[data-instance-card="desk"]');
    expect(await desk.innerText()).toContain(`${o.totals.agentFailures} failed`);
    expect(await page.locator('[data-instance-card="shop"]').innerText()).toContain('0 failed');

    // One instance, chosen with the keyboard: the charts follow, and match the API for that instance.
    await page.locator('#ov-instance').focus();
    await page.keyboard.press('ArrowDown'); // Chromium's closed <select> moves to the next option
    await until(async () => ((await page.locator('section.overview').getAttribute('data-instance')) ?? '') !== '');
    await page.locator('figure[data-chart="messages"] canvas').waitFor();
    const chosen = await page.locator('section.overview').getAttribute('data-instance');
    expect([ids.shop, ids.desk]).toContain(chosen!);
    const one = await apiOverview(`&instanceId=${chosen}`);
    expect(one.instanceId).toBe(chosen);
    await expectChartsMatch(one);
    await shot('11-overview-one-instance');
  }, 20_000);

  test('the window switches from the keyboard; at phone width nothing scrolls sideways', async () => {
    await page.goto(`${base}/#/overview`);
    await page.locator('figure[data-chart="messages"] canvas').waitFor();
    const day = page.locator('button[data-window="day"]');
    await day.focus();
    await page.keyboard.press('Enter');
    await until(async () => (await page.locator('section.overview').getAttribute('data-window')) === 'day');
    await until(async () => (await page.locator('section.overview').getAttribute('data-end')) !== null);
    expect(await page.locator('button[data-window="day"]').getAttribute('aria-pressed')).toBe('true');
    const o = await apiOverview();
    expect(o.bucketSeconds).toBe(600);
    expect((await chartData('messages')).points[0]).toHaveLength(144);
    await expectChartsMatch(o);

    await page.setViewportSize({ width: 390, height: 844 });
    await Bun.sleep(200);
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
    await shot('12-overview-phone');
    await page.setViewportSize({ width: 1280, height: 900 });
  }, 20_000);

  test('conversations: two chats named Pavan are told apart by phone; search finds a chat by phone; filter by state', async () => {
    await page.goto(`${base}/#/conversations`);
    await page.getByRole('heading', { name: 'Conversations' }).waitFor();
    await page.locator('tr[data-conversation]').nth(3).waitFor();
    const pavans = page.locator('tr[data-conversation]', { hasText: 'Pavan' });
    expect(await pavans.count()).toBe(2);
    const handles = (await pavans.locator('.handle').allInnerTexts()).sort();
    expect(handles).toEqual(['+5511888880002', '+5511999990001']);
    expect(await pavans.filter({ hasText: '+5511999990001' }).innerText()).toContain('where is my order');
    await shot('13-conversations');

    // A phone typed the way people write it.
    await page.getByLabel('Search', { exact: true }).fill('+55 11 99999-0001');
    await page.getByLabel('Search', { exact: true }).press('Enter');
    await until(async () => (await page.locator('tr[data-conversation]').count()) === 1);
    const found = page.locator('tr[data-conversation]');
    expect(await found.innerText()).toContain('+5511999990001');
    expect(await found.innerText()).toContain('Pavan');
    await shot('14-conversations-search');

    // By state: the chat whose message was dead-lettered is the one failed.
    await page.goto(`${base}/#/conversations?state=failed`);
    await until(async () => (await page.locator('tr[data-conversation]').count()) === 1);
    expect(await page.locator('tr[data-conversation]').innerText()).toContain('Rui');
    expect(await page.getByLabel('State', { exact: true }).inputValue()).toBe('failed');

    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${base}/#/conversations`);
    await page.locator('tr[data-conversation]').nth(3).waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth)).toBe(true);
    await shot('15-conversations-phone');
    await page.setViewportSize({ width: 1280, height: 900 });
  }, 20_000);

  test('a trace answered on the first try shows 1 attempt; its steps are a waterfall on one time axis', async () => {
    await page.goto(`${base}/#/traces/${traceIds[0]}`);
    await page.getByRole('heading', { name: 'Steps' }).waitFor();
    const attempts = page.locator('dl.facts dt', { hasText: 'Attempts' }).locator('xpath=following-sibling::dd[1]');
    expect(await attempts.innerText()).toBe('1');
    // Bars are placed by when each step ran: the agent call starts after the message arrived and
    // the delivery after the agent call; the last bar ends at the axis end.
    const start = async (step: string) =>
      Number(await page.locator(`li.step[data-step="${step}"] .bar`).first().getAttribute('data-start-ms'));
    expect(await start('webhook_received')).toBe(0);
    expect(await start('agent_called')).toBeGreaterThanOrEqual(0);
    expect(await start('evolution_api_called')).toBeGreaterThanOrEqual(await start('agent_called'));
    expect(await page.locator('.waterfall-axis').innerText()).toMatch(/0/);
    await shot('16-trace-waterfall');

    // The dead-lettered one: every attempt counted.
    await page.goto(`${base}/#/traces/${traceIds[3]}`);
    await page.getByRole('heading', { name: 'Steps' }).waitFor();
    const trace = (await t.call('GET', `/api/v2/traces/${traceIds[3]}`)).body.data;
    expect(trace.status).toBe('dead_lettered');
    expect(await attempts.innerText()).toBe(String(trace.attempts));
    expect(trace.attempts).toBeGreaterThan(1);
  }, 20_000);
});
