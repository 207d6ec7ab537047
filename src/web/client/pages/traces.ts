// Traces: filter by instance, status and conversation; one trace as a step timeline with durations.
import { api, errorBox } from '../api.ts';
import { badge, h, ms, replace, tableWrap, when } from '../dom.ts';
import type { PageContext } from '../page.ts';
import { stepTimeline, type TraceView } from './steps.ts';

/** The sender's name with the handle that tells two people of one name apart. */
function senderLabel(t: TraceView): string {
  const handle = t.sender.phone ?? t.sender.id.replace(/@.*$/, '');
  return t.sender.name ? `${t.sender.name} (${handle})` : handle;
}

const STATUSES = ['pending', 'processing', 'completed', 'failed', 'blocked', 'dead_lettered', 'shed'];

export async function tracesPage(ctx: PageContext): Promise<void> {
  const q = ctx.query;
  let instances: Array<{ id: string; name: string }> = [];
  try {
    instances = (await api<{ items: Array<{ id: string; name: string }> }>('GET', '/api/v2/instances?limit=100')).items;
  } catch {
    // the filter still works with no instance list
  }
  if (ctx.left) return;
  const instance = h(
    'select',
    { id: 'tf-instance', name: 'instanceId' },
    h('option', { value: '' }, 'All'),
    instances.map((i) => h('option', { value: i.id }, i.name)),
  );
  instance.value = q.get('instanceId') ?? '';
  const status = h(
    'select',
    { id: 'tf-status', name: 'status' },
    h('option', { value: '' }, 'Any'),
    STATUSES.map((s) => h('option', { value: s }, s.replace(/_/g, ' '))),
  );
  status.value = q.get('status') ?? '';
  const conversation = h('input', {
    id: 'tf-conversation',
    name: 'conversationId',
    type: 'text',
    value: q.get('conversationId') ?? '',
    autocomplete: 'off',
  });
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Filter traces' },
    h('div', { class: 'field' }, h('label', { for: 'tf-instance' }, 'Instance'), instance),
    h('div', { class: 'field' }, h('label', { for: 'tf-status' }, 'Status'), status),
    h('div', { class: 'field' }, h('label', { for: 'tf-conversation' }, 'Conversation id'), conversation),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Apply')),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    if (instance.value) p.set('instanceId', instance.value);
    if (status.value) p.set('status', status.value);
    if (conversation.value.trim()) p.set('conversationId', conversation.value.trim());
    location.hash = `#/traces${p.size ? `?${p}` : ''}`;
  });
  const body = h('div');
  const more = h('div');
  replace(ctx.main, h('div', { class: 'page-head' }, h('h1', {}, 'Traces')), form, body, more);

  const rows: TraceView[] = [];
  const loadPage = async (cursor: string | null) => {
    const p = new URLSearchParams({ limit: '50' });
    for (const k of ['instanceId', 'status', 'conversationId']) if (q.get(k)) p.set(k, q.get(k)!);
    if (cursor) p.set('cursor', cursor);
    try {
      const res = await api<{ items: TraceView[]; meta: { cursor: string | null; hasMore: boolean } }>(
        'GET',
        `/api/v2/traces?${p}`,
      );
      if (ctx.left) return;
      rows.push(...res.items);
      replace(body, rows.length ? table(rows) : h('p', { class: 'empty' }, 'No traces match.'));
      if (res.meta.hasMore && res.meta.cursor) {
        const b = h('button', { type: 'button' }, 'Load more');
        b.addEventListener('click', () => void loadPage(res.meta.cursor));
        replace(more, b);
      } else replace(more);
    } catch (err) {
      replace(body, errorBox(err));
    }
  };
  const table = (items: TraceView[]) =>
    tableWrap(
      h(
        'table',
        { class: 'list' },
        h('caption', { class: 'sr-only' }, 'Traces, newest first'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['Received', 'Instance', 'From', 'Message', 'Status', 'Duration'].map((c) => h('th', { scope: 'col' }, c)),
          ),
        ),
        h(
          'tbody',
          {},
          items.map((t) =>
            h(
              'tr',
              { 'data-trace': t.id },
              h('th', { scope: 'row' }, h('a', { href: `#/traces/${encodeURIComponent(t.id)}` }, when(t.receivedAt))),
              h('td', {}, t.instanceName),
              h('td', {}, senderLabel(t)),
              h('td', { class: 'clip' }, t.text),
              h('td', {}, badge(t.status)),
              h('td', {}, ms(t.durationMs)),
            ),
          ),
        ),
      ),
    );
  await loadPage(null);
}

export async function tracePage(ctx: PageContext): Promise<void> {
  const id = ctx.params[0]!;
  const render = (t: TraceView) =>
    replace(
      ctx.main,
      h(
        'div',
        { class: 'page-head' },
        h('h1', {}, 'Trace'),
        badge(t.status),
        h('a', { class: 'button', href: '#/traces' }, 'All traces'),
      ),
      h(
        'dl',
        { class: 'facts' },
        h('dt', {}, 'Id'),
        h('dd', {}, h('code', { class: 'wrap' }, t.id)),
        h('dt', {}, 'Instance'),
        h('dd', {}, t.instanceName),
        h('dt', {}, 'Conversation'),
        h('dd', {}, h('a', { href: `#/conversations/${encodeURIComponent(t.conversationId)}` }, 'Open conversation')),
        h('dt', {}, 'From'),
        h('dd', {}, senderLabel(t)),
        h('dt', {}, 'Received'),
        h('dd', {}, when(t.receivedAt)),
        h('dt', {}, 'Duration'),
        h('dd', {}, ms(t.durationMs)),
        h('dt', {}, 'Attempts'),
        h('dd', {}, String(t.attempts)),
        t.error ? [h('dt', {}, 'Error'), h('dd', { class: 'error-text' }, t.error)] : null,
      ),
      h(
        'div',
        { class: 'pair-grid' },
        h('section', { class: 'card' }, h('h2', {}, 'Message'), h('p', { class: 'pre' }, t.text)),
        h('section', { class: 'card' }, h('h2', {}, 'Reply'), h('p', { class: 'pre' }, t.responseText ?? '—')),
      ),
      h('section', {}, h('h2', {}, 'Steps'), stepTimeline(t.steps)),
    );
  const load = async () => {
    const t = (await api<{ data: TraceView }>('GET', `/api/v2/traces/${encodeURIComponent(id)}`)).data;
    if (!ctx.left) render(t);
    return t;
  };
  const t = await load();
  if (!['completed', 'failed', 'blocked', 'dead_lettered', 'shed'].includes(t.status)) {
    ctx.every(2000, () => void load().catch((err) => replace(ctx.main, errorBox(err))));
  }
}
