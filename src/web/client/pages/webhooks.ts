// Outgoing webhooks: the subscriptions (a disabled one says why), and per subscription its recent
// deliveries with a redeliver button. Creating and editing subscriptions is left to the API.

import type { DeliveryView, SubscriptionView } from '../../../webhooks/types.ts';
import { api, errorBox } from '../api.ts';
import { badge, h, replace, tableWrap, when } from '../dom.ts';
import type { PageContext } from '../page.ts';

// The API's own shapes (type-only: nothing of the server enters the bundle).
type Subscription = SubscriptionView;
type Delivery = DeliveryView;

const table = (caption: string, cols: string[], rows: HTMLTableRowElement[]) =>
  tableWrap(
    h(
      'table',
      { class: 'list' },
      h('caption', { class: 'sr-only' }, caption),
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          cols.map((c) => h('th', { scope: 'col' }, c)),
        ),
      ),
      h('tbody', {}, rows),
    ),
  );

export async function webhooksPage(ctx: PageContext): Promise<void> {
  const body = h('div');
  const load = async () => {
    try {
      const res = await api<{ items: Subscription[] }>('GET', '/api/v2/webhooks?limit=100');
      if (ctx.left) return;
      replace(
        body,
        res.items.length
          ? table(
              'Webhook subscriptions',
              ['URL', 'Events', 'Instances', 'State', 'Secret'],
              res.items.map((s) =>
                h(
                  'tr',
                  { 'data-webhook': s.id },
                  h('th', { scope: 'row' }, h('a', { href: `#/webhooks/${encodeURIComponent(s.id)}` }, s.url)),
                  h('td', {}, s.events.length ? s.events.join(', ') : 'all'),
                  h('td', {}, s.instanceIds ? s.instanceIds.join(', ') : 'all'),
                  h(
                    'td',
                    {},
                    badge(s.active ? 'active' : 'disabled'),
                    s.disabledReason ? h('div', { class: 'hint' }, s.disabledReason) : null,
                  ),
                  h('td', {}, h('code', {}, s.secret)),
                ),
              ),
            )
          : h('p', { class: 'empty' }, 'No subscriptions. Create one with POST /api/v2/webhooks.'),
      );
    } catch (err) {
      replace(body, errorBox(err));
    }
  };
  replace(ctx.main, h('div', { class: 'page-head' }, h('h1', {}, 'Webhooks')), body);
  await load();
  ctx.every(10_000, () => void load());
}

export async function webhookDeliveriesPage(ctx: PageContext): Promise<void> {
  const id = encodeURIComponent(ctx.params[0]!);
  const flash = h('div', { 'aria-live': 'polite' });
  const head = h('div');
  const body = h('div');
  const load = async () => {
    try {
      const [sub, res] = await Promise.all([
        api<{ data: Subscription }>('GET', `/api/v2/webhooks/${id}`),
        api<{ items: Delivery[] }>('GET', `/api/v2/webhooks/${id}/deliveries?limit=50`),
      ]);
      if (ctx.left) return;
      replace(
        head,
        h('p', {}, h('code', {}, sub.data.url), ' ', badge(sub.data.active ? 'active' : 'disabled')),
        sub.data.disabledReason
          ? h('div', { class: 'alert error' }, `Disabled by the gateway: ${sub.data.disabledReason}`)
          : null,
      );
      replace(
        body,
        res.items.length
          ? table(
              'Recent deliveries',
              ['When', 'Event', 'Status', 'Attempts', 'Last answer', 'Next attempt', 'Actions'],
              res.items.map((d) => {
                const again = h('button', { type: 'button' }, 'Redeliver');
                again.addEventListener('click', async () => {
                  again.disabled = true;
                  try {
                    await api('POST', `/api/v2/webhooks/${id}/deliveries/${encodeURIComponent(d.id)}/redeliver`);
                    replace(flash, h('div', { class: 'alert ok' }, `Queued again (webhook-id ${d.webhookId}).`));
                    await load();
                  } catch (err) {
                    replace(flash, errorBox(err));
                    again.disabled = false;
                  }
                });
                return h(
                  'tr',
                  { 'data-delivery': d.id },
                  h('th', { scope: 'row' }, when(d.createdAt)),
                  h('td', {}, d.eventType),
                  h('td', {}, badge(d.status)),
                  h('td', {}, String(d.attempts)),
                  h('td', {}, d.lastError ?? (d.lastStatusCode === null ? '—' : `HTTP ${d.lastStatusCode}`)),
                  h('td', {}, when(d.nextAttemptAt)),
                  h('td', { class: 'actions' }, again),
                );
              }),
            )
          : h('p', { class: 'empty' }, 'No deliveries yet.'),
      );
    } catch (err) {
      replace(body, errorBox(err));
    }
  };
  replace(
    ctx.main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Webhook deliveries'), h('a', { href: '#/webhooks' }, 'All webhooks')),
    head,
    flash,
    body,
  );
  await load();
  ctx.every(5000, () => void load());
}
