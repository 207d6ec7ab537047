// Conversations by recent activity, and one conversation as a chat: each message with the agent's
// reply (growing live from /ws TEXT_MESSAGE_CONTENT deltas while the agent streams) and the
// message's trace steps beside it.
import { api, errorBox } from '../api.ts';
import { badge, h, replace, tableWrap, when } from '../dom.ts';
import type { LiveFrame } from '../live.ts';
import type { PageContext } from '../page.ts';
import { type MediaItemView, stepTimeline, TERMINAL, type TraceView } from './steps.ts';

interface ConversationView {
  id: string;
  instanceId: string;
  chat: Record<string, unknown>;
  kind: string;
  title: string | null;
  lastActivityAt: string;
  pending: number;
  state?: string;
  lastMessage?: { text: string; at: string; status: string; direction: 'in' | 'out' } | null;
  contact?: { id: string; name: string | null; phone: string | null } | null;
}

const STATES = ['waiting', 'running', 'paused', 'failed', 'idle'];

/** Who the chat is with, by name. */
function chatName(c: ConversationView): string {
  if (c.kind === 'direct' && c.contact?.name) return c.contact.name;
  if (c.title) return c.title;
  const chat = c.chat ?? {};
  for (const k of ['name', 'title']) if (typeof chat[k] === 'string' && chat[k]) return String(chat[k]);
  return c.contact?.name ?? (typeof chat.chatId === 'string' ? chat.chatId : c.id);
}

/**
 * The platform handle that tells two chats with one display name apart: the phone when known,
 * else the platform's own id (a user id, a channel or group id).
 */
function chatHandle(c: ConversationView): string {
  const chatId = typeof c.chat?.chatId === 'string' ? c.chat.chatId : '';
  if (c.kind === 'group') return `group ${chatId.replace(/@.*$/, '')}`;
  if (c.contact?.phone) return c.contact.phone;
  const id = c.contact?.id ?? chatId;
  return id.replace(/@.*$/, '') || c.id; // a JID without its server part
}

async function instanceNames(): Promise<Map<string, string>> {
  try {
    const res = await api<{ items: Array<{ id: string; name: string }> }>('GET', '/api/v2/instances?limit=100');
    return new Map(res.items.map((i) => [i.id, i.name]));
  } catch {
    return new Map();
  }
}

export async function conversationsPage(ctx: PageContext): Promise<void> {
  const q = ctx.query;
  const instanceId = q.get('instanceId');
  const body = h('div');
  const more = h('div');
  const names = await instanceNames();
  if (ctx.left) return;

  const search = h('input', {
    id: 'cf-q',
    name: 'q',
    type: 'search',
    value: q.get('q') ?? '',
    autocomplete: 'off',
    placeholder: 'Name, phone or text',
  });
  const instance = h(
    'select',
    { id: 'cf-instance', name: 'instanceId' },
    h('option', { value: '' }, 'All'),
    [...names].map(([id, name]) => h('option', { value: id }, name)),
  );
  instance.value = instanceId ?? '';
  if (instanceId && !names.has(instanceId))
    instance.append(h('option', { value: instanceId, selected: true }, instanceId));
  const state = h(
    'select',
    { id: 'cf-state', name: 'state' },
    h('option', { value: '' }, 'Any'),
    STATES.map((s) => h('option', { value: s }, s)),
  );
  state.value = q.get('state') ?? '';
  const form = h(
    'form',
    { class: 'filters', role: 'search', 'aria-label': 'Find conversations' },
    h('div', { class: 'field' }, h('label', { for: 'cf-q' }, 'Search'), search),
    h('div', { class: 'field' }, h('label', { for: 'cf-instance' }, 'Instance'), instance),
    h('div', { class: 'field' }, h('label', { for: 'cf-state' }, 'State'), state),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Search')),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    if (search.value.trim()) p.set('q', search.value.trim());
    if (instance.value) p.set('instanceId', instance.value);
    if (state.value) p.set('state', state.value);
    const next = `#/conversations${p.size ? `?${p}` : ''}`;
    if (location.hash === next) void load();
    else location.hash = next;
  });
  // Filters apply as they change; the search text on Enter or the button.
  for (const sel of [instance, state]) sel.addEventListener('change', () => form.requestSubmit());

  const filtered = Boolean(q.get('q') || q.get('state') || instanceId);
  const params = (cursor: string | null) => {
    const p = new URLSearchParams({ limit: '50' });
    for (const k of ['q', 'state', 'instanceId']) if (q.get(k)) p.set(k, q.get(k)!);
    if (cursor) p.set('cursor', cursor);
    return p;
  };
  const row = (c: ConversationView) => {
    const last = c.lastMessage;
    return h(
      'tr',
      { 'data-conversation': c.id, 'data-state': c.state ?? '' },
      h(
        'th',
        { scope: 'row', class: 'c-chat' },
        h('a', { href: `#/conversations/${encodeURIComponent(c.id)}` }, chatName(c)),
        h('div', { class: 'handle small' }, chatHandle(c)),
      ),
      h(
        'td',
        { class: 'preview c-preview' },
        last
          ? h(
              'span',
              { class: 'clip-text', title: last.text },
              last.direction === 'out' ? 'You: ' : '',
              last.text || `(${last.status})`,
            )
          : '—',
      ),
      h('td', { class: 'c-instance' }, names.get(c.instanceId) ?? c.instanceId),
      h('td', { class: 'c-state' }, c.state ? badge(c.state) : '—'),
      h('td', { class: 'c-time' }, when(c.lastActivityAt)),
      h('td', { class: 'c-queued', title: 'Queued messages' }, String(c.pending)),
    );
  };
  const rows: ConversationView[] = [];
  let loading = false;
  let again = false;
  const load = async (cursor: string | null = null) => {
    if (loading) return void (again = true);
    loading = true;
    try {
      const res = await api<{ items: ConversationView[]; meta: { cursor: string | null; hasMore: boolean } }>(
        'GET',
        `/api/v2/conversations?${params(cursor)}`,
      );
      if (ctx.left) return;
      if (!cursor) rows.length = 0;
      rows.push(...res.items);
      replace(
        body,
        rows.length
          ? tableWrap(
              h(
                'table',
                { class: 'list conversations' },
                h('caption', { class: 'sr-only' }, 'Conversations, most recent first'),
                h(
                  'thead',
                  {},
                  h(
                    'tr',
                    {},
                    ['Chat', 'Last message', 'Instance', 'State', 'Last activity', 'Queued'].map((col) =>
                      h('th', { scope: 'col' }, col),
                    ),
                  ),
                ),
                h('tbody', {}, rows.map(row)),
              ),
            )
          : h(
              'p',
              { class: 'empty' },
              filtered
                ? 'No conversation matches.'
                : 'No conversations yet. They appear when a channel receives a message.',
            ),
      );
      if (res.meta.hasMore && res.meta.cursor) {
        const b = h('button', { type: 'button' }, 'Load more');
        b.addEventListener('click', () => void load(res.meta.cursor));
        replace(more, b);
      } else replace(more);
    } catch (err) {
      replace(body, errorBox(err));
    } finally {
      loading = false;
      if (again) {
        again = false;
        void load();
      }
    }
  };
  // A new turn anywhere moves a conversation to the top; its end changes its state.
  ctx.live((f) => {
    const type = f.payload?.type;
    if (f.channel === 'conversations' && (type === 'RUN_STARTED' || type === 'RUN_FINISHED' || type === 'RUN_ERROR'))
      void load();
  });
  replace(ctx.main, h('div', { class: 'page-head' }, h('h1', {}, 'Conversations')), form, body, more);
  await load();
}

/** The batch a message was answered in (conversation modes collect/interrupt), from its last `batched` step. */
function batchOf(t: TraceView): { id: string; position: number; size: number; lead: string } | null {
  const d = [...t.steps].reverse().find((s) => s.step === 'batched')?.details;
  return d && typeof d.batch_id === 'string'
    ? { id: d.batch_id, position: Number(d.position), size: Number(d.size), lead: String(d.answered_by) }
    : null;
}

/** A message's media: images inline, audio playable, a transcript under its audio, other files as links. */
function mediaOf(t: TraceView, direction: 'in' | 'out'): HTMLElement | null {
  const items = (t.media ?? []).filter((m) => m.direction === direction);
  if (items.length === 0) return null;
  return h('div', { class: 'msg-media' }, items.map(mediaItem));
}

function mediaItem(m: MediaItemView): HTMLElement {
  const label = m.filename ?? m.type;
  if (!m.url) return h('p', { class: 'muted small' }, `[${label} not stored: ${m.error ?? m.status}]`);
  const body =
    m.type === 'image' || m.type === 'sticker'
      ? h('img', { src: m.url, alt: m.caption ?? label, loading: 'lazy' })
      : m.type === 'audio'
        ? h('audio', { src: m.url, controls: true, preload: 'none' })
        : m.type === 'video'
          ? h('video', { src: m.url, controls: true, preload: 'none' })
          : h('a', { href: m.url, rel: 'noopener' }, label);
  return h(
    'figure',
    {},
    body,
    m.transcript
      ? h('figcaption', { class: 'transcript' }, h('span', { class: 'muted small' }, 'Transcript: '), m.transcript)
      : null,
  );
}

interface LiveTurn {
  text: string;
  seq: number;
  status: 'running' | 'finished' | 'error';
  error?: string;
  messages: number;
}

export async function conversationPage(ctx: PageContext): Promise<void> {
  const id = ctx.params[0]!;
  const live = new Map<string, LiveTurn>();
  const thread = h('div', { class: 'thread' });
  const errorArea = h('div');
  let traces: TraceView[] = [];
  let loading = false;
  let again = false;

  const replyText = (t: TraceView): { text: string; streaming: boolean; note: string | null } => {
    const batch = batchOf(t);
    if (batch && batch.lead !== t.id && t.responseText === null) {
      // An earlier fragment of a batch: the batch's last message carries the one reply.
      const others = batch.size - 1;
      return TERMINAL.includes(t.status) && t.status !== 'completed'
        ? { text: '', streaming: false, note: `No reply (${t.status.replace(/_/g, ' ')}, with its batch)` }
        : {
            text: '',
            streaming: false,
            note: `Answered together with ${others} other message${others === 1 ? '' : 's'} in the batch's reply below`,
          };
    }
    const l = live.get(t.id);
    if (l?.status === 'running')
      return { text: l.text, streaming: true, note: l.text ? null : 'The agent is thinking…' };
    if (t.responseText !== null && TERMINAL.includes(t.status))
      return { text: t.responseText, streaming: false, note: null };
    if (l?.status === 'finished') return { text: l.text, streaming: false, note: null };
    if (l?.status === 'error') return { text: l.text, streaming: false, note: `Agent error: ${l.error ?? 'unknown'}` };
    if (t.responseText !== null) return { text: t.responseText, streaming: false, note: null };
    if (t.kind === 'send') return { text: '', streaming: false, note: null };
    if (TERMINAL.includes(t.status))
      return {
        text: '',
        streaming: false,
        note: t.error ? `No reply: ${t.error}` : `No reply (${t.status.replace(/_/g, ' ')})`,
      };
    return { text: '', streaming: false, note: 'Waiting for the agent…' };
  };

  const fillReply = (el: HTMLElement, t: TraceView) => {
    const r = replyText(t);
    el.classList.toggle('streaming', r.streaming);
    el.setAttribute('aria-busy', String(r.streaming));
    el.querySelector('.reply-text')!.textContent = r.text;
    el.querySelector('.reply-note')!.textContent = r.note ?? '';
  };

  const turn = (t: TraceView) => {
    const outbound = t.kind === 'send';
    const batch = batchOf(t);
    const reply = h(
      'div',
      { class: 'msg agent', 'data-reply-for': t.id },
      h('div', { class: 'msg-head' }, 'Agent'),
      h('p', { class: 'reply-text' }),
      mediaOf(t, 'out'),
      h('p', { class: 'reply-note muted small' }),
    );
    fillReply(reply, t);
    return h(
      'article',
      {
        class: 'turn',
        'data-trace': t.id,
        'data-batch': batch?.id ?? null,
        'aria-label': `Message from ${t.sender.name ?? t.sender.id}`,
      },
      h(
        'div',
        { class: 'bubbles' },
        h(
          'div',
          { class: outbound ? 'msg agent' : 'msg user' },
          h(
            'div',
            { class: 'msg-head' },
            outbound ? 'Sent via API' : (t.sender.name ?? t.sender.phone ?? t.sender.id),
            ' · ',
            h('time', { datetime: t.receivedAt }, when(t.receivedAt)),
          ),
          h('p', {}, t.text),
          mediaOf(t, 'in'),
        ),
        outbound ? null : reply,
      ),
      h(
        'aside',
        { class: 'turn-steps', 'aria-label': 'Trace steps' },
        h(
          'div',
          { class: 'turn-meta' },
          badge(t.status),
          ' ',
          h('a', { href: `#/traces/${encodeURIComponent(t.id)}` }, 'Trace'),
          batch
            ? h(
                'span',
                { class: 'muted small', title: `batch ${batch.id}` },
                ` · batch message ${batch.position} of ${batch.size}`,
              )
            : null,
        ),
        stepTimeline(t.steps, true),
      ),
    );
  };

  const render = () => {
    replace(
      thread,
      traces.length ? traces.map(turn) : h('p', { class: 'empty' }, 'No messages in this conversation yet.'),
    );
  };

  const load = async () => {
    if (loading) return void (again = true);
    loading = true;
    try {
      const res = await api<{ items: TraceView[] }>(
        'GET',
        `/api/v2/traces?conversationId=${encodeURIComponent(id)}&limit=50`,
      );
      if (ctx.left) return;
      traces = res.items.slice().reverse(); // oldest first, like a chat
      replace(errorArea);
      render();
    } catch (err) {
      replace(errorArea, errorBox(err));
    } finally {
      loading = false;
      if (again) {
        again = false;
        void load();
      }
    }
  };

  const updateReply = (turnId: string) => {
    const t = traces.find((x) => x.id === turnId);
    const el = thread.querySelector<HTMLElement>(`[data-reply-for="${CSS.escape(turnId)}"]`);
    if (t && el) fillReply(el, t);
    else void load(); // a message this page has not listed yet
  };

  const onFrame = (f: LiveFrame) => {
    if (f.type === 'resync') {
      const s = f.snapshot;
      if (s?.conversationId !== id) return;
      live.set(s.turnId, { text: s.text, seq: s.seq, status: s.status, error: s.error, messages: s.text ? 1 : 0 });
      return updateReply(s.turnId);
    }
    if (f.type !== 'event' || f.channel !== 'conversations') return;
    const p = f.payload;
    if (p?.conversationId !== id || typeof p.turnId !== 'string') return;
    let l = live.get(p.turnId);
    if (p.type === 'RUN_STARTED' || !l) {
      l = { text: '', seq: 0, status: 'running', messages: 0 };
      live.set(p.turnId, l);
    }
    if (typeof p.seq === 'number') {
      if (p.seq <= l.seq) return; // already included (e.g. in a resync snapshot)
      l.seq = p.seq;
    }
    switch (p.type) {
      case 'TEXT_MESSAGE_START':
        if (l.messages++ > 0 && l.text) l.text += '\n\n';
        break;
      case 'TEXT_MESSAGE_CONTENT':
        l.text += String(p.delta ?? '');
        break;
      case 'CUSTOM':
        if (p.name === 'TURN_RESTARTED') {
          l.text = '';
          l.messages = 0;
        }
        break;
      case 'RUN_FINISHED':
        l.status = 'finished';
        if (typeof p.result?.text === 'string') l.text = p.result.text;
        // Steps for delivery land right after the reply; fetch them.
        ctx.later(300, () => void load());
        ctx.later(1500, () => void load());
        break;
      case 'RUN_ERROR':
        l.status = 'error';
        l.error = String(p.message ?? '');
        ctx.later(300, () => void load());
        break;
    }
    updateReply(p.turnId);
  };
  ctx.live(onFrame);
  // Steps of queued messages change without stream frames (retries, delivery); refresh while any is open.
  ctx.every(4000, () => {
    if (traces.some((t) => !TERMINAL.includes(t.status))) void load();
  });

  replace(
    ctx.main,
    h(
      'div',
      { class: 'page-head' },
      h('h1', {}, 'Conversation'),
      h('a', { class: 'button', href: '#/conversations' }, 'All conversations'),
    ),
    h('p', { class: 'muted small' }, h('code', { class: 'wrap' }, id)),
    errorArea,
    thread,
  );
  await load();
}
