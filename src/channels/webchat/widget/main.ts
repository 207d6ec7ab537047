/// <reference lib="dom" />
// The embeddable web chat: <script src="{gateway}/webchat.js" data-instance="NAME"></script>.
// Plain TypeScript and the DOM in a shadow root; no framework, no outside assets. Draws a bubble
// that opens a chat panel (or, with data-container="ID", the panel inside that element).
//
// A visitor token kept in localStorage makes the visitor the same across reloads. Messages carry a
// client id, so a send retried after a network error is stored once. The reply is followed on the
// SSE stream (the /ws frames: a gap-free seq per turn, a resync snapshot after lagging or when
// joining mid-reply); after every (re)connect the history is read again, which catches up on what
// was missed. Every text is set as text (textContent), never parsed as HTML.
import { Conversation, type Entry, type Local } from './model.ts';
import { WIDGET_CSS } from './style.ts';

interface Session {
  visitorId: string;
  conversationId: string;
  token: string;
  title: string;
  welcome: string | null;
  maxMessageChars: number;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly retryAfter: number | null,
  ) {
    super(message);
  }
}

function randomId(): string {
  if (typeof crypto !== 'undefined' && 'randomUUID' in crypto) return crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  text?: string,
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

class Chat {
  private session: Session | null = null;
  private conversation = new Conversation();
  private visitorId: string | null = null;
  private readonly nodes = new Map<string, HTMLElement>();
  private stream: AbortController | null = null;
  private destroyed = false;
  private started = false;
  private renderQueued = false;
  private readonly storageKey: string;

  private readonly root: HTMLDivElement;
  private readonly panel: HTMLElement;
  private readonly bubble: HTMLButtonElement | null;
  private readonly title: HTMLHeadingElement;
  private readonly log: HTMLDivElement;
  private readonly status: HTMLParagraphElement;
  private readonly input: HTMLTextAreaElement;
  private readonly sendButton: HTMLButtonElement;

  constructor(
    private readonly base: string,
    private readonly instance: string,
    container: HTMLElement | null,
    openAtStart: boolean,
  ) {
    this.storageKey = `switchboard-webchat:${base}:${instance}`;
    const host = el('div', { 'data-switchboard-webchat': instance });
    const shadow = host.attachShadow({ mode: 'open' });
    try {
      const sheet = new CSSStyleSheet();
      sheet.replaceSync(WIDGET_CSS);
      shadow.adoptedStyleSheets = [sheet];
    } catch {
      shadow.appendChild(el('style', {}, WIDGET_CSS));
    }
    const inline = container !== null;
    this.root = el('div', { class: inline ? 'root inline' : 'root' });
    const panelId = `sbwc-panel-${randomId()}`;
    this.panel = el('section', { class: 'panel', id: panelId, 'aria-label': 'Chat' });
    const head = el('div', { class: 'head' });
    this.title = el('h2', {}, 'Chat');
    head.appendChild(this.title);
    this.log = el('div', { class: 'log', role: 'log', 'aria-live': 'polite', tabindex: '0', 'aria-label': 'Messages' });
    this.status = el('p', { class: 'status', role: 'status' });
    const form = el('form');
    const inputId = `sbwc-input-${randomId()}`;
    const label = el('label', { class: 'sr-only', for: inputId }, 'Message');
    this.input = el('textarea', { id: inputId, rows: '1', placeholder: 'Type a message…', autocomplete: 'off' });
    this.sendButton = el('button', { type: 'submit', class: 'send' }, 'Send');
    form.append(label, this.input, this.sendButton);
    this.panel.append(head, this.log, this.status, form);
    this.root.appendChild(this.panel);

    if (inline) {
      this.bubble = null;
      container.appendChild(host);
    } else {
      const close = el('button', { type: 'button', class: 'close', 'aria-label': 'Close chat' }, '×');
      head.appendChild(close);
      this.bubble = el('button', {
        type: 'button',
        class: 'bubble',
        'aria-label': 'Open chat',
        'aria-expanded': 'false',
        'aria-controls': panelId,
      });
      this.bubble.textContent = '💬';
      this.panel.hidden = true;
      this.root.appendChild(this.bubble);
      this.bubble.addEventListener('click', () => (this.panel.hidden ? this.open() : this.close()));
      close.addEventListener('click', () => this.close());
      this.panel.addEventListener('keydown', (ev) => {
        if (ev.key === 'Escape') this.close();
      });
      document.body.appendChild(host);
    }
    shadow.appendChild(this.root);

    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.send();
    });
    this.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        void this.send();
      }
    });
    if (inline) {
      // Inside another page's element (the console): stop when that element goes away.
      const watch = setInterval(() => {
        if (!host.isConnected) {
          clearInterval(watch);
          this.destroy();
        }
      }, 1000);
    }
    if (inline || openAtStart) this.open(false);
  }

  open(focus = true): void {
    this.panel.hidden = false;
    this.bubble?.setAttribute('aria-expanded', 'true');
    this.bubble?.setAttribute('aria-label', 'Close chat');
    if (focus) this.input.focus();
    if (!this.started) {
      this.started = true;
      void this.run();
    }
    this.scrollDown(true);
  }

  close(): void {
    if (!this.bubble) return;
    this.panel.hidden = true;
    this.bubble.setAttribute('aria-expanded', 'false');
    this.bubble.setAttribute('aria-label', 'Open chat');
    this.bubble.focus();
  }

  destroy(): void {
    this.destroyed = true;
    this.stream?.abort();
  }

  // ------------------------------------------------------------------ HTTP

  private url(path: string): string {
    return `${this.base}/webchat/${encodeURIComponent(this.instance)}${path}`;
  }

  /**
   * `simple`: no content type and no token header, so the browser sends it without a preflight and
   * a refused origin can read its 403 (the session call, which carries its token in the body).
   */
  private async call<T>(method: string, path: string, body?: unknown, simple = false): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined && !simple) headers['content-type'] = 'application/json';
    if (this.session && !simple) headers.authorization = `Bearer ${this.session.token}`;
    const res = await fetch(this.url(path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
    });
    const text = await res.text();
    let json: any = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!res.ok) {
      const retry = Number(res.headers.get('retry-after'));
      throw new HttpError(
        res.status,
        String(json?.error?.code ?? res.status),
        String(json?.error?.message ?? `HTTP ${res.status}`),
        Number.isFinite(retry) && retry > 0 ? retry : null,
      );
    }
    return json as T;
  }

  private stored(): string | null {
    try {
      return localStorage.getItem(this.storageKey);
    } catch {
      return null; // storage blocked: the visitor lasts as long as the page
    }
  }

  private store(token: string | null): void {
    try {
      if (token) localStorage.setItem(this.storageKey, token);
      else localStorage.removeItem(this.storageKey);
    } catch {
      // storage blocked
    }
  }

  /** Resumes the stored visitor, or starts a new one when there is none or its token is refused. */
  private async startSession(): Promise<void> {
    const token = this.session?.token ?? this.stored();
    this.session = null;
    let s: Session | null = null;
    if (token) {
      try {
        s = await this.call<Session>('POST', '/session', { token }, true);
      } catch (err) {
        if (!(err instanceof HttpError && err.status === 401)) throw err;
        this.store(null);
      }
    }
    s ??= await this.call<Session>('POST', '/session', {}, true);
    this.session = s;
    this.store(s.token);
    // A new visitor (the old token was refused): the old conversation is not theirs to show.
    if (this.visitorId !== null && this.visitorId !== s.visitorId) this.conversation = new Conversation();
    this.visitorId = s.visitorId;
    this.title.textContent = s.title;
    this.panel.setAttribute('aria-label', s.title);
  }

  private async loadHistory(): Promise<void> {
    const s = this.session;
    if (!s) return;
    const res = await this.call<{ items: Entry[] }>(
      'GET',
      `/conversations/${encodeURIComponent(s.conversationId)}/messages`,
    );
    this.conversation.setHistory(res.items);
    this.render();
  }

  // ------------------------------------------------------------------ the loop

  /** Session, history and the live stream; reconnects with backoff until destroyed. */
  private async run(): Promise<void> {
    let delay = 1000;
    let renewed = false;
    while (!this.destroyed) {
      try {
        if (!this.session) await this.startSession();
        await this.follow(() => {
          delay = 1000;
          renewed = false;
          this.setStatus('');
        });
      } catch (err) {
        if (this.destroyed) return;
        if (err instanceof HttpError && err.status === 401) {
          // Token expired or revoked (the instance's secret rotated): a new session, at once the first time.
          this.session = null;
          this.store(null);
          if (!renewed) {
            renewed = true;
            continue;
          }
        }
        if (err instanceof HttpError && err.status === 403) {
          this.setStatus('This site may not use this chat.');
          return;
        }
        const wait = err instanceof HttpError && err.retryAfter ? err.retryAfter * 1000 : delay;
        this.setStatus(
          err instanceof HttpError && err.status === 404 ? 'This chat is not available.' : 'Reconnecting…',
        );
        await sleep(wait);
        delay = Math.min(delay * 2, 15_000);
      }
    }
  }

  /** Reads the SSE stream until it ends; `connected` runs once the subscription is in place. */
  private async follow(connected: () => void): Promise<void> {
    const s = this.session!;
    const ctrl = new AbortController();
    this.stream = ctrl;
    const res = await fetch(this.url(`/conversations/${encodeURIComponent(s.conversationId)}/stream`), {
      headers: { authorization: `Bearer ${s.token}`, accept: 'text/event-stream' },
      signal: ctrl.signal,
      credentials: 'omit',
      cache: 'no-store',
    });
    if (!res.ok || !res.body) {
      const retry = Number(res.headers.get('retry-after'));
      throw new HttpError(res.status, String(res.status), `stream: HTTP ${res.status}`, retry > 0 ? retry : null);
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    // The server writes at least a comment every few seconds: silence means the network is gone.
    let lastData = Date.now();
    const watchdog = setInterval(() => {
      if (Date.now() - lastData > 25_000) ctrl.abort();
    }, 5_000);
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.destroyed) break;
        lastData = Date.now();
        buffer += value;
        let cut = buffer.indexOf('\n\n');
        while (cut >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = block
            .split('\n')
            .filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).replace(/^ /, ''))
            .join('\n');
          if (data) this.onFrame(data, connected);
          cut = buffer.indexOf('\n\n');
        }
      }
    } finally {
      clearInterval(watchdog);
      ctrl.abort();
    }
    throw new Error('stream ended');
  }

  private onFrame(data: string, connected: () => void): void {
    let f: any;
    try {
      f = JSON.parse(data);
    } catch {
      return;
    }
    if (f.type === 'subscribed') {
      connected();
      // Subscribed first, then read: whatever finished while we were away is in the history.
      this.loadHistory().catch(() => this.setStatus('Could not load the conversation.'));
    } else if (f.type === 'resync' && f.snapshot) {
      this.conversation.resync(f.snapshot);
      this.render();
    } else if (f.type === 'event' && f.payload?.turnId) {
      if (this.conversation.apply(f.payload)) this.render();
    } else if (f.type === 'message.status') {
      if (this.conversation.needsHistory(f.traceId)) this.loadHistory().catch(() => {});
    }
  }

  // ------------------------------------------------------------------ sending

  private async send(): Promise<void> {
    const text = this.input.value;
    if (!text.trim()) return;
    const max = this.session?.maxMessageChars ?? 2000;
    if (text.length > max) {
      this.setStatus(`That message is too long (at most ${max} characters).`);
      return;
    }
    this.input.value = '';
    const local: Local = { clientId: randomId(), text, messageId: null, note: 'sending…' };
    this.conversation.locals.push(local);
    this.render();
    this.scrollDown(true);
    // The same client id on every try: a send that reached the gateway is stored once.
    for (let attempt = 0; ; attempt++) {
      try {
        if (!this.session) await this.startSession();
        const res = await this.call<{ messageId: string }>('POST', '/messages', {
          clientMessageId: local.clientId,
          text,
        });
        local.messageId = res.messageId;
        local.note = null;
        this.conversation.turn(res.messageId);
        this.setStatus('');
        break;
      } catch (err) {
        if (err instanceof HttpError && err.status === 401 && attempt < 2) {
          this.session = null;
          this.store(null);
          continue;
        }
        if (err instanceof HttpError && err.status !== 503) {
          local.note =
            err.status === 429
              ? `not sent: too many messages${err.retryAfter ? `, try again in ${err.retryAfter}s` : ''}`
              : err.status === 413
                ? 'not sent: too long'
                : `not sent: ${err.message}`;
          break;
        }
        if (attempt >= 4) {
          local.note = 'not sent: the chat cannot be reached';
          break;
        }
        await sleep(1000 * 2 ** attempt);
      }
    }
    this.render();
  }

  // ------------------------------------------------------------------ rendering

  private setStatus(text: string): void {
    if (this.status.textContent !== text) this.status.textContent = text;
  }

  private render(): void {
    if (this.renderQueued) return;
    this.renderQueued = true;
    queueMicrotask(() => {
      this.renderQueued = false;
      const nearBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 60;
      const items = this.conversation.items(this.session?.welcome ?? null);
      const keep = new Set(items.map((i) => i.key));
      for (const [key, node] of this.nodes) {
        if (!keep.has(key)) {
          node.remove();
          this.nodes.delete(key);
        }
      }
      items.forEach((item, i) => {
        let node = this.nodes.get(item.key);
        if (!node) {
          node = el('div', { 'data-key': item.key });
          this.nodes.set(item.key, node);
        }
        const cls = `msg ${item.dir}${item.typing ? ' typing' : ''}`;
        if (node.className !== cls) node.className = cls;
        // Text only: whatever the message holds is shown, never interpreted as markup.
        const body = node.firstChild as HTMLSpanElement | null;
        const textNode = body ?? node.appendChild(el('span', { class: 'text' }));
        if (textNode.textContent !== item.text) textNode.textContent = item.text;
        if (item.typing) node.setAttribute('aria-label', 'typing');
        else node.removeAttribute('aria-label');
        const noteNode = node.querySelector('.note');
        if (item.note) {
          if (!noteNode) node.appendChild(el('small', { class: 'note' }, item.note));
          else if (noteNode.textContent !== item.note) noteNode.textContent = item.note;
        } else noteNode?.remove();
        if (this.log.children[i] !== node) this.log.insertBefore(node, this.log.children[i] ?? null);
      });
      this.scrollDown(nearBottom);
    });
  }

  private scrollDown(force: boolean): void {
    if (force) this.log.scrollTop = this.log.scrollHeight;
  }
}

function boot(): void {
  const script = document.currentScript as HTMLScriptElement | null;
  const instance = script?.dataset.instance;
  if (!script || !instance) {
    console.error('webchat.js: add data-instance="<instance name>" to the script tag');
    return;
  }
  const base = (script.dataset.base ?? new URL(script.src, location.href).origin).replace(/\/+$/, '');
  const containerId = script.dataset.container;
  const start = () => {
    const container = containerId ? document.getElementById(containerId) : null;
    if (containerId && !container) {
      console.error(`webchat.js: no element with id "${containerId}"`);
      return;
    }
    new Chat(base, instance, container, script.dataset.open === 'true');
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start, { once: true });
  else start();
}

boot();
