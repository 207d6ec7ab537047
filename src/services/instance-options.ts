// An instance's `messaging` (conversation mode) and `media` (transcription, inlining) options from
// the v2 design. Stored with the instance settings under those two keys; each update merges into
// what is stored (a transcription apiKey left out is kept, `null` turns transcription off).
import { literalProblem } from '../net/outbound.ts';

export const MESSAGING_MODES = ['sequential', 'collect', 'interrupt'] as const;

export interface MessagingOptions {
  mode: (typeof MESSAGING_MODES)[number];
  /** Quiet time before a turn starts (collect/interrupt). */
  debounceMs: number;
  /** A turn starts after this long even when messages keep coming. */
  maxWaitMs: number;
  /** Most messages answered in one turn. */
  maxBatch: number;
}

export interface MediaOptions {
  transcription: { url: string; apiKey: string | null; model: string; language: string | null } | null;
  /** Media bytes inlined as base64 for the agent (the v1 flag webhook_base64 means the same). */
  inline: boolean;
  maxBytes: number;
}

export const DEFAULT_MESSAGING: MessagingOptions = { mode: 'sequential', debounceMs: 0, maxWaitMs: 0, maxBatch: 10 };
export const DEFAULT_MEDIA: MediaOptions = { transcription: null, inline: false, maxBytes: 16 * 1024 * 1024 };

/** Bounds, also used by the API schemas. */
export const MESSAGING_LIMITS = {
  debounceMs: [0, 30_000],
  maxWaitMs: [0, 300_000],
  maxBatch: [1, 100],
} as const;
export const MEDIA_MAX_BYTES: readonly [number, number] = [1024, 100 * 1024 * 1024];

interface Problem {
  field: string;
  problem: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function intIn(v: unknown, [min, max]: readonly [number, number]): boolean {
  return Number.isInteger(v) && (v as number) >= min && (v as number) <= max;
}

/**
 * The options a conversation runs with: the instance's own `messaging` when it has one (stored
 * whole, every value filled), else the global default (settings `messaging.default*`).
 */
export function effectiveMessaging(stored: unknown, globalDefault: () => MessagingOptions): MessagingOptions {
  return isObject(stored) ? ({ ...DEFAULT_MESSAGING, ...stored } as MessagingOptions) : globalDefault();
}

/** `patch` merged into `stored`; problems name the field (`messaging.debounceMs`). */
export function mergeMessaging(stored: unknown, patch: unknown, problems: Problem[]): MessagingOptions {
  const out: MessagingOptions = { ...DEFAULT_MESSAGING, ...(isObject(stored) ? stored : {}) };
  if (patch === null) return { ...DEFAULT_MESSAGING };
  if (!isObject(patch)) {
    problems.push({ field: 'messaging', problem: 'must be an object' });
    return out;
  }
  for (const [k, v] of Object.entries(patch)) {
    if (k === 'mode') {
      if (MESSAGING_MODES.includes(v as MessagingOptions['mode'])) out.mode = v as MessagingOptions['mode'];
      else problems.push({ field: 'messaging.mode', problem: `must be one of ${MESSAGING_MODES.join(', ')}` });
    } else if (k in MESSAGING_LIMITS) {
      const range = MESSAGING_LIMITS[k as keyof typeof MESSAGING_LIMITS];
      if (intIn(v, range)) out[k as keyof typeof MESSAGING_LIMITS] = v as number;
      else
        problems.push({ field: `messaging.${k}`, problem: `must be an integer between ${range[0]} and ${range[1]}` });
    } else problems.push({ field: `messaging.${k}`, problem: 'is not a messaging option' });
  }
  if (out.maxWaitMs !== 0 && out.maxWaitMs < out.debounceMs)
    problems.push({ field: 'messaging.maxWaitMs', problem: 'must be 0 (no cap) or at least debounceMs' });
  return out;
}

export function mergeMedia(stored: unknown, patch: unknown, problems: Problem[]): MediaOptions {
  const out: MediaOptions = { ...DEFAULT_MEDIA, ...(isObject(stored) ? stored : {}) };
  if (patch === null) return { ...DEFAULT_MEDIA };
  if (!isObject(patch)) {
    problems.push({ field: 'media', problem: 'must be an object' });
    return out;
  }
  for (const [k, v] of Object.entries(patch)) {
    if (k === 'inline') {
      if (typeof v === 'boolean') out.inline = v;
      else problems.push({ field: 'media.inline', problem: 'must be a boolean' });
    } else if (k === 'maxBytes') {
      if (intIn(v, MEDIA_MAX_BYTES)) out.maxBytes = v as number;
      else
        problems.push({
          field: 'media.maxBytes',
          problem: `must be an integer between ${MEDIA_MAX_BYTES[0]} and ${MEDIA_MAX_BYTES[1]}`,
        });
    } else if (k === 'transcription') out.transcription = transcription(out.transcription, v, problems);
    else problems.push({ field: `media.${k}`, problem: 'is not a media option' });
  }
  return out;
}

function transcription(stored: MediaOptions['transcription'], v: unknown, problems: Problem[]) {
  if (v === null) return null;
  if (!isObject(v)) {
    problems.push({ field: 'media.transcription', problem: 'must be an object or null' });
    return stored;
  }
  const next = { url: '', apiKey: null as string | null, model: '', language: null as string | null, ...stored };
  const str = (k: string, max: number) =>
    typeof v[k] === 'string' && (v[k] as string).trim() !== '' && (v[k] as string).length <= max;
  for (const k of Object.keys(v))
    if (!['url', 'apiKey', 'model', 'language'].includes(k))
      problems.push({ field: `media.transcription.${k}`, problem: 'is not a transcription option' });
  if (v.url !== undefined) {
    const problem =
      typeof v.url === 'string' && /^https?:\/\//i.test(v.url) ? literalProblem(v.url) : 'must be an http(s) URL';
    if (problem) problems.push({ field: 'media.transcription.url', problem });
    else next.url = (v.url as string).replace(/\/+$/, '');
  }
  if (v.apiKey !== undefined) {
    if (v.apiKey === null || str('apiKey', 500)) next.apiKey = v.apiKey as string | null;
    else problems.push({ field: 'media.transcription.apiKey', problem: 'must be a non-blank string (≤ 500) or null' });
  }
  if (v.model !== undefined) {
    if (str('model', 200)) next.model = v.model as string;
    else problems.push({ field: 'media.transcription.model', problem: 'must be a non-blank string (≤ 200)' });
  }
  if (v.language !== undefined) {
    if (v.language === null || (typeof v.language === 'string' && /^[A-Za-z-]{2,20}$/.test(v.language)))
      next.language = v.language as string | null;
    else
      problems.push({ field: 'media.transcription.language', problem: 'must be a language code such as en or pt-BR' });
  }
  if (!next.url) problems.push({ field: 'media.transcription.url', problem: 'is required' });
  if (!next.model) problems.push({ field: 'media.transcription.model', problem: 'is required' });
  return next;
}
