// Dead letters: messages that failed every attempt, each with a replay button.
import { api, errorBox } from '../api.ts';
import { h, replace, tableWrap, when } from '../dom.ts';
import type { PageContext } from '../page.ts';

interface DeadLetter {
  id: string;
  traceId: string;
  instanceId: string;
  conversationId: string;
  reason: string;
  attempts: number;
  createdAt: string;
  text: string;
}

export async function deadLettersPage(ctx: PageContext): Promise<void> {
  const flash = h('div', { 'aria-live': 'polite' });
  const body = h('div');
  const load = async () => {
    try {
      const res = await api<{ items: DeadLetter[] }>('GET', '/api/v2/dead-letters?limit=100');
      if (ctx.left) return;
      replace(
        body,
        res.items.length
          ? table(res.items)
          : h('p', { class: 'empty' }, 'No dead letters. Every message was delivered or is still being tried.'),
      );
    } catch (err) {
      replace(body, errorBox(err));
    }
  };
  const table = (items: DeadLetter[]) =>
    tableWrap(
      h(
        'table',
        { class: 'list' },
        h('caption', { class: 'sr-only' }, 'Dead letters'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['When', 'Message', 'Reason', 'Attempts', 'Actions'].map((c) => h('th', { scope: 'col' }, c)),
          ),
        ),
        h(
          'tbody',
          {},
          items.map((d) => {
            const replay = h('button', { type: 'button', class: 'primary' }, 'Replay');
            replay.addEventListener('click', async () => {
              replay.disabled = true;
              try {
                await api('POST', `/api/v2/dead-letters/${encodeURIComponent(d.id)}/replay`);
                replace(
                  flash,
                  h(
                    'div',
                    { class: 'alert ok' },
                    'Re-queued: ',
                    h('a', { href: `#/traces/${encodeURIComponent(d.traceId)}` }, 'follow the trace'),
                    '.',
                  ),
                );
                await load();
              } catch (err) {
                replace(flash, errorBox(err));
                replay.disabled = false;
              }
            });
            return h(
              'tr',
              { 'data-dead-letter': d.id },
              h(
                'th',
                { scope: 'row' },
                h('a', { href: `#/traces/${encodeURIComponent(d.traceId)}` }, when(d.createdAt)),
              ),
              h('td', { class: 'clip' }, d.text),
              h('td', {}, d.reason),
              h('td', {}, String(d.attempts)),
              h(
                'td',
                { class: 'actions' },
                replay,
                h(
                  'a',
                  { class: 'button', href: `#/conversations/${encodeURIComponent(d.conversationId)}` },
                  'Conversation',
                ),
              ),
            );
          }),
        ),
      ),
    );
  replace(ctx.main, h('div', { class: 'page-head' }, h('h1', {}, 'Dead letters')), flash, body);
  await load();
}
