// "Try it" on an instance page. A channel with an embeddable widget (GET /api/v2/channels lists
// its path) is tried with that very widget, drawn inside the panel. Any other instance is tried
// through a test conversation on the AG-UI endpoint (POST /api/v2/agui/{id}): the message goes
// through the whole pipeline (durable inbox, conversation actor, access rules, agent, trace), but it
// is marked as posted through the API, so its reply is delivered by the API pseudo-channel to this
// panel and never reaches the platform (no WhatsApp, Discord or Slack message is sent). Test
// conversations are named `agui:console-try-…` in the conversation list.
import { apiKey } from '../api.ts';
import { h, replace } from '../dom.ts';
import type { PageContext } from '../page.ts';

export interface TryItInstance {
  id: string;
  name: string;
  channel: string;
  isActive: boolean;
}

export function tryItPanel(ctx: PageContext, inst: TryItInstance, widget: string | undefined): HTMLElement {
  const section = h(
    'section',
    { class: 'card try-it', 'aria-labelledby': 'try-it-title' },
    h('h2', { id: 'try-it-title' }, 'Try it'),
  );
  if (!inst.isActive)
    section.append(h('p', { class: 'muted' }, 'This instance is inactive: activate it to try it here.'));
  if (widget) section.append(...widgetPanel(ctx, inst, widget));
  else section.append(...testConversation(ctx, inst));
  return section;
}

function widgetPanel(ctx: PageContext, inst: TryItInstance, widget: string): Node[] {
  const containerId = `try-it-widget-${inst.id}`;
  const container = h('div', { id: containerId, class: 'try-it-widget' });
  const snippet = `<script src="${location.origin}${widget}" data-instance="${inst.name}"></script>`;
  // The widget reads its settings from its own script tag; it starts once the container is on the page.
  queueMicrotask(() => {
    if (ctx.left) return;
    const script = document.createElement('script');
    script.src = widget;
    script.dataset.instance = inst.name;
    script.dataset.container = containerId;
    document.body.appendChild(script);
    ctx.onLeave(() => script.remove());
  });
  return [
    h('p', { class: 'muted small' }, 'This is the chat your visitors see. To put it on a site, add:'),
    h('pre', { class: 'details' }, snippet),
    container,
  ];
}

function testConversation(ctx: PageContext, inst: TryItInstance): Node[] {
  const threadKey = `switchboard.try.${inst.id}`;
  let threadId = sessionStorage.getItem(threadKey);
  if (!threadId) {
    threadId = `console-try-${crypto.randomUUID()}`;
    sessionStorage.setItem(threadKey, threadId);
  }
  const log = h('div', { class: 'bubbles try-log', role: 'log', 'aria-live': 'polite' });
  const input = h('textarea', { id: 'try-it-input', rows: 2, placeholder: 'Say something to the agent…' });
  const send = h('button', { type: 'submit', class: 'primary' }, 'Send');
  const form = h(
    'form',
    { class: 'try-form' },
    h('label', { for: 'try-it-input', class: 'sr-only' }, 'Test message'),
    input,
    send,
  );
  let aborter: AbortController | null = null;
  ctx.onLeave(() => aborter?.abort());

  const say = async (text: string) => {
    log.append(h('div', { class: 'msg user' }, h('p', {}, text)));
    const replyText = h('span', { class: 'reply-text' });
    const note = h('span', { class: 'reply-note muted small' });
    const bubble = h('div', { class: 'msg agent streaming' }, h('p', {}, replyText), note);
    log.append(bubble);
    aborter = new AbortController();
    try {
      const res = await fetch(`/api/v2/agui/${encodeURIComponent(inst.id)}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': apiKey() ?? '', accept: 'text/event-stream' },
        body: JSON.stringify({
          threadId,
          runId: crypto.randomUUID(),
          messages: [{ id: crypto.randomUUID(), role: 'user', content: text }],
        }),
        signal: aborter.signal,
      });
      if (!res.ok || !res.body) {
        const err = await res.json().catch(() => null);
        throw new Error(err?.error?.message ?? `HTTP ${res.status}`);
      }
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let cut = buffer.indexOf('\n\n');
        while (cut >= 0) {
          const line = buffer.slice(0, cut).replace(/^data: ?/, '');
          buffer = buffer.slice(cut + 2);
          cut = buffer.indexOf('\n\n');
          let ev: any;
          try {
            ev = JSON.parse(line);
          } catch {
            continue;
          }
          // Text only, never markup: an agent's reply cannot inject anything into the console.
          if (ev.type === 'TEXT_MESSAGE_CONTENT') replyText.textContent += String(ev.delta ?? '');
          else if (ev.type === 'RUN_FINISHED' && typeof ev.result?.text === 'string')
            replyText.textContent = ev.result.text;
          else if (ev.type === 'RUN_ERROR') note.textContent = `No reply: ${String(ev.message ?? 'error')}`;
          else if (ev.type === 'CUSTOM' && ev.name === 'TURN_RESTARTED') replyText.textContent = '';
        }
      }
    } catch (err) {
      if (!ctx.left) note.textContent = `No reply: ${(err as Error).message}`;
    } finally {
      bubble.classList.remove('streaming');
    }
  };

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    input.value = '';
    send.disabled = true;
    try {
      await say(text);
    } finally {
      send.disabled = false;
      input.focus();
    }
  });
  input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });
  const threadName = h('code', {}, `agui:${threadId}`);
  const intro = h(
    'p',
    { class: 'muted small' },
    'A test conversation through the whole pipeline (inbox, access rules, agent, trace). Replies come back here only: nothing is sent to ',
    inst.channel,
    '. It is listed in Conversations as ',
    threadName,
    '.',
  );
  const reset = h('button', { type: 'button', class: 'link' }, 'Start a new test conversation');
  reset.addEventListener('click', () => {
    sessionStorage.removeItem(threadKey);
    threadId = `console-try-${crypto.randomUUID()}`;
    sessionStorage.setItem(threadKey, threadId);
    threadName.textContent = `agui:${threadId}`;
    replace(log);
  });
  return [intro, log, form, h('div', { class: 'actions' }, reset)];
}
