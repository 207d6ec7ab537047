// The landing page: is traffic flowing, how fast do agents answer, what is failing, which instance
// is backed up. Figures from GET /api/v2/stats/overview (computed from the stored messages), as
// headline numbers and charts for the chosen window, per instance or for all; refreshed while open.
import type { OverviewTotals } from '../../../services/stats.ts';
import { api, errorBox } from '../api.ts';
import { type Chart, type ChartSpec, chart } from '../chart.ts';
import { badge, h, ms, replace } from '../dom.ts';
import type { PageContext } from '../page.ts';

type Window = 'hour' | 'day' | 'week';
const WINDOWS: Array<[Window, string]> = [
  ['hour', 'Last hour'],
  ['day', 'Last day'],
  ['week', 'Last week'],
];
const BUCKET_WORDS: Record<Window, string> = { hour: 'per minute', day: 'per 10 minutes', week: 'per hour' };

/** The API's totals (a type only: erased from the console bundle). */
type Totals = OverviewTotals;

export interface Overview {
  window: Window;
  bucketSeconds: number;
  start: string;
  end: string;
  instanceId: string | null;
  series: Record<string, Array<number | null>> & { t: number[] };
  totals: Totals;
  instances: Array<{
    id: string;
    name: string;
    channel: string;
    isActive: boolean;
    status: string;
    statusReason: string | null;
    totals: Totals;
  }>;
  cluster: { nodes: string[]; missing: string[]; partial: boolean } | null;
}

// Distinguishable in light and dark themes, and not by colour alone: failures are dashed.
const COLOR = {
  in: '#2f7ed8',
  out: '#2a9d5b',
  p50: '#7b61ff',
  p95: '#d9480f',
  agentFail: '#d92d20',
  sendFail: '#b54708',
  dead: '#6b2bd9',
  shed: '#8a8f98',
  backlog: '#c2410c',
  convs: '#0e7490',
};

const count = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(1));
const msAxis = (v: number) => (v >= 1000 ? `${(v / 1000).toFixed(v >= 10_000 ? 0 : 1)} s` : `${Math.round(v)} ms`);

function specs(o: Overview): ChartSpec[] {
  const s = o.series;
  const per = BUCKET_WORDS[o.window];
  const tot = o.totals;
  return [
    {
      id: 'messages',
      title: `Messages in and sent, ${per}`,
      t: s.t,
      format: count,
      lines: [
        { label: 'In', values: s.messagesIn!, color: COLOR.in },
        { label: 'Sent', values: s.sent!, color: COLOR.out },
      ],
      summary: `${tot.messagesIn} messages in and ${tot.sent} sent in the window.`,
    },
    {
      id: 'latency',
      title: `Agent latency and time to first token, ${per}`,
      t: s.t,
      format: msAxis,
      lines: [
        { label: 'Agent p50', values: s.agentP50Ms!, color: COLOR.p50, points: true },
        { label: 'Agent p95', values: s.agentP95Ms!, color: COLOR.p95, points: true },
        { label: 'First token p50', values: s.firstTokenP50Ms!, color: COLOR.p50, points: true, dash: [4, 4] },
        { label: 'First token p95', values: s.firstTokenP95Ms!, color: COLOR.p95, points: true, dash: [4, 4] },
      ],
      summary: `Agent latency: median ${ms(tot.agentP50Ms)}, 95th percentile ${ms(tot.agentP95Ms)}; first token: median ${ms(tot.firstTokenP50Ms)}, 95th percentile ${ms(tot.firstTokenP95Ms)}.`,
    },
    {
      id: 'failures',
      title: `Failures, dead letters and sheds, ${per}`,
      t: s.t,
      format: count,
      lines: [
        { label: 'Agent failures', values: s.agentFailures!, color: COLOR.agentFail },
        { label: 'Send failures', values: s.sendFailures!, color: COLOR.sendFail, dash: [6, 3] },
        { label: 'Dead letters', values: s.deadLetters!, color: COLOR.dead, dash: [2, 3] },
        { label: 'Shed', values: s.shed!, color: COLOR.shed, dash: [8, 3, 2, 3] },
      ],
      summary: `${tot.agentFailures} agent failures, ${tot.sendFailures} send failures, ${tot.deadLetters} dead letters and ${tot.shed} shed messages in the window.`,
    },
    {
      id: 'load',
      title: `Backlog and active conversations, ${per}`,
      t: s.t,
      format: count,
      lines: [
        { label: 'Backlog', values: s.backlog!, color: COLOR.backlog },
        { label: 'Active conversations', values: s.activeConversations!, color: COLOR.convs, dash: [4, 3] },
      ],
      summary: `${tot.backlog} messages unfinished now; ${tot.activeConversations} conversations active in the window.`,
    },
  ];
}

function tiles(t: Totals): HTMLElement {
  const failures = t.agentFailures + t.sendFailures;
  const tile = (key: string, label: string, value: string, sub: string | null, tone = '') =>
    h(
      'div',
      { class: `tile ${tone}`, 'data-total': key },
      h('div', { class: 'tile-label' }, label),
      h('div', { class: 'tile-value' }, value),
      sub ? h('div', { class: 'tile-sub' }, sub) : null,
    );
  return h(
    'div',
    { class: 'tiles' },
    tile('messagesIn', 'Messages in', String(t.messagesIn), null),
    tile('sent', 'Sent', String(t.sent), null),
    tile('agentP50Ms', 'Agent latency', ms(t.agentP50Ms), `p95 ${ms(t.agentP95Ms)}`),
    tile('firstTokenP50Ms', 'First token', ms(t.firstTokenP50Ms), `p95 ${ms(t.firstTokenP95Ms)}`),
    tile(
      'failures',
      'Failures',
      String(failures),
      `agent ${t.agentFailures} · send ${t.sendFailures}`,
      failures ? 'bad' : '',
    ),
    tile('deadLetters', 'Dead letters', String(t.deadLetters), `shed ${t.shed}`, t.deadLetters || t.shed ? 'bad' : ''),
    tile(
      'backlog',
      'Backlog',
      String(t.backlog),
      `${t.activeConversations} active conversations`,
      t.backlog ? 'warn' : '',
    ),
  );
}

export async function overviewPage(ctx: PageContext): Promise<void> {
  const q = ctx.query;
  const win = (WINDOWS.some(([w]) => w === q.get('window')) ? q.get('window') : 'hour') as Window;
  const instanceId = q.get('instanceId') ?? '';
  const go = (w: Window, inst: string) => {
    const p = new URLSearchParams();
    if (w !== 'hour') p.set('window', w);
    if (inst) p.set('instanceId', inst);
    location.hash = `#/overview${p.size ? `?${p}` : ''}`;
  };

  const windowPicker = h(
    'div',
    { class: 'segmented', role: 'group', 'aria-label': 'Time window' },
    WINDOWS.map(([w, label]) => {
      const b = h('button', { type: 'button', 'aria-pressed': String(w === win), 'data-window': w }, label);
      b.addEventListener('click', () => go(w, instanceId));
      return b;
    }),
  );
  const instanceSelect = h(
    'select',
    { id: 'ov-instance', name: 'instanceId' },
    h('option', { value: '' }, 'All instances'),
  );
  instanceSelect.addEventListener('change', () => go(win, instanceSelect.value));
  const status = h('div', { 'aria-live': 'polite' });
  const headline = h('div');
  const chartsEl = h('div', { class: 'charts' });
  const instancesEl = h('div', { class: 'instance-cards' });
  const updated = h('span', { class: 'muted small' });
  const root = h(
    'section',
    { class: 'overview', 'data-window': win },
    h(
      'div',
      { class: 'page-head' },
      h('h1', {}, 'Overview'),
      updated,
      h(
        'div',
        { class: 'overview-controls' },
        windowPicker,
        h(
          'div',
          { class: 'field inline' },
          h('label', { for: 'ov-instance', class: 'sr-only' }, 'Instance'),
          instanceSelect,
        ),
      ),
    ),
    status,
    headline,
    chartsEl,
    h('h2', {}, 'Instance status'),
    instancesEl,
  );
  replace(ctx.main, root);

  let charts: Chart[] = [];
  ctx.onLeave(() => {
    for (const c of charts) c.destroy();
  });

  const render = (o: Overview) => {
    root.setAttribute('data-end', o.end);
    root.setAttribute('data-instance', o.instanceId ?? '');
    if (instanceSelect.options.length !== o.instances.length + 1) {
      replace(
        instanceSelect,
        h('option', { value: '' }, 'All instances'),
        o.instances.map((i) => h('option', { value: i.id }, i.name)),
      );
    }
    instanceSelect.value = o.instanceId ?? '';
    const missing = o.cluster?.missing ?? [];
    replace(
      status,
      o.cluster?.partial
        ? h(
            'div',
            { class: 'alert', role: 'status' },
            h('strong', {}, 'Some figures are missing. '),
            missing.length ? `No answer from: ${missing.join(', ')}.` : 'A node did not answer in time.',
            ` Included: ${o.cluster.nodes.join(', ')}.`,
          )
        : null,
    );
    replace(headline, tiles(o.totals));
    const next = specs(o);
    if (charts.length === next.length) for (const [i, s] of next.entries()) charts[i]!.update(s);
    else {
      for (const c of charts) c.destroy();
      charts = next.map((s) => chart(s));
      replace(
        chartsEl,
        charts.map((c) => c.el),
      );
    }
    replace(
      instancesEl,
      o.instances.length
        ? o.instances.map((i) => {
            const t = i.totals;
            const failures = t.agentFailures + t.sendFailures;
            const selected = o.instanceId === i.id;
            const pick = h(
              'a',
              {
                href: `#/overview?${new URLSearchParams({ ...(win !== 'hour' ? { window: win } : {}), instanceId: selected ? '' : i.id })}`,
                'aria-current': selected ? 'true' : null,
              },
              selected ? 'Show all instances' : 'Show only this one',
            );
            return h(
              'article',
              { class: `card instance-card${selected ? ' selected' : ''}`, 'data-instance-card': i.name },
              h('div', { class: 'instance-card-head' }, h('h3', {}, i.name), badge(i.isActive ? i.status : 'inactive')),
              h('div', { class: 'muted small' }, i.channel),
              i.statusReason ? h('p', { class: 'status-reason small' }, i.statusReason) : null,
              h(
                'p',
                { class: 'instance-figures' },
                `${t.messagesIn} in · ${t.sent} sent · p50 ${ms(t.agentP50Ms)} · `,
                h('span', { class: failures || t.deadLetters ? 'error-text' : '' }, `${failures} failed`),
                ` · ${t.deadLetters} dead · backlog ${t.backlog}`,
              ),
              h('div', { class: 'actions' }, pick),
            );
          })
        : h(
            'p',
            { class: 'empty' },
            'No instances yet. ',
            // The first five minutes: the instance list offers a one-click demo (web chat + echo agent).
            h('a', { href: '#/instances' }, 'Create one, or a demo to try'),
            '.',
          ),
    );
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  };

  let loading = false;
  const load = async () => {
    if (loading || ctx.left) return;
    loading = true;
    try {
      const p = new URLSearchParams({ window: win });
      if (instanceId) p.set('instanceId', instanceId);
      const o = (await api<{ data: Overview }>('GET', `/api/v2/stats/overview?${p}`)).data;
      if (!ctx.left) render(o);
    } catch (err) {
      if (!ctx.left) replace(status, errorBox(err));
    } finally {
      loading = false;
    }
  };

  // Live: poll, and refresh soon after a turn ends or an instance changes state.
  ctx.every(win === 'hour' ? 10_000 : 30_000, () => void load());
  let soon: ReturnType<typeof setTimeout> | null = null;
  ctx.onLeave(() => {
    if (soon) clearTimeout(soon);
  });
  ctx.live((f) => {
    const type = f.payload?.type;
    const relevant =
      f.channel === 'instances' || (f.channel === 'conversations' && (type === 'RUN_FINISHED' || type === 'RUN_ERROR'));
    if (!relevant || soon) return;
    soon = setTimeout(() => {
      soon = null;
      void load();
    }, 1000);
  });
  await load();
}
