// Instances: list with live status badges, activate/deactivate, delete; create/edit form that
// shows the API's validation problems next to the fields they concern.
import { ApiFailure, api, errorBox, type FieldProblem } from '../api.ts';
import { badge, h, replace, tableWrap } from '../dom.ts';
import type { PageContext } from '../page.ts';
import { tryItPanel } from './try-it.ts';

export interface InstanceView {
  id: string;
  name: string;
  channel: string;
  channelConfig: Record<string, unknown>;
  agent: { url: string | null; type: string; apiKey: string | null; timeoutSeconds: number };
  settings: { replyMode?: string };
  /** The conversation mode it runs (its own, or the settings' default). */
  messaging?: { mode: string; debounceMs: number; maxWaitMs: number; maxBatch: number };
  isActive: boolean;
  status: string;
  statusReason: string | null;
  webhookUrl: string | null;
  updatedAt: string;
}

const AGENT_TYPES = ['auto', 'json', 'agui', 'openai', 'leo', 'echo', 'script'];
const REPLY_MODES = ['final', 'blocks', 'edit'];
const CONVERSATION_MODES = ['sequential', 'collect', 'interrupt'];

/** A channel as GET /api/v2/channels describes it (what the console needs of it). */
interface ChannelInfo {
  id: string;
  /** Path of the channel's embeddable chat script, if it has one. */
  widget?: string;
  capabilities: { pairing: string };
  fields: Array<{
    name: string;
    v1Name: string;
    type: string;
    secret: boolean;
    form?: { label: string; hint?: string };
  }>;
}

interface ChannelField {
  key: string; // camelCase as in channelConfig
  v1Name: string;
  label: string;
  secret?: boolean;
  kind?: 'text' | 'url' | 'bool' | 'int';
  hint?: string;
}

let channelList: Promise<ChannelInfo[]> | null = null;

/** The channels and their fields come from the API (asked once; a failure is asked again next time). */
function channels(): Promise<ChannelInfo[]> {
  channelList ??= api<{ items: ChannelInfo[] }>('GET', '/api/v2/channels').then(
    (r) => r.items,
    (err) => {
      channelList = null;
      throw err;
    },
  );
  return channelList;
}

/** Channels linked from the console's pairing page (QR and phone-number code). */
const pairsInConsole = (c: ChannelInfo | undefined) => c?.capabilities.pairing === 'qr+code';

/** The channel fields the form offers (the common ones; the API accepts more). */
function formFields(c: ChannelInfo | undefined): ChannelField[] {
  return (c?.fields ?? []).flatMap((f) =>
    f.form
      ? [
          {
            key: f.name,
            v1Name: f.v1Name,
            label: f.form.label,
            hint: f.form.hint,
            secret: f.secret,
            kind:
              f.type === 'bool'
                ? ('bool' as const)
                : f.type === 'http'
                  ? ('url' as const)
                  : f.type === 'int'
                    ? ('int' as const)
                    : ('text' as const),
          },
        ]
      : [],
  );
}

export function statusBadge(inst: { id: string; status: string; statusReason?: string | null }): HTMLSpanElement {
  return badge(inst.status, { 'data-status-for': inst.id, title: inst.statusReason ?? null });
}

/** Applies a live instance.status event to every badge for that instance on the page. */
export function applyStatusEvent(scope: ParentNode, payload: any): void {
  if (payload?.type !== 'instance.status') return;
  for (const el of scope.querySelectorAll<HTMLElement>(
    `[data-status-for="${CSS.escape(String(payload.instanceId))}"]`,
  )) {
    el.replaceWith(statusBadge({ id: payload.instanceId, status: payload.status, statusReason: payload.reason }));
  }
}

export async function instancesPage(ctx: PageContext): Promise<void> {
  const flash = h('div', { 'aria-live': 'polite' });
  const body = h('div');
  const load = async () => {
    try {
      const [res, chans] = await Promise.all([
        api<{ items: InstanceView[]; meta: { total?: number } }>('GET', '/api/v2/instances?limit=100'),
        channels(),
      ]);
      if (ctx.left) return;
      replace(
        body,
        res.items.length
          ? table(res.items, chans)
          : [
              h('p', { class: 'empty' }, 'No instances yet. Create one to connect a channel to an agent.'),
              demoOffer(chans, flash),
            ],
      );
    } catch (err) {
      replace(body, errorBox(err));
    }
  };
  const table = (items: InstanceView[], chans: ChannelInfo[]) =>
    tableWrap(
      h(
        'table',
        { class: 'list' },
        h('caption', { class: 'sr-only' }, 'Instances'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            h('th', { scope: 'col' }, 'Name'),
            h('th', { scope: 'col' }, 'Channel'),
            h('th', { scope: 'col' }, 'Status'),
            h('th', { scope: 'col' }, 'Active'),
            h('th', { scope: 'col' }, 'Actions'),
          ),
        ),
        h(
          'tbody',
          {},
          items.map((i) => row(i, chans)),
        ),
      ),
    );
  const row = (i: InstanceView, chans: ChannelInfo[]) => {
    const toggle = h(
      'button',
      { type: 'button', 'aria-pressed': String(i.isActive) },
      i.isActive ? 'Deactivate' : 'Activate',
    );
    toggle.addEventListener('click', async () => {
      toggle.disabled = true;
      try {
        await api('PATCH', `/api/v2/instances/${encodeURIComponent(i.id)}`, { isActive: !i.isActive });
        replace(flash, h('div', { class: 'alert ok' }, `${i.name} ${i.isActive ? 'deactivated' : 'activated'}.`));
        await load();
      } catch (err) {
        replace(flash, errorBox(err));
        toggle.disabled = false;
      }
    });
    const del = h('button', { type: 'button', class: 'danger' }, 'Delete');
    del.addEventListener('click', async () => {
      if (!confirm(`Delete instance "${i.name}"? Its channel stops and this cannot be undone.`)) return;
      del.disabled = true;
      try {
        await api('DELETE', `/api/v2/instances/${encodeURIComponent(i.id)}`);
        replace(flash, h('div', { class: 'alert ok' }, `${i.name} deleted.`));
        await load();
      } catch (err) {
        replace(flash, errorBox(err));
        del.disabled = false;
      }
    });
    const pairable = pairsInConsole(chans.find((c) => c.id === i.channel));
    return h(
      'tr',
      { 'data-instance': i.name },
      h('th', { scope: 'row' }, h('a', { href: `#/instances/${encodeURIComponent(i.id)}/edit` }, i.name)),
      h('td', {}, i.channel),
      h('td', {}, statusBadge(i), i.statusReason ? h('div', { class: 'muted small' }, i.statusReason) : null),
      h('td', {}, i.isActive ? 'yes' : 'no'),
      h(
        'td',
        { class: 'actions' },
        h('a', { class: 'button', href: `#/instances/${encodeURIComponent(i.id)}/edit` }, 'Edit'),
        pairable ? h('a', { class: 'button', href: `#/instances/${encodeURIComponent(i.id)}/pair` }, 'Pair') : null,
        h('a', { class: 'button', href: `#/conversations?instanceId=${encodeURIComponent(i.id)}` }, 'Conversations'),
        toggle,
        del,
      ),
    );
  };
  ctx.live((f) => {
    if (f.channel === 'instances') applyStatusEvent(body, f.payload);
  });
  replace(
    ctx.main,
    h(
      'div',
      { class: 'page-head' },
      h('h1', {}, 'Instances'),
      h('a', { class: 'button primary', href: '#/instances/new' }, 'New instance'),
    ),
    flash,
    body,
  );
  await load();
}

/**
 * The empty list offers a working demo in one click: an instance of the channel that has an
 * embeddable chat, answered by the built-in echo agent (no outside service), opened on its page.
 */
function demoOffer(chans: ChannelInfo[], flash: HTMLElement): HTMLElement | null {
  const chat = chans.find((c) => c.widget);
  if (!chat) return null;
  const button = h('button', { type: 'button', class: 'primary' }, 'Create a demo (web chat + echo agent)');
  button.addEventListener('click', async () => {
    button.disabled = true;
    const welcome = chat.fields.find((f) => /welcome/i.test(f.name));
    const body = {
      channel: chat.id,
      agent: { type: 'echo' },
      channelConfig: welcome
        ? { [welcome.name]: 'Hi! I am the echo agent: I repeat what you write, word by word.' }
        : undefined,
    };
    // "demo", or "demo-2", "demo-3"… when the name is taken.
    for (let n = 1; n <= 20; n++) {
      try {
        const res = await api<{ data: InstanceView }>('POST', '/api/v2/instances', {
          ...body,
          name: n === 1 ? 'demo' : `demo-${n}`,
        });
        location.hash = `#/instances/${encodeURIComponent(res.data.id)}/edit`;
        return;
      } catch (err) {
        if (err instanceof ApiFailure && err.code === 'CONFLICT') continue;
        replace(flash, errorBox(err));
        button.disabled = false;
        return;
      }
    }
  });
  return h(
    'div',
    { class: 'card demo' },
    h('p', {}, 'Or see a message flow right now, with no outside account:'),
    button,
  );
}

interface FormField {
  input: HTMLInputElement | HTMLSelectElement;
  error: HTMLElement;
  /** Field names the API may use for this input in error details. */
  names: string[];
}

export async function instanceFormPage(ctx: PageContext): Promise<void> {
  const id = ctx.params[0];
  let existing: InstanceView | null = null;
  if (id) existing = (await api<{ data: InstanceView }>('GET', `/api/v2/instances/${encodeURIComponent(id)}`)).data;
  const chans = await channels();
  if (ctx.left) return;
  const channelInfo = (kind: string) => chans.find((c) => c.id === kind);

  const fields = new Map<string, FormField>();
  let fieldSeq = 0;
  const field = (
    key: string,
    label: string,
    input: HTMLInputElement | HTMLSelectElement,
    names: string[],
    hint?: string,
  ) => {
    const domId = `f-${++fieldSeq}`;
    input.id = domId;
    input.name = key;
    const error = h('p', { class: 'field-error', id: `${domId}-err`, 'aria-live': 'polite' });
    const hintEl = hint ? h('p', { class: 'hint', id: `${domId}-hint` }, hint) : null;
    input.setAttribute('aria-describedby', [hintEl ? `${domId}-hint` : '', `${domId}-err`].filter(Boolean).join(' '));
    fields.set(key, { input, error, names });
    const isCheck = input instanceof HTMLInputElement && input.type === 'checkbox';
    return h(
      'div',
      { class: isCheck ? 'field check' : 'field' },
      isCheck ? [input, h('label', { for: domId }, label)] : [h('label', { for: domId }, label), input],
      hintEl,
      error,
    );
  };
  const select = (options: string[], value: string) => {
    const s = h(
      'select',
      {},
      options.map((o) => h('option', { value: o }, o)),
    );
    s.value = value;
    return s;
  };
  const text = (value: string | null | undefined, type = 'text', extra: Record<string, string> = {}) =>
    h('input', { type, value: value ?? '', autocomplete: 'off', ...extra });
  const checkbox = (checked: boolean) => {
    const c = h('input', { type: 'checkbox' });
    c.checked = checked;
    return c;
  };

  // New instances start on a channel the console can pair by itself.
  const channel = select(
    chans.map((c) => c.id),
    existing?.channel ?? chans.find(pairsInConsole)?.id ?? chans[0]?.id ?? '',
  );
  if (existing) channel.disabled = true;
  const channelBox = h('fieldset', { class: 'channel-fields' });
  const renderChannelFields = () => {
    for (const k of [...fields.keys()]) if (k.startsWith('cc.')) fields.delete(k);
    const defs = formFields(channelInfo(channel.value));
    const cc = existing?.channelConfig ?? {};
    replace(
      channelBox,
      h('legend', {}, `${channel.value} settings`),
      defs.length ? null : h('p', { class: 'muted' }, 'No channel settings needed.'),
      defs.map((d) => {
        const names = [`channelConfig.${d.key}`, d.v1Name];
        if (d.kind === 'bool') return field(`cc.${d.key}`, d.label, checkbox(cc[d.key] === true), names, d.hint);
        if (d.secret) {
          const hint = existing && cc[d.key] ? `Stored (${String(cc[d.key])}); leave empty to keep it.` : d.hint;
          return field(`cc.${d.key}`, d.label, text('', 'password'), names, hint);
        }
        return field(
          `cc.${d.key}`,
          d.label,
          text(
            cc[d.key] === undefined ? '' : String(cc[d.key]),
            d.kind === 'url' ? 'url' : d.kind === 'int' ? 'number' : 'text',
          ),
          names,
          d.hint,
        );
      }),
    );
  };
  channel.addEventListener('change', renderChannelFields);

  const nameInput = text(existing?.name, 'text', { required: '', spellcheck: 'false' });
  const agentUrl = text(existing?.agent.url, 'url');
  const agentKey = text('', 'password');
  const agentType = select(AGENT_TYPES, existing?.agent.type ?? 'auto');
  const replyMode = select(REPLY_MODES, existing?.settings.replyMode ?? 'final');
  const shownMode = existing?.messaging?.mode ?? 'sequential';
  const conversationMode = select(CONVERSATION_MODES, shownMode);
  const debounce = text(String(existing?.messaging?.debounceMs ?? 0), 'number', { min: '0', max: '30000' });
  const active = checkbox(existing?.isActive ?? true);
  const formError = h('div', { 'aria-live': 'assertive', tabindex: '-1' });
  const submit = h('button', { type: 'submit', class: 'primary' }, existing ? 'Save changes' : 'Create instance');

  const form = h(
    'form',
    { class: 'card form', novalidate: true },
    formError,
    field('name', 'Name', nameInput, ['name'], 'Lowercase letters, digits and dashes, e.g. support-bot'),
    field('channel', 'Channel', channel, ['channel'], existing ? 'The channel cannot be changed.' : undefined),
    channelBox,
    h(
      'fieldset',
      {},
      h('legend', {}, 'Agent'),
      field('agent.url', 'Agent URL', agentUrl, ['agent.url', 'agent_api_url']),
      field(
        'agent.apiKey',
        'Agent API key',
        agentKey,
        ['agent.apiKey', 'agent_api_key'],
        existing?.agent.apiKey ? `Stored (${existing.agent.apiKey}); leave empty to keep it.` : undefined,
      ),
      field('agent.type', 'Agent protocol', agentType, ['agent.type']),
      field('settings.replyMode', 'Reply mode', replyMode, ['settings.replyMode']),
      field(
        'messaging.mode',
        'Conversation mode',
        conversationMode,
        ['messaging.mode', 'messaging'],
        'sequential: one turn per message; collect: a burst is answered once; interrupt: a new message cancels the unfinished answer',
      ),
      field(
        'messaging.debounceMs',
        'Wait for quiet (ms)',
        debounce,
        ['messaging.debounceMs', 'messaging.maxWaitMs'],
        'collect/interrupt: how long the conversation must be quiet before the agent is asked',
      ),
    ),
    field('isActive', 'Active (start it now)', active, ['isActive']),
    h('div', { class: 'actions' }, submit, h('a', { class: 'button', href: '#/instances' }, 'Cancel')),
  );
  renderChannelFields();

  const showProblems = (err: unknown) => {
    replace(formError, errorBox(err));
    const problems: FieldProblem[] = err instanceof ApiFailure ? err.fieldProblems() : [];
    // A CONFLICT on the name carries {field:'name'} rather than a list.
    if (err instanceof ApiFailure && !problems.length && (err.details as { field?: string } | null)?.field) {
      problems.push({ field: String((err.details as { field: string }).field), problem: err.message });
    }
    let first: HTMLElement | null = null;
    for (const p of problems) {
      const f = [...fields.values()].find((x) => x.names.includes(p.field));
      if (!f) continue;
      f.error.textContent = f.error.textContent ? `${f.error.textContent}; ${p.problem}` : p.problem;
      f.input.setAttribute('aria-invalid', 'true');
      first ??= f.input;
    }
    (first ?? formError).focus?.();
  };

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    for (const f of fields.values()) {
      f.error.textContent = '';
      f.input.removeAttribute('aria-invalid');
    }
    replace(formError);
    const channelConfig: Record<string, unknown> = {};
    for (const d of formFields(channelInfo(channel.value))) {
      const input = fields.get(`cc.${d.key}`)?.input as HTMLInputElement | undefined;
      if (!input) continue;
      if (d.kind === 'bool') channelConfig[d.key] = input.checked;
      else if (input.value.trim() !== '')
        channelConfig[d.key] = d.kind === 'int' ? Number(input.value.trim()) : input.value.trim();
      else if (existing && !d.secret && existing.channelConfig[d.key] !== undefined) channelConfig[d.key] = null;
    }
    const agent: Record<string, unknown> = { type: agentType.value };
    if (agentUrl.value.trim()) agent.url = agentUrl.value.trim();
    else if (existing?.agent.url) agent.url = null;
    if (agentKey.value) agent.apiKey = agentKey.value;
    const body: Record<string, unknown> = {
      name: nameInput.value.trim(),
      agent,
      settings: { replyMode: replyMode.value },
      isActive: active.checked,
    };
    if (Object.keys(channelConfig).length) body.channelConfig = channelConfig;
    // Sent only when changed: an instance without its own messaging keeps following the settings' default.
    const debounceMs = Number(debounce.value);
    if (conversationMode.value !== shownMode || debounceMs !== (existing?.messaging?.debounceMs ?? 0))
      body.messaging = { mode: conversationMode.value, debounceMs };
    if (!existing) body.channel = channel.value;
    submit.disabled = true;
    try {
      const res = existing
        ? await api<{ data: InstanceView }>('PATCH', `/api/v2/instances/${encodeURIComponent(existing.id)}`, body)
        : await api<{ data: InstanceView }>('POST', '/api/v2/instances', body);
      const inst = res.data;
      location.hash =
        !existing && pairsInConsole(channelInfo(inst.channel)) && inst.isActive
          ? `#/instances/${encodeURIComponent(inst.id)}/pair`
          : '#/instances';
    } catch (err) {
      showProblems(err);
      submit.disabled = false;
    }
  });

  replace(
    ctx.main,
    h(
      'div',
      { class: 'page-head' },
      h('h1', {}, existing ? `Edit ${existing.name}` : 'New instance'),
      existing ? statusBadge(existing) : null,
    ),
    existing?.webhookUrl
      ? h('p', { class: 'muted small' }, 'Webhook URL: ', h('code', { class: 'wrap' }, existing.webhookUrl))
      : null,
    existing ? tryItPanel(ctx, existing, channelInfo(existing.channel)?.widget) : null,
    form,
  );
  ctx.live((f) => {
    if (f.channel === 'instances') applyStatusEvent(ctx.main, f.payload);
  });
  nameInput.focus();
}
