// What an admin sees of a dead-lettered message: everything but secrets (tokens, keys, signatures,
// inline media), which are masked.
import { maskSecret } from '../../services/ids.ts';

/** Field names whose values a dead-letter view never shows in full (e.g. a Discord interaction token, inline media). */
const SECRET_FIELD = /token|secret|password|authorization|cookie|api_?key|signature|base64/i;

export function masked(v: unknown, key = ''): unknown {
  if (SECRET_FIELD.test(key) && v !== null && v !== undefined) return typeof v === 'string' ? maskSecret(v) : '****';
  if (Array.isArray(v)) return v.map((x) => masked(x));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, masked(x, k)]));
  return v;
}
