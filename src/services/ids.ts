// Identifiers and hashing helpers shared by the services.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** Time-ordered UUID (v7) so ids sort by creation. */
export function newId(): string {
  return Bun.randomUUIDv7();
}

export function randomToken(bytes = 24): string {
  return randomBytes(bytes).toString('base64url');
}

export function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

export function constantTimeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  if (ab.length !== bb.length) {
    timingSafeEqual(ab, ab); // keep the timing independent of where the strings differ
    return false;
  }
  return timingSafeEqual(ab, bb);
}

/** "****A36A": the last 4 characters of a secret, never more. */
export function maskSecret(v: unknown): string | null {
  if (typeof v !== 'string' || v.length === 0) return null;
  return `****${v.length > 8 ? v.slice(-4) : ''}`;
}

export function isoNow(ms = Date.now()): string {
  return new Date(ms).toISOString();
}
