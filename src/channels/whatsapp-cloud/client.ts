// A small client for the WhatsApp Cloud API (Meta's Graph API): send a message, mark one as read
// (with the typing indicator), upload and download media, read the phone number. Every call goes
// through the fetch it is given (the gateway's outbound policy), has a timeout, and turns Graph
// errors into a ChannelError whose retryability follows Meta's error code. The access token goes
// only into the Authorization header; remote error text is never quoted (the endpoint is
// user-settable), only Meta's numeric code and our own description of it.
import { type Clock, realClock } from '../../../actors/runtime/clock.ts';
import { ChannelError } from '../../core/errors.ts';
import type { Instance } from '../../core/instance.ts';
import { readBounded } from '../../net/bounded-read.ts';
import { OutboundRefused } from '../../net/outbound.ts';

export const GRAPH_API_URL = 'https://graph.facebook.com';
export const DEFAULT_GRAPH_API_VERSION = 'v23.0';
export const DEFAULT_CLOUD_TIMEOUT_MS = 15_000;

export interface CloudConfig {
  /** Graph API base URL without the version, e.g. https://graph.facebook.com */
  baseUrl: string;
  version: string;
  phoneNumberId: string;
  accessToken: string;
}

export interface CloudCallOptions {
  fetch: typeof fetch;
  clock?: Clock;
  timeoutMs?: number;
}

/** Meta's error codes this channel acts on. */
export const META_ERRORS = {
  /** More than 24 hours since the user last wrote: only templates may be sent. */
  outsideWindow: 131047,
  /** Access token expired or invalid. */
  token: 190,
  /** Throughput, pair (same recipient) and account rate limits; the app's call limit. */
  rateLimits: [130429, 131056, 80007, 4, 613] as readonly number[],
  /** Meta's own transient failures. */
  transient: [1, 2, 131000, 131016] as readonly number[],
};

/** A failed Graph call: a ChannelError that also carries Meta's error code. */
export class GraphError extends ChannelError {
  constructor(
    message: string,
    retryable: boolean,
    readonly code: number | null,
    retryAfterMs?: number,
    status?: number,
  ) {
    super(message, retryable, retryAfterMs, status);
    this.name = 'GraphError';
  }
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v.trim() ? v.trim() : undefined);

/** The Cloud API settings of an instance; `defaultUrl` is WHATSAPP_CLOUD_API_URL. */
export function cloudConfigOf(inst: Pick<Instance, 'name' | 'config'>, defaultUrl?: string | null): CloudConfig {
  const c = inst.config;
  const phoneNumberId = str(c.phone_number_id);
  const accessToken = str(c.access_token);
  if (!phoneNumberId) throw new ChannelError(`instance "${inst.name}" has no phone_number_id`, false);
  if (!accessToken) throw new ChannelError(`instance "${inst.name}" has no access_token`, false);
  const base = (str(c.whatsapp_cloud_api_url) ?? defaultUrl ?? GRAPH_API_URL)
    .replace(/[?#].*$/s, '')
    .replace(/\/+$/, '');
  const version = str(c.graph_api_version) ?? DEFAULT_GRAPH_API_VERSION;
  return { baseUrl: base, version: version.replace(/^\/+|\/+$/g, ''), phoneNumberId, accessToken };
}

/** The endpoint as messages may show it: no credentials, query or path. */
function where(cfg: CloudConfig): string {
  try {
    const u = new URL(cfg.baseUrl);
    return `${u.protocol}//${u.host}`;
  } catch {
    return 'the Graph API';
  }
}

/** Retry-After seconds → ms. */
function retryAfterMs(res: Response): number | undefined {
  const v = res.headers.get('retry-after')?.trim();
  return v && /^\d+(\.\d+)?$/.test(v) ? Math.round(Number(v) * 1000) : undefined;
}

/** What a Graph error means for us: the reason (ours, not Meta's text) and whether to retry. */
export function classifyGraphError(status: number, body: unknown, retryAfter?: number): GraphError {
  const err = (body as { error?: { code?: unknown } } | null)?.error;
  const code = typeof err?.code === 'number' ? err.code : null;
  const tag = code === null ? `HTTP ${status}` : `HTTP ${status}, Meta error ${code}`;
  if (code === META_ERRORS.outsideWindow)
    return new GraphError(
      `outside the 24-hour customer service window (Meta error ${code}): WhatsApp accepts only a template ` +
        'until the user writes again; send a template (POST /api/v2/messages/template)',
      false,
      code,
      undefined,
      status,
    );
  if (code === META_ERRORS.token)
    return new GraphError(
      `access token expired or invalid (Meta error ${code}): set a new access_token on the instance`,
      false,
      code,
      undefined,
      status,
    );
  if ((code !== null && META_ERRORS.rateLimits.includes(code)) || status === 429)
    return new GraphError(`rate limited by the Cloud API (${tag})`, true, code, retryAfter, status);
  if ((code !== null && META_ERRORS.transient.includes(code)) || status >= 500)
    return new GraphError(`Cloud API temporarily failing (${tag})`, true, code, retryAfter, status);
  return new GraphError(`Cloud API refused the request (${tag})`, false, code, undefined, status);
}

type Body = { json: unknown } | { form: FormData } | null;

/** One Graph API call; resolves to the parsed JSON answer of a 2xx, or throws a GraphError/ChannelError. */
async function call(
  cfg: CloudConfig,
  method: 'GET' | 'POST',
  path: string,
  body: Body,
  op: string,
  opts: CloudCallOptions,
): Promise<Record<string, unknown>> {
  const clock = opts.clock ?? realClock;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CLOUD_TIMEOUT_MS;
  const controller = new AbortController();
  let timedOut = false;
  const timer = clock.setTimeout(() => {
    timedOut = true;
    controller.abort(new Error('timeout'));
  }, timeoutMs);
  const headers: Record<string, string> = { authorization: `Bearer ${cfg.accessToken}` };
  if (body && 'json' in body) headers['content-type'] = 'application/json';
  try {
    let res: Response;
    let text: string;
    try {
      res = await opts.fetch(`${cfg.baseUrl}/${cfg.version}/${path}`, {
        method,
        headers,
        body: body ? ('json' in body ? JSON.stringify(body.json) : body.form) : undefined,
        signal: controller.signal,
      });
      text = await res.text();
    } catch (err) {
      if (timedOut)
        throw new ChannelError(`Cloud API at ${where(cfg)} did not answer ${op} within ${timeoutMs} ms`, true);
      if (err instanceof OutboundRefused) throw new ChannelError(`Cloud API at ${where(cfg)}: ${err.message}`, false);
      throw new ChannelError(
        `Cloud API unreachable at ${where(cfg)} (${op}): ${err instanceof Error ? err.message : String(err)}`,
        true,
      );
    }
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      parsed = null;
    }
    if (res.status >= 200 && res.status < 300) {
      if (!parsed || typeof parsed !== 'object')
        throw new ChannelError(`Cloud API ${op} answered something other than JSON`, false);
      return parsed as Record<string, unknown>;
    }
    const e = classifyGraphError(res.status, parsed, retryAfterMs(res));
    throw new GraphError(`Cloud API ${op} failed: ${e.message}`, e.retryable, e.code, e.retryAfterMs, e.status);
  } finally {
    timer.cancel();
  }
}

/** POST /{version}/{phone_number_id}/messages; returns the new message's wamid. */
export async function sendMessage(
  cfg: CloudConfig,
  message: Record<string, unknown>,
  opts: CloudCallOptions,
): Promise<string> {
  const res = await call(
    cfg,
    'POST',
    `${cfg.phoneNumberId}/messages`,
    { json: { messaging_product: 'whatsapp', recipient_type: 'individual', ...message } },
    'send',
    opts,
  );
  const first = Array.isArray(res.messages) ? (res.messages[0] as { id?: unknown } | undefined) : undefined;
  if (typeof first?.id !== 'string') throw new ChannelError('Cloud API send answered without a message id', false);
  return first.id;
}

/** Marks an inbound message read (blue ticks); with `typing`, shows "typing…" until we answer (≤ 25 s). */
export async function markRead(
  cfg: CloudConfig,
  messageId: string,
  typing: boolean,
  opts: CloudCallOptions,
): Promise<void> {
  await call(
    cfg,
    'POST',
    `${cfg.phoneNumberId}/messages`,
    {
      json: {
        messaging_product: 'whatsapp',
        status: 'read',
        message_id: messageId,
        ...(typing ? { typing_indicator: { type: 'text' } } : {}),
      },
    },
    'mark as read',
    opts,
  );
}

/** POST /{version}/{phone_number_id}/media (multipart); returns the media id to send by. */
export async function uploadMedia(
  cfg: CloudConfig,
  file: { bytes: Uint8Array<ArrayBuffer>; mimeType: string; filename: string },
  opts: CloudCallOptions,
): Promise<string> {
  const form = new FormData();
  form.append('messaging_product', 'whatsapp');
  form.append('type', file.mimeType);
  form.append('file', new Blob([file.bytes], { type: file.mimeType }), file.filename);
  const res = await call(cfg, 'POST', `${cfg.phoneNumberId}/media`, { form }, 'media upload', opts);
  if (typeof res.id !== 'string') throw new ChannelError('Cloud API media upload answered without an id', false);
  return res.id;
}

/** GET /{version}/{phone_number_id}: checks the token and number (display number, verified name). */
export async function phoneNumberInfo(
  cfg: CloudConfig,
  opts: CloudCallOptions,
): Promise<{ displayPhoneNumber: string | null; verifiedName: string | null }> {
  const res = await call(
    cfg,
    'GET',
    `${cfg.phoneNumberId}?fields=display_phone_number,verified_name`,
    null,
    'phone number check',
    opts,
  );
  return { displayPhoneNumber: str(res.display_phone_number) ?? null, verifiedName: str(res.verified_name) ?? null };
}

/**
 * Inbound media: GET /{version}/{media_id} gives a short-lived URL, fetched with the same bearer
 * token, never more than `maxBytes` (the media store's fetch, src/media, through the adapter).
 */
export async function downloadMedia(
  cfg: CloudConfig,
  mediaId: string,
  opts: CloudCallOptions & { maxBytes?: number; signal?: AbortSignal },
): Promise<{ bytes: Uint8Array; mimeType: string }> {
  const info = await call(cfg, 'GET', encodeURIComponent(mediaId), null, 'media lookup', opts);
  const url = str(info.url);
  if (!url) throw new ChannelError('Cloud API media lookup answered without a url', false);
  let res: Response;
  try {
    res = await opts.fetch(url, { headers: { authorization: `Bearer ${cfg.accessToken}` }, signal: opts.signal });
  } catch (err) {
    if (err instanceof OutboundRefused) throw new ChannelError(`Cloud API media download: ${err.message}`, false);
    throw new ChannelError(
      `Cloud API media download failed: ${err instanceof Error ? err.message : String(err)}`,
      true,
    );
  }
  if (!res.ok) throw classifyGraphError(res.status, null, retryAfterMs(res));
  const bytes =
    opts.maxBytes !== undefined ? await readBounded(res, opts.maxBytes) : new Uint8Array(await res.arrayBuffer());
  return { bytes, mimeType: str(info.mime_type) ?? res.headers.get('content-type') ?? 'application/octet-stream' };
}
