// A web chat instance's settings (its channel fields) with their defaults, and the origin rule.
import type { ChannelConfig, Instance } from '../../core/instance.ts';
import { field } from '../fields.ts';
import type { ChannelField, FieldProblem } from '../types.ts';

export const DEFAULTS = {
  maxMessageChars: 2_000,
  visitorMessagesPerMinute: 20,
  ipRequestsPerMinute: 120,
  title: 'Chat',
};
const MAX_LIMIT = 100_000;

export const WEBCHAT_FIELDS: ChannelField[] = [
  field('webchat_allowed_origins', 'string', {
    form: {
      label: 'Allowed origins',
      hint: "Sites that may embed the chat, e.g. https://example.com (comma separated; * for any). The gateway's own origin is always allowed.",
    },
  }),
  field('webchat_welcome_text', 'string', { form: { label: 'Welcome text', hint: 'Shown when the chat opens' } }),
  field('webchat_title', 'string', { form: { label: 'Chat title', hint: `Defaults to "${DEFAULTS.title}"` } }),
  field('webchat_max_message_chars', 'int', {
    form: { label: 'Longest message (characters)', hint: `Defaults to ${DEFAULTS.maxMessageChars}` },
  }),
  field('webchat_visitor_messages_per_minute', 'int', {
    form: { label: 'Messages per minute per visitor', hint: `Defaults to ${DEFAULTS.visitorMessagesPerMinute}` },
  }),
  field('webchat_ip_requests_per_minute', 'int', {
    form: { label: 'Requests per minute per IP address', hint: `Defaults to ${DEFAULTS.ipRequestsPerMinute}` },
  }),
];

/** "https://a.example, https://b.example:8443" → the entries ('*' kept as is). */
export function originList(value: unknown): string[] {
  return typeof value === 'string' ? value.split(/[\s,]+/).filter(Boolean) : [];
}

/** An origin as browsers send it: scheme://host[:port], nothing after. */
function originProblem(o: string): string | null {
  if (o === '*') return null;
  try {
    const u = new URL(o);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') return `${o}: must be http or https`;
    if (u.origin !== o.replace(/\/$/, '')) return `${o}: must be an origin (scheme://host[:port], no path)`;
    return null;
  } catch {
    return `${o}: is not an origin`;
  }
}

export function validateConfig(config: ChannelConfig): FieldProblem[] {
  const out: FieldProblem[] = [];
  for (const o of originList(config.webchat_allowed_origins)) {
    const p = originProblem(o);
    if (p) out.push({ field: 'webchat_allowed_origins', problem: p });
  }
  for (const f of [
    'webchat_max_message_chars',
    'webchat_visitor_messages_per_minute',
    'webchat_ip_requests_per_minute',
  ]) {
    const v = config[f];
    if (v !== undefined && (typeof v !== 'number' || v < 1 || v > MAX_LIMIT))
      out.push({ field: f, problem: `must be between 1 and ${MAX_LIMIT}` });
  }
  return out;
}

export interface WebchatSettings {
  origins: string[];
  welcome: string | null;
  title: string;
  maxMessageChars: number;
  visitorMessagesPerMinute: number;
  ipRequestsPerMinute: number;
}

const int = (v: unknown, d: number) => (typeof v === 'number' && v >= 1 ? v : d);
const text = (v: unknown) => (typeof v === 'string' && v.trim() ? v : null);

export function settingsOf(inst: Instance): WebchatSettings {
  const c = inst.config;
  return {
    origins: originList(c.webchat_allowed_origins).map((o) => o.replace(/\/$/, '')),
    welcome: text(c.webchat_welcome_text),
    title: text(c.webchat_title) ?? DEFAULTS.title,
    maxMessageChars: int(c.webchat_max_message_chars, DEFAULTS.maxMessageChars),
    visitorMessagesPerMinute: int(c.webchat_visitor_messages_per_minute, DEFAULTS.visitorMessagesPerMinute),
    ipRequestsPerMinute: int(c.webchat_ip_requests_per_minute, DEFAULTS.ipRequestsPerMinute),
  };
}

/**
 * Whether a browser page at `origin` may use the instance. No Origin header: not a cross-origin
 * browser request (curl, a server), which the visitor token still governs. The gateway's own origin
 * (the request's, or PUBLIC_URL's) is always allowed: the console's "Try it" panel lives there.
 */
export function originAllowed(
  s: WebchatSettings,
  origin: string | null,
  request: Request,
  publicUrl: string | null,
): boolean {
  if (origin === null) return true;
  if (s.origins.includes('*') || s.origins.includes(origin)) return true;
  if (origin === new URL(request.url).origin) return true;
  if (publicUrl) {
    try {
      if (origin === new URL(publicUrl).origin) return true;
    } catch {
      // PUBLIC_URL is validated at start
    }
  }
  return false;
}
