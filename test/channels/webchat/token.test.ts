// Visitor tokens: signed per instance, bound to it, with an expiry; anything altered is forged.
import { describe, expect, test } from 'bun:test';
import { issueToken, newVisitorId, TOKEN_TTL_MS, verifyToken } from '../../../src/channels/webchat/token.ts';

const A = { id: 'inst-a', webhookSecret: 'secret-a-0123456789' };
const B = { id: 'inst-b', webhookSecret: 'secret-b-0123456789' };
const NOW = Date.UTC(2026, 0, 1);

describe('visitor tokens', () => {
  test('a fresh token names its visitor until it expires', () => {
    const v = newVisitorId();
    const { token, expiresAt } = issueToken(A, v, NOW);
    expect(expiresAt).toBe(NOW + TOKEN_TTL_MS);
    expect(verifyToken(A, token, NOW)).toEqual({ visitorId: v, expiresAt });
    expect(verifyToken(A, token, NOW + TOKEN_TTL_MS - 1000)).toMatchObject({ visitorId: v });
    expect(verifyToken(A, token, NOW + TOKEN_TTL_MS)).toBe('expired');
  });

  test('visitor ids are random and well formed', () => {
    const ids = new Set(Array.from({ length: 1000 }, newVisitorId));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(id).toMatch(/^v_[A-Za-z0-9_-]{22}$/);
  });

  test("another instance's token, or the same instance after its secret rotated, is forged", () => {
    const { token } = issueToken(A, newVisitorId(), NOW);
    expect(verifyToken(B, token, NOW)).toBe('forged');
    // Same id, new secret (rotation): refused.
    expect(verifyToken({ ...A, webhookSecret: 'rotated-secret-000' }, token, NOW)).toBe('forged');
    // Same secret, other id: refused (the key is derived from both, and the payload names the id).
    expect(verifyToken({ ...A, id: 'inst-c' }, token, NOW)).toBe('forged');
  });

  test('any change to payload or signature is forged; garbage is forged, never a crash', () => {
    const v = newVisitorId();
    const { token } = issueToken(A, v, NOW);
    const [payload, sig] = token.split('.');
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
    const other = Buffer.from(JSON.stringify({ ...claims, v: newVisitorId() })).toString('base64url');
    const later = Buffer.from(JSON.stringify({ ...claims, x: claims.x + 3600 })).toString('base64url');
    for (const bad of [
      `${other}.${sig}`,
      `${later}.${sig}`,
      `${payload}.${sig.slice(0, -2)}AA`,
      `${payload}.`,
      `.${sig}`,
      payload,
      '',
      'a.b.c',
      `${'x'.repeat(2000)}.${sig}`,
      `${Buffer.from('not json').toString('base64url')}.${sig}`,
    ])
      expect(verifyToken(A, bad, NOW)).toBe('forged');
  });
});
