// A small typed client for an Evolution API server (v2 routes). Every call has a timeout and an
// optional AbortSignal; failures become ChannelError with a reason a person can act on. The apikey
// goes only into the `apikey` header: it never appears in an error message or a log line.

import { type Clock, realClock } from '../../../actors/runtime/clock.ts';
import { ChannelError } from '../../core/errors.ts';
import type { Instance } from '../../core/instance.ts';
import { OutboundRefused } from '../../net/outbound.ts';

export interface EvolutionInstanceConfig {
  /** Base URL of the Evolution server, e.g. https://evolution.example.com */
  url: string;
  apiKey: string;
  /** The instance name inside Evolution (`whatsapp_instance`). */
  instanceName: string;
}

export interface EvolutionCallOptions {
  /** Default 15 000 ms. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Drives the timeout (tests pass a virtual clock). */
  clock?: Clock;
  fetch?: typeof fetch;
}

export const DEFAULT_EVOLUTION_TIMEOUT_MS = 15_000;

export type EvolutionConnectionState = 'open' | 'close' | 'connecting';

export interface EvolutionQuoted {
  key: { id: string; remoteJid?: string; fromMe?: boolean; participant?: string };
  message: { conversation: string };
}

export interface EvolutionQr {
  /** `data:image/png;base64,...`, or null when Evolution gave no QR (e.g. already connected). */
  qr: string | null;
  /** The raw QR payload string. */
  code: string | null;
  pairingCode: string | null;
  /** Present when Evolution answered with the instance state instead of a QR. */
  state?: string;
}

const truthy = (v: unknown) => v === true || v === 'true' || v === 1 || v === '1';

/** Reads the Evolution settings from an instance record (snake_case v1 names). */
export function evolutionConfigOf(instance: Pick<Instance, 'name' | 'config'>): EvolutionInstanceConfig {
  const c = instance.config;
  // A fragment or query would swallow the path we append (`…#` lets the URL choose the whole path).
  const url =
    typeof c.evolution_url === 'string'
      ? c.evolution_url
          .trim()
          .replace(/[?#].*$/s, '')
          .replace(/\/+$/, '')
      : '';
  const apiKey = typeof c.evolution_key === 'string' ? c.evolution_key : '';
  const name = typeof c.whatsapp_instance === 'string' && c.whatsapp_instance ? c.whatsapp_instance : instance.name;
  if (!url) throw new ChannelError(`instance "${instance.name}" has no evolution_url`, false);
  if (!apiKey) throw new ChannelError(`instance "${instance.name}" has no evolution_key`, false);
  return { url, apiKey, instanceName: name };
}

export function evolutionFlag(instance: Pick<Instance, 'config'>, key: string): boolean {
  return truthy(instance.config[key]);
}

/** The server address without credentials or query, safe to show. */
function displayUrl(base: string): string {
  try {
    const u = new URL(base);
    return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
  } catch {
    return base;
  }
}

/** Retry-After as seconds or an HTTP date → ms. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isFinite(at) ? Math.max(0, at - now) : undefined;
}

/** Evolution errors look like `{status, error, response:{message: string | string[]}}`. */
function describeErrorBody(body: unknown, raw: string): string {
  if (body && typeof body === 'object') {
    const b = body as Record<string, unknown>;
    const resp = b.response as Record<string, unknown> | undefined;
    const msg = resp?.message ?? b.message ?? b.error;
    if (Array.isArray(msg)) return msg.map((m) => (typeof m === 'string' ? m : JSON.stringify(m))).join('; ');
    if (typeof msg === 'string') return msg;
  }
  return raw.slice(0, 200);
}

/** Our reason for a 4xx Evolution answer: a refusal we recognise, or a generic one. */
function knownRefusal(body: unknown): string {
  const resp = obj(obj(body).response).message;
  const items = Array.isArray(resp) ? resp : [];
  if (items.some((m) => obj(m).exists === false)) return 'the number is not on WhatsApp';
  return 'request refused';
}

interface RawResponse {
  status: number;
  body: unknown;
  text: string;
}

async function call(
  cfg: EvolutionInstanceConfig,
  method: 'GET' | 'POST' | 'DELETE' | 'PUT',
  path: string,
  body: unknown,
  op: string,
  opts: EvolutionCallOptions,
  acceptStatus: (status: number, body: unknown, text: string) => boolean = (s) => s >= 200 && s < 300,
): Promise<RawResponse> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_EVOLUTION_TIMEOUT_MS;
  const clock = opts.clock ?? realClock;
  const where = displayUrl(cfg.url);
  const controller = new AbortController();
  let timedOut = false;
  const timer = clock.setTimeout(() => {
    timedOut = true;
    controller.abort(new Error('timeout'));
  }, timeoutMs);
  const onCallerAbort = () => controller.abort(opts.signal!.reason);
  if (opts.signal?.aborted) onCallerAbort();
  else opts.signal?.addEventListener('abort', onCallerAbort, { once: true });

  try {
    let res: Response;
    try {
      res = await (opts.fetch ?? fetch)(cfg.url + path, {
        method,
        headers: { apikey: cfg.apiKey, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal: controller.signal,
      });
    } catch (err) {
      if (timedOut)
        throw new ChannelError(`Evolution API at ${where} did not answer ${op} within ${timeoutMs} ms`, true);
      if (opts.signal?.aborted) throw opts.signal.reason;
      if (err instanceof OutboundRefused) throw new ChannelError(`Evolution API at ${where}: ${err.message}`, false);
      const reason = err instanceof Error ? err.message : String(err);
      throw new ChannelError(`Evolution API unreachable at ${where}: ${reason}`, true);
    }
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      if (timedOut)
        throw new ChannelError(`Evolution API at ${where} did not finish ${op} within ${timeoutMs} ms`, true);
      if (opts.signal?.aborted) throw opts.signal.reason;
      throw new ChannelError(
        `Evolution API at ${where} broke off ${op}: ${err instanceof Error ? err.message : String(err)}`,
        true,
      );
    }
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // Non-JSON bodies (proxies' HTML error pages) are reported as text.
    }
    if (acceptStatus(res.status, parsed, text)) return { status: res.status, body: parsed, text };

    // The remote body is read to classify the failure, never quoted: these messages reach API
    // callers (status, qr, connect, traces), and evolution_url may point at a service whose
    // answers they must not read.
    const detail = describeErrorBody(parsed, text);
    const status = res.status;
    const prefix = `Evolution API ${op} failed at ${where} (HTTP ${status})`;
    if (status === 429) {
      throw new ChannelError(
        `${prefix}: rate limited`,
        true,
        parseRetryAfter(res.headers.get('retry-after'), clock.now()),
        status,
      );
    }
    if (status >= 500) {
      throw new ChannelError(
        `${prefix}: server error`,
        true,
        parseRetryAfter(res.headers.get('retry-after'), clock.now()),
        status,
      );
    }
    if (status === 401 || (status === 403 && /unauthori[sz]ed|api ?key/i.test(detail))) {
      throw new ChannelError(
        `${prefix}: the Evolution apikey was rejected (check evolution_key)`,
        false,
        undefined,
        status,
      );
    }
    if (status === 404) {
      throw new ChannelError(`${prefix}: Evolution instance "${cfg.instanceName}" not found`, false, undefined, status);
    }
    throw new ChannelError(`${prefix}: ${knownRefusal(parsed)}`, false, undefined, status);
  } finally {
    timer.cancel();
    opts.signal?.removeEventListener('abort', onCallerAbort);
  }
}

const seg = (s: string) => encodeURIComponent(s);
const obj = (v: unknown): Record<string, unknown> => (v && typeof v === 'object' ? (v as Record<string, unknown>) : {});

function messageIdOf(body: unknown): string | null {
  const id = obj(obj(body).key).id;
  return typeof id === 'string' && id ? id : null;
}

/** POST /message/sendText/{instance}. Returns the platform message id (`key.id`), null if Evolution gave none. */
export async function sendText(
  cfg: EvolutionInstanceConfig,
  number: string,
  text: string,
  extra: { quoted?: EvolutionQuoted; delay?: number } = {},
  opts: EvolutionCallOptions = {},
): Promise<string | null> {
  const body: Record<string, unknown> = { number, text };
  if (extra.delay !== undefined && extra.delay > 0) body.delay = extra.delay;
  if (extra.quoted) body.quoted = extra.quoted;
  const res = await call(cfg, 'POST', `/message/sendText/${seg(cfg.instanceName)}`, body, 'sendText', opts);
  return messageIdOf(res.body);
}

/** POST /message/sendMedia/{instance}; `media` is a URL or base64. */
export async function sendMedia(
  cfg: EvolutionInstanceConfig,
  number: string,
  media: {
    mediatype: 'image' | 'video' | 'audio' | 'document';
    media: string;
    caption?: string;
    fileName?: string;
    mimetype?: string;
  },
  extra: { quoted?: EvolutionQuoted; delay?: number } = {},
  opts: EvolutionCallOptions = {},
): Promise<string | null> {
  const body: Record<string, unknown> = { number, ...media };
  if (extra.delay !== undefined && extra.delay > 0) body.delay = extra.delay;
  if (extra.quoted) body.quoted = extra.quoted;
  const res = await call(cfg, 'POST', `/message/sendMedia/${seg(cfg.instanceName)}`, body, 'sendMedia', opts);
  return messageIdOf(res.body);
}

/**
 * POST /chat/getBase64FromMediaMessage/{instance}: the media of a received message as base64 (for
 * webhooks sent without `base64`). Evolution downloads and decrypts it from WhatsApp.
 */
export async function mediaBase64(
  cfg: EvolutionInstanceConfig,
  key: { id: string; remoteJid?: string; fromMe?: boolean },
  opts: EvolutionCallOptions = {},
): Promise<{ base64: string; mimeType?: string; filename?: string }> {
  const res = await call(
    cfg,
    'POST',
    `/chat/getBase64FromMediaMessage/${seg(cfg.instanceName)}`,
    { message: { key }, convertToMp4: false },
    'getBase64FromMediaMessage',
    opts,
  );
  const b = obj(res.body);
  if (typeof b.base64 !== 'string' || !b.base64)
    throw new ChannelError('Evolution API answered getBase64FromMediaMessage without base64', false);
  return {
    base64: b.base64,
    ...(typeof b.mimetype === 'string' ? { mimeType: b.mimetype } : {}),
    ...(typeof b.fileName === 'string' ? { filename: b.fileName } : {}),
  };
}

/** POST /message/sendReaction/{instance}; an empty emoji removes the reaction. */
export async function sendReaction(
  cfg: EvolutionInstanceConfig,
  key: { remoteJid: string; id: string; fromMe: boolean },
  reaction: string,
  opts: EvolutionCallOptions = {},
): Promise<string | null> {
  const res = await call(
    cfg,
    'POST',
    `/message/sendReaction/${seg(cfg.instanceName)}`,
    { key, reaction },
    'sendReaction',
    opts,
  );
  return messageIdOf(res.body);
}

/** POST /chat/sendPresence/{instance}. Evolution holds the request for `delay` ms. */
export async function sendPresence(
  cfg: EvolutionInstanceConfig,
  number: string,
  presence: 'composing' | 'paused' | 'recording' | 'available' | 'unavailable',
  delay: number,
  opts: EvolutionCallOptions = {},
): Promise<void> {
  await call(
    cfg,
    'POST',
    `/chat/sendPresence/${seg(cfg.instanceName)}`,
    { number, presence, delay },
    'sendPresence',
    opts,
  );
}

/**
 * POST /instance/create. An instance that already exists is fine (Evolution answers 403
 * "name already in use"; others 409) → `{created: false}`.
 */
export async function createInstance(
  cfg: EvolutionInstanceConfig,
  opts: EvolutionCallOptions = {},
): Promise<{ created: boolean; qr: EvolutionQr | null }> {
  const alreadyExists = (status: number, body: unknown, text: string) =>
    (status === 403 || status === 409 || status === 400) &&
    /already (in use|exists)|is in use/i.test(describeErrorBody(body, text));
  const res = await call(
    cfg,
    'POST',
    '/instance/create',
    { instanceName: cfg.instanceName, qrcode: true, integration: 'WHATSAPP-BAILEYS' },
    'createInstance',
    opts,
    (s, b, t) => (s >= 200 && s < 300) || s === 409 || alreadyExists(s, b, t),
  );
  if (res.status >= 300) return { created: false, qr: null };
  const qrcode = obj(res.body).qrcode;
  return { created: true, qr: qrcode ? qrOf(qrcode) : null };
}

/** POST /webhook/set/{instance}: deliver MESSAGES_UPSERT to our webhook URL. */
export async function setWebhook(
  cfg: EvolutionInstanceConfig,
  webhook: { url: string; base64: boolean; events?: string[] },
  opts: EvolutionCallOptions = {},
): Promise<void> {
  await call(
    cfg,
    'POST',
    `/webhook/set/${seg(cfg.instanceName)}`,
    {
      webhook: {
        enabled: true,
        url: webhook.url,
        byEvents: false,
        base64: webhook.base64,
        events: webhook.events ?? ['MESSAGES_UPSERT'],
      },
    },
    'setWebhook',
    opts,
  );
}

/** A remote string passed on only when it has the expected form (the API shows it to callers). */
function shaped(v: unknown, form: RegExp): string | null {
  return typeof v === 'string' && form.test(v) ? v : null;
}
const STATE_FORM = /^[A-Za-z_]{1,32}$/;

function qrOf(body: unknown): EvolutionQr {
  const b = obj(body);
  const base64 = shaped(b.base64, /^(data:image\/png;base64,)?[A-Za-z0-9+/=\s]+$/);
  const state = shaped(obj(b.instance).state, STATE_FORM);
  return {
    qr: base64 === null ? null : base64.startsWith('data:') ? base64 : `data:image/png;base64,${base64}`,
    code: shaped(b.code, /^[A-Za-z0-9+/=,@.:_-]{1,2048}$/),
    pairingCode: shaped(b.pairingCode, /^[A-Za-z0-9-]{1,16}$/),
    ...(state !== null ? { state } : {}),
  };
}

/** GET /instance/connect/{instance}: a fresh QR (valid for about a minute), or the state when connected. */
export async function connect(cfg: EvolutionInstanceConfig, opts: EvolutionCallOptions = {}): Promise<EvolutionQr> {
  const res = await call(cfg, 'GET', `/instance/connect/${seg(cfg.instanceName)}`, undefined, 'connect', opts);
  return qrOf(res.body);
}

/** GET /instance/connectionState/{instance}. */
export async function connectionState(
  cfg: EvolutionInstanceConfig,
  opts: EvolutionCallOptions = {},
): Promise<EvolutionConnectionState | string> {
  const res = await call(
    cfg,
    'GET',
    `/instance/connectionState/${seg(cfg.instanceName)}`,
    undefined,
    'connectionState',
    opts,
  );
  const b = obj(res.body);
  const state = obj(b.instance).state ?? b.state;
  if (typeof state !== 'string' || !STATE_FORM.test(state)) {
    throw new ChannelError(`Evolution API connectionState at ${displayUrl(cfg.url)} answered without a state`, true);
  }
  return state;
}

/** DELETE /instance/logout/{instance}. */
export async function logout(cfg: EvolutionInstanceConfig, opts: EvolutionCallOptions = {}): Promise<void> {
  await call(cfg, 'DELETE', `/instance/logout/${seg(cfg.instanceName)}`, undefined, 'logout', opts);
}

/** POST /instance/restart/{instance}. */
export async function restart(cfg: EvolutionInstanceConfig, opts: EvolutionCallOptions = {}): Promise<void> {
  await call(cfg, 'POST', `/instance/restart/${seg(cfg.instanceName)}`, undefined, 'restart', opts);
}

/**
 * The guide's steps 1–2 in one call: create the Evolution instance if missing, then point its
 * webhook at us. Returns the QR Evolution handed out on creation, if any.
 */
export async function provisionInstance(
  cfg: EvolutionInstanceConfig,
  webhook: { url: string; base64: boolean },
  opts: EvolutionCallOptions = {},
): Promise<{ created: boolean; qr: EvolutionQr | null }> {
  const created = await createInstance(cfg, opts);
  await setWebhook(cfg, webhook, opts);
  return created;
}

/** The `number` Evolution expects for a chat: digits for a phone JID, the JID itself for groups and LIDs. */
export function evolutionNumberFor(chatId: string): string {
  if (/^\+?\d+$/.test(chatId)) return chatId.replace(/^\+/, '');
  const m = /^(\d+)(?::\d+)?@(s\.whatsapp\.net|c\.us)$/.exec(chatId);
  if (m) return m[1];
  return chatId;
}
