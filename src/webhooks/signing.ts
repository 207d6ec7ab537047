// Standard Webhooks signing (https://www.standardwebhooks.com): `whsec_` secrets and the
// webhook-id / webhook-timestamp / webhook-signature headers, computed with the `standardwebhooks`
// library so a receiver using the same library verifies exactly what we sign.
import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

/** A new signing secret: `whsec_` and 32 random bytes in base64 (the format the library reads). */
export function newSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/** "whsec_****abcd": enough to tell two secrets apart, never enough to sign. */
export function maskedSecret(secret: string): string {
  return `whsec_****${secret.slice(-4)}`;
}

/**
 * The headers of one attempt. `secrets` is the current secret first, then (during a rotation's
 * grace period) the previous one: the signature header carries one `v1,…` per secret, separated by
 * spaces, and a receiver holding either secret verifies it.
 */
export function signedHeaders(
  msgId: string,
  body: string,
  secrets: string[],
  at: Date = new Date(),
): Record<string, string> {
  const timestamp = new Date(Math.floor(at.getTime() / 1000) * 1000);
  return {
    'webhook-id': msgId,
    'webhook-timestamp': String(Math.floor(timestamp.getTime() / 1000)),
    'webhook-signature': secrets.map((s) => new Webhook(s).sign(msgId, timestamp, body)).join(' '),
  };
}
