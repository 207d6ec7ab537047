// Signed, expiring media URLs: GET /media/{id}?exp={unix seconds}&sig={HMAC-SHA256(key, id.exp)}.
// The id is part of what is signed, so a signature for one item cannot read another, and the expiry
// is, so it cannot be extended. The key is 32 random bytes in the media directory (created on first
// use, mode 0600), or derived from CLUSTER_SECRET when set, so every node of a cluster signs alike.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** How long a URL given to an agent stays valid. */
export const MEDIA_URL_TTL_SECONDS = 24 * 3600;

export class MediaSigner {
  private key: Buffer | null = null;

  constructor(
    private source: { dir: string; secret: string | null },
    private nowMs: () => number,
  ) {}

  private keyBytes(): Buffer {
    if (this.key) return this.key;
    if (this.source.secret) {
      this.key = createHmac('sha256', this.source.secret).update('switchboard media urls').digest();
      return this.key;
    }
    const file = join(this.source.dir, 'signing.key');
    if (existsSync(file)) {
      this.key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64url');
    } else {
      mkdirSync(this.source.dir, { recursive: true, mode: 0o700 });
      const fresh = randomBytes(32);
      // 'wx': two processes never overwrite each other's key; the loser reads the winner's.
      try {
        writeFileSync(file, fresh.toString('base64url'), { mode: 0o600, flag: 'wx' });
        this.key = fresh;
      } catch {
        this.key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64url');
      }
    }
    return this.key;
  }

  private mac(id: string, exp: number): string {
    return createHmac('sha256', this.keyBytes()).update(`${id}.${exp}`).digest('base64url');
  }

  /** The path and query of a signed URL for one item. */
  sign(id: string, ttlSeconds = MEDIA_URL_TTL_SECONDS): string {
    const exp = Math.floor(this.nowMs() / 1000) + ttlSeconds;
    return `/media/${encodeURIComponent(id)}?exp=${exp}&sig=${this.mac(id, exp)}`;
  }

  /** Whether `sig` is ours for this id and `exp` is still ahead. */
  verify(id: string, exp: string | undefined, sig: string | undefined): boolean {
    if (!exp || !sig || !/^\d{1,12}$/.test(exp)) return false;
    const at = Number(exp);
    if (at * 1000 <= this.nowMs()) return false;
    const want = Buffer.from(this.mac(id, at));
    const got = Buffer.from(sig);
    return got.length === want.length && timingSafeEqual(got, want);
  }
}
