// Pairing a WhatsApp (Baileys) instance: the QR as an image, refreshed while pairing is pending,
// switching to "connected" by itself when the instance's status event arrives; or a pairing code
// for a phone number.
import { ApiFailure, api, errorBox } from '../api.ts';
import { h, replace, when } from '../dom.ts';
import type { PageContext } from '../page.ts';
import { applyStatusEvent, type InstanceView, statusBadge } from './instances.ts';

const QR_POLL_MS = 3000;

export async function pairingPage(ctx: PageContext): Promise<void> {
  const id = ctx.params[0]!;
  const path = `/api/v2/instances/${encodeURIComponent(id)}`;
  const inst = (await api<{ data: InstanceView }>('GET', path)).data;
  if (ctx.left) return;

  let status = inst.status;
  const statusLine = h('p', { class: 'status-line' }, 'Status: ', statusBadge(inst));
  const qrBox = h('div', { class: 'qr-box', 'aria-live': 'polite' });
  const codeResult = h('div', { 'aria-live': 'polite' });
  const actionsMsg = h('div', { 'aria-live': 'polite' });
  let lastQr = '';

  const showConnected = () => {
    replace(
      qrBox,
      h(
        'div',
        { class: 'connected', role: 'status' },
        h('strong', {}, 'Connected'),
        h('p', {}, `${inst.name} is linked to WhatsApp. Messages now reach your agent.`),
      ),
    );
  };

  const refreshQr = async () => {
    if (status === 'connected') return showConnected();
    try {
      const res = await api<{ data: { qr: string; expiresAt?: string } }>('GET', `${path}/qr`);
      if (ctx.left || status === 'connected') return;
      if (res.data.qr === lastQr) return;
      lastQr = res.data.qr;
      replace(
        qrBox,
        h('img', {
          class: 'qr',
          src: res.data.qr,
          alt: `QR code to link ${inst.name}: in WhatsApp open Settings → Linked devices → Link a device and scan it`,
          width: 264,
          height: 264,
        }),
        h(
          'p',
          { class: 'muted small' },
          'Scan with WhatsApp → Settings → Linked devices → Link a device.',
          res.data.expiresAt ? ` Refreshes by itself; this one expires ${when(res.data.expiresAt)}.` : '',
        ),
      );
    } catch (err) {
      if (ctx.left || status === 'connected') return;
      lastQr = '';
      // Before the socket produced its first QR the API says so; keep polling.
      replace(
        qrBox,
        h('p', { class: 'muted' }, 'Waiting for a QR code…'),
        err instanceof ApiFailure && err.status === 404 && /route/i.test(err.message)
          ? errorBox(err)
          : h('p', { class: 'muted small' }, (err as Error).message),
      );
    }
  };

  const codeInput = h('input', {
    id: 'pair-phone',
    type: 'tel',
    inputmode: 'tel',
    autocomplete: 'off',
    placeholder: '+15551234567',
    required: true,
  });
  const codeButton = h('button', { type: 'submit' }, 'Get pairing code');
  const codeForm = h(
    'form',
    { class: 'card form' },
    h('h2', {}, 'Or link with a code'),
    h('div', { class: 'field' }, h('label', { for: 'pair-phone' }, 'Phone number (international format)'), codeInput),
    h('div', { class: 'actions' }, codeButton),
    codeResult,
  );
  codeForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    codeButton.disabled = true;
    try {
      const res = await api<{ data: { code: string } }>('POST', `${path}/pair`, {
        phoneNumber: codeInput.value.trim(),
      });
      replace(
        codeResult,
        h('p', {}, 'Enter this code in WhatsApp → Linked devices → Link with phone number: '),
        h('p', { class: 'pair-code' }, res.data.code),
      );
    } catch (err) {
      replace(codeResult, errorBox(err));
    } finally {
      codeButton.disabled = false;
    }
  });

  const action = (label: string, verb: string, confirmText?: string) => {
    const b = h('button', { type: 'button' }, label);
    b.addEventListener('click', async () => {
      if (confirmText && !confirm(confirmText)) return;
      b.disabled = true;
      try {
        await api('POST', `${path}/${verb}`);
        replace(actionsMsg, h('div', { class: 'alert ok' }, `${label}: requested.`));
        lastQr = '';
        void refreshQr();
      } catch (err) {
        replace(actionsMsg, errorBox(err));
      } finally {
        b.disabled = false;
      }
    });
    return b;
  };

  ctx.live((f) => {
    if (f.channel !== 'instances' || f.payload?.instanceId !== inst.id || f.payload?.type !== 'instance.status') return;
    status = f.payload.status;
    applyStatusEvent(ctx.main, f.payload);
    if (status === 'connected') showConnected();
    else if (f.payload.hasQr) {
      lastQr = '';
      void refreshQr();
    }
  });
  ctx.every(QR_POLL_MS, () => void refreshQr());

  replace(
    ctx.main,
    h(
      'div',
      { class: 'page-head' },
      h('h1', {}, `Pair ${inst.name}`),
      h('a', { class: 'button', href: '#/instances' }, 'Back to instances'),
    ),
    statusLine,
    inst.isActive ? null : h('div', { class: 'alert' }, 'This instance is inactive; activate it to pair.'),
    h(
      'div',
      { class: 'pair-grid' },
      h('section', { class: 'card', 'aria-label': 'QR code' }, h('h2', {}, 'Scan the QR code'), qrBox),
      codeForm,
    ),
    h(
      'div',
      { class: 'actions' },
      action('Connect', 'connect'),
      action('Restart', 'restart'),
      action('Log out', 'logout', `Log ${inst.name} out of WhatsApp? You will need to pair again.`),
    ),
    actionsMsg,
  );
  if (status === 'connected') showConnected();
  else {
    replace(qrBox, h('p', { class: 'muted' }, 'Waiting for a QR code…'));
    await refreshQr();
  }
}
