/// <reference lib="dom" />
// Switchboard web console: plain TypeScript and the DOM, no framework. The console is a handful of
// tables and forms; a view library would add more bytes and build steps than it saves. Bun.build
// bundles this file when the server starts serving it — no other tooling, loads in one request.
import { ApiFailure, api, apiKey, errorBox, setApiKey, whenUnauthorized } from './api.ts';
import { h, replace } from './dom.ts';
import { connectLive, disconnectLive, onLiveState } from './live.ts';
import { type Page, PageContext } from './page.ts';
import { conversationPage, conversationsPage } from './pages/conversations.ts';
import { deadLettersPage } from './pages/dead-letters.ts';
import { instanceFormPage, instancesPage } from './pages/instances.ts';
import { keysPage } from './pages/keys.ts';
import { overviewPage } from './pages/overview.ts';
import { pairingPage } from './pages/pairing.ts';
import { tracePage, tracesPage } from './pages/traces.ts';
import { webhookDeliveriesPage, webhooksPage } from './pages/webhooks.ts';

const ROUTES: Array<[RegExp, Page]> = [
  [/^overview$/, overviewPage],
  [/^instances$/, instancesPage],
  [/^instances\/new$/, instanceFormPage],
  [/^instances\/([^/]+)\/edit$/, instanceFormPage],
  [/^instances\/([^/]+)\/pair$/, pairingPage],
  [/^conversations$/, conversationsPage],
  [/^conversations\/([^/]+)$/, conversationPage],
  [/^traces$/, tracesPage],
  [/^traces\/([^/]+)$/, tracePage],
  [/^dead-letters$/, deadLettersPage],
  [/^keys$/, keysPage],
  [/^webhooks$/, webhooksPage],
  [/^webhooks\/([^/]+)$/, webhookDeliveriesPage],
];

const NAV: Array<[string, string]> = [
  ['overview', 'Overview'],
  ['instances', 'Instances'],
  ['conversations', 'Conversations'],
  ['traces', 'Traces'],
  ['dead-letters', 'Dead letters'],
  ['keys', 'Keys'],
  ['webhooks', 'Webhooks'],
];

const root = document.getElementById('app')!;
let current: PageContext | null = null;

function signIn(): void {
  current?.leave();
  current = null;
  disconnectLive();
  const input = h('input', {
    id: 'api-key',
    name: 'apiKey',
    type: 'password',
    autocomplete: 'off',
    required: true,
    spellcheck: 'false',
  });
  const status = h('div', { 'aria-live': 'polite' });
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h(
    'form',
    { class: 'card login', 'aria-labelledby': 'login-title' },
    h('h1', { id: 'login-title' }, 'Switchboard console'),
    h('p', {}, 'Enter an API key. It stays in this tab only and is sent with every request.'),
    h('label', { for: 'api-key' }, 'API key'),
    input,
    status,
    h('div', { class: 'actions' }, button),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    button.disabled = true;
    replace(status, h('p', { class: 'muted' }, 'Checking the key…'));
    try {
      // Any read the key may be allowed to do proves it (a 403 below proves it too).
      await api('GET', '/api/v2/instances?limit=1', undefined, key);
      setApiKey(key);
      start();
    } catch (err) {
      // 403: the key is valid but may not list instances; its own pages will say what it may not do.
      if (err instanceof ApiFailure && err.status === 403) {
        setApiKey(key);
        return start();
      }
      replace(status, errorBox(err));
      button.disabled = false;
      input.focus();
    }
  });
  replace(root, h('main', { id: 'main', class: 'narrow' }, form));
  input.focus();
}

function shell(): HTMLElement {
  const liveBadge = h('span', { class: 'live-state', role: 'status', title: 'Live updates' }, 'offline');
  onLiveState((s) => {
    liveBadge.textContent = s === 'live' ? '● live' : s === 'refused' ? 'live feed refused' : s;
    liveBadge.className = `live-state live-${s}`;
  });
  const links = NAV.map(([route, label]) => h('a', { href: `#/${route}`, 'data-route': route }, label));
  const signOut = h('button', { type: 'button', class: 'link' }, 'Sign out');
  signOut.addEventListener('click', () => {
    setApiKey(null);
    location.hash = '';
    signIn();
  });
  const main = h('main', { id: 'main', tabindex: '-1' });
  replace(
    root,
    h(
      'header',
      { class: 'top' },
      h('a', { class: 'brand', href: '#/overview' }, 'Switchboard'),
      h('nav', { 'aria-label': 'Sections' }, links),
      h('div', { class: 'top-right' }, liveBadge, signOut),
    ),
    main,
  );
  return main;
}

let main: HTMLElement | null = null;

function route(): void {
  if (!apiKey() || !main) return;
  const hash = location.hash.replace(/^#\/?/, '');
  const [path = '', qs = ''] = hash.split('?');
  const target = path || 'overview';
  current?.leave();
  for (const a of root.querySelectorAll<HTMLAnchorElement>('nav a')) {
    const on = target === a.dataset.route || target.startsWith(`${a.dataset.route}/`);
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  for (const [re, page] of ROUTES) {
    const m = re.exec(target);
    if (!m) continue;
    const ctx = new PageContext(main, m.slice(1).map(decodeURIComponent), new URLSearchParams(qs));
    current = ctx;
    replace(main, h('p', { class: 'muted' }, 'Loading…'));
    Promise.resolve(page(ctx)).catch((err) => {
      if (!ctx.left) replace(main!, errorBox(err));
    });
    return;
  }
  replace(main, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/overview' }, 'Back to the overview')));
}

function start(): void {
  const key = apiKey();
  if (!key) return signIn();
  main = shell();
  connectLive(key);
  route();
}

whenUnauthorized(() => {
  setApiKey(null);
  signIn();
});
window.addEventListener('hashchange', route);
start();
