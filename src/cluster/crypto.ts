// Keys derived from CLUSTER_SECRET (HKDF-SHA256), one per purpose, so that reading Redis gives
// neither the configuration's secrets nor the power to pass as a node:
// - sealing: AES-256-GCM of every value the cluster keeps in Redis that may carry secrets
//   (replicated configuration rows, dead-letter records, messages in the hand-off streams — the
//   last also so that an entry no node wrote is never run). A random 96-bit nonce per value; the
//   value's place (e.g. table + primary key) is authenticated with it, so a sealed value moved to
//   another row does not open either;
// - peer: HMAC-SHA256 of the requests one node sends another (gathered reads);
// - node: HMAC-SHA256 of (node id, URL) in each node's heartbeat, so a URL written into Redis by
//   anyone else is never taken for a peer's (peers get the caller's API key);
// - fingerprint: stored in Redis (cfg:seeded), so a node started with another secret is refused
//   at start instead of running on configuration it cannot read.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { constantTimeEqual } from '../services/ids.ts';

const SALT = 'switchboard-cluster';
/** Prefix of a sealed value: format version (nonce ‖ ciphertext ‖ tag, base64url, follows). */
const SEALED = 'v1.';
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** A peer signature older (or newer) than this is refused (replay window). */
const PEER_WINDOW_MS = 30_000;

export class ClusterKeys {
  /** Stored in Redis; names the secret without revealing it or any key derived for use. */
  readonly fingerprint: string;
  private readonly sealKey: Buffer;
  private readonly peerKey: Buffer;
  private readonly nodeKey: Buffer;

  constructor(secret: string) {
    const derive = (purpose: string) => Buffer.from(hkdfSync('sha256', secret, SALT, purpose, 32));
    this.sealKey = derive('redis-values v1');
    this.peerKey = derive('peer-requests v1');
    this.nodeKey = derive('node-urls v1');
    this.fingerprint = derive('fingerprint v1').toString('hex');
  }

  /** Encrypts `plaintext`, bound to `context` (where the value lives). */
  seal(plaintext: string, context: string): string {
    const nonce = randomBytes(NONCE_BYTES);
    const c = createCipheriv('aes-256-gcm', this.sealKey, nonce);
    c.setAAD(Buffer.from(context));
    const body = Buffer.concat([c.update(plaintext, 'utf8'), c.final()]);
    return SEALED + Buffer.concat([nonce, body, c.getAuthTag()]).toString('base64url');
  }

  /** The plaintext, or null when the value was not sealed by this secret for this context (or was altered). */
  open(sealed: string, context: string): string | null {
    if (!sealed.startsWith(SEALED)) return null;
    const raw = Buffer.from(sealed.slice(SEALED.length), 'base64url');
    if (raw.length < NONCE_BYTES + TAG_BYTES) return null;
    try {
      const d = createDecipheriv('aes-256-gcm', this.sealKey, raw.subarray(0, NONCE_BYTES));
      d.setAAD(Buffer.from(context));
      d.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
      return Buffer.concat([d.update(raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES)), d.final()]).toString('utf8');
    } catch {
      return null;
    }
  }

  /** Signature header value for a request to a peer: "<ms>.<hmac hex>". */
  signPeer(method: string, pathAndQuery: string, now = Date.now()): string {
    return `${now}.${this.peerMac(String(now), method, pathAndQuery)}`;
  }

  /** True for a signature made with this secret for this request within the replay window. */
  verifyPeer(signature: string, method: string, pathAndQuery: string, now = Date.now()): boolean {
    const [ts, mac] = signature.split('.');
    if (!ts || !mac || !/^\d+$/.test(ts) || Math.abs(now - Number(ts)) > PEER_WINDOW_MS) return false;
    return constantTimeEqual(mac, this.peerMac(ts, method, pathAndQuery));
  }

  /** MAC of the URL a node advertises in its heartbeat, bound to its id. */
  signNode(node: string, url: string): string {
    return createHmac('sha256', this.nodeKey).update(`${node}\n${url}`).digest('hex');
  }

  /** True when `mac` is this secret's MAC of (node, url). */
  verifyNode(node: string, url: string, mac: unknown): boolean {
    return typeof mac === 'string' && constantTimeEqual(mac, this.signNode(node, url));
  }

  private peerMac(ts: string, method: string, pathAndQuery: string): string {
    return createHmac('sha256', this.peerKey).update(`${ts}\n${method}\n${pathAndQuery}`).digest('hex');
  }
}
