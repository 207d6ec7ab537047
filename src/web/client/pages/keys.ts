// API keys: list, create (the new key is shown once, here, and never again), revoke.
import { api, errorBox } from '../api.ts';
import { h, replace, tableWrap, when } from '../dom.ts';
import type { PageContext } from '../page.ts';

interface KeyView {
  id: string;
  name: string;
  keyPrefix?: string;
  keySuffix?: string;
  scopes: string[];
  instanceIds: string[] | null;
  expiresAt: string | null;
  revokedAt: string | null;
  createdAt: string;
  lastUsedAt: string | null;
}

const SCOPES = [
  '*',
  'instances:*',
  'instances:read',
  'instances:write',
  'instances:delete',
  'messages:*',
  'messages:send',
  'messages:read',
  'events:read',
  'persons:*',
  'access:*',
  'settings:*',
  'webhooks:*',
  'webhooks:read',
  'webhooks:write',
  'admin:*',
];

/** The plaintext key in a create response, wherever the route puts it. */
function plaintextKey(res: any): string | null {
  for (const v of [res?.data?.key, res?.data?.apiKey, res?.data?.token, res?.key, res?.apiKey])
    if (typeof v === 'string' && v) return v;
  return null;
}

export async function keysPage(ctx: PageContext): Promise<void> {
  const flash = h('div', { 'aria-live': 'polite', tabindex: '-1' });
  const list = h('div');
  const load = async () => {
    try {
      const res = await api<{ items: KeyView[] }>('GET', '/api/v2/keys?limit=100');
      if (ctx.left) return;
      replace(list, res.items.length ? table(res.items) : h('p', { class: 'empty' }, 'No keys.'));
    } catch (err) {
      replace(list, errorBox(err));
    }
  };
  const table = (items: KeyView[]) =>
    tableWrap(
      h(
        'table',
        { class: 'list' },
        h('caption', { class: 'sr-only' }, 'API keys'),
        h(
          'thead',
          {},
          h(
            'tr',
            {},
            ['Name', 'Key', 'Scopes', 'Instances', 'Last used', 'Actions'].map((c) => h('th', { scope: 'col' }, c)),
          ),
        ),
        h(
          'tbody',
          {},
          items.map((k) => {
            const revoke = h('button', { type: 'button', class: 'danger' }, 'Revoke');
            revoke.disabled = Boolean(k.revokedAt);
            revoke.addEventListener('click', async () => {
              if (!confirm(`Revoke key "${k.name}"? Clients using it stop working at once.`)) return;
              try {
                await api('DELETE', `/api/v2/keys/${encodeURIComponent(k.id)}`);
                replace(flash, h('div', { class: 'alert ok' }, `Key "${k.name}" revoked.`));
                await load();
              } catch (err) {
                replace(flash, errorBox(err));
              }
            });
            return h(
              'tr',
              {},
              h(
                'th',
                { scope: 'row' },
                k.name,
                k.revokedAt ? h('span', { class: 'badge badge-error' }, 'revoked') : null,
              ),
              h('td', {}, h('code', {}, `${k.keyPrefix ?? ''}…${k.keySuffix ?? ''}`)),
              h('td', {}, k.scopes.join(', ')),
              h('td', {}, k.instanceIds ? k.instanceIds.join(', ') : 'all'),
              h('td', {}, when(k.lastUsedAt)),
              h('td', { class: 'actions' }, revoke),
            );
          }),
        ),
      ),
    );

  const name = h('input', { id: 'key-name', type: 'text', required: true, autocomplete: 'off' });
  const scopeBoxes = SCOPES.map((s, i) => {
    const c = h('input', { type: 'checkbox', id: `key-scope-${i}`, value: s });
    return {
      c,
      el: h(
        'div',
        { class: 'field check' },
        c,
        h('label', { for: `key-scope-${i}` }, s === '*' ? '* (everything)' : s),
      ),
    };
  });
  const instances = h('input', {
    id: 'key-instances',
    type: 'text',
    autocomplete: 'off',
    placeholder: 'Leave empty for all instances',
  });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create key');
  const form = h(
    'form',
    { class: 'card form', 'aria-labelledby': 'new-key' },
    h('h2', { id: 'new-key' }, 'New key'),
    h('div', { class: 'field' }, h('label', { for: 'key-name' }, 'Name'), name),
    h(
      'fieldset',
      {},
      h('legend', {}, 'Scopes'),
      h(
        'div',
        { class: 'scope-grid' },
        scopeBoxes.map((s) => s.el),
      ),
    ),
    h(
      'div',
      { class: 'field' },
      h('label', { for: 'key-instances' }, 'Restrict to instance ids (comma separated)'),
      instances,
    ),
    h('div', { class: 'actions' }, submit),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    const ids = instances.value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const body: Record<string, unknown> = {
      name: name.value.trim(),
      scopes: scopeBoxes.filter((s) => s.c.checked).map((s) => s.c.value),
    };
    if (ids.length) body.instanceIds = ids;
    try {
      const res = await api('POST', '/api/v2/keys', body);
      const key = plaintextKey(res);
      const keyEl = h('code', { class: 'new-key wrap' }, key ?? '(the response did not include the key)');
      const copy = h('button', { type: 'button' }, 'Copy');
      copy.addEventListener('click', () => {
        if (key)
          void navigator.clipboard?.writeText(key).then(
            () => (copy.textContent = 'Copied'),
            () => (copy.textContent = 'Select and copy it'),
          );
      });
      replace(
        flash,
        h(
          'div',
          { class: 'alert ok', role: 'status' },
          h('strong', {}, 'Key created. Copy it now — it will not be shown again.'),
          h('div', { class: 'key-row' }, keyEl, copy),
        ),
      );
      flash.focus();
      form.reset();
      await load();
    } catch (err) {
      replace(flash, errorBox(err));
      flash.focus();
    } finally {
      submit.disabled = false;
    }
  });
  replace(
    ctx.main,
    h('div', { class: 'page-head' }, h('h1', {}, 'API keys')),
    flash,
    form,
    h('h2', {}, 'Existing keys'),
    list,
  );
  await load();
}
