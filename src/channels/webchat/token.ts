// Visitor tokens: `<payload>.<signature>`, both base64url; the payload is {i: instance id,
// v: visitor id, x: expiry in seconds}. Signed with HMAC-SHA256 under a key derived from the
// instance's own secret (its webhook secret, never shown for a web chat instance), so a token of one
// instance is refused by every other, and rotating the instance's secret revokes all its tokens.
import { createHmac } from 'node:crypto';
import type { Instance } from '../../core/instance.ts';
import { constantTimeEqual, randomToken } from '../../services/ids.ts';

/** A token lives this long; each session start or resume issues a fresh one. */
export const TOKEN_TTL_MS = 30 * 24 * 3600 * 1000;

export interface Visitor {
  visitorId: string;
  /** ms since the epoch. */
  expiresAt: number;
}

function keyOf(inst: Pick<Instance, 'id' | 'webhookSecret'>): Buffer {
  return createHmac('sha256', inst.webhookSecret).update(`switchboard web chat visitor token\u0000${inst.id}`).digest();
}

function sign(inst: Pick<Instance, 'id' | 'webhookSecret'>, payload: string): string {
  return createHmac('sha256', keyOf(inst)).update(payload).digest('base64url');
}

export function newVisitorId(): string {
  return `v_${randomToken(16)}`;
}

export function issueToken(
  inst: Pick<Instance, 'id' | 'webhookSecret'>,
  visitorId: string,
  nowMs: number,
): { token: string; expiresAt: number } {
  const expiresAt = nowMs + TOKEN_TTL_MS;
  const payload = Buffer.from(JSON.stringify({ i: inst.id, v: visitorId, x: Math.floor(expiresAt / 1000) })).toString(
    'base64url',
  );
  return { token: `${payload}.${sign(inst, payload)}`, expiresAt: Math.floor(expiresAt / 1000) * 1000 };
}

/** The visitor a token names, or why it is refused ('forged' covers malformed and other instances' tokens). */
export function verifyToken(
  inst: Pick<Instance, 'id' | 'webhookSecret'>,
  token: string,
  nowMs: number,
): Visitor | 'forged' | 'expired' {
  if (token.length > 1024) return 'forged';
  const dot = token.indexOf('.');
  if (dot <= 0) return 'forged';
  const payload = token.slice(0, dot);
  if (!constantTimeEqual(token.slice(dot + 1), sign(inst, payload))) return 'forged';
  let claims: { i?: unknown; v?: unknown; x?: unknown };
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    return 'forged';
  }
  if (claims.i !== inst.id || typeof claims.v !== 'string' || !/^v_[A-Za-z0-9_-]{8,64}$/.test(claims.v))
    return 'forged';
  if (typeof claims.x !== 'number' || claims.x * 1000 <= nowMs) return 'expired';
  return { visitorId: claims.v, expiresAt: claims.x * 1000 };
}
