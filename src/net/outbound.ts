// The outbound-request policy: every request the gateway makes on a user's behalf (agents, the
// Evolution client, and later Cloud API, Telegram, media, webhooks, transcription) goes through
// the fetch built here, so a user-set URL cannot reach the machine's cloud metadata service or
// (when configured) the private network, and cannot read those answers back.
//
// - Link-local and cloud-metadata addresses are always refused: a literal one when the URL is
//   saved (literalProblem), any other at request time after DNS resolution and on every redirect.
// - Loopback and private ranges are refused when allowPrivate is false (OUTBOUND_ALLOW_PRIVATE);
//   the default allows them so a local agent or Evolution server works out of the box.
// - allowedHosts (OUTBOUND_ALLOWED_HOSTS), when non-empty, is the only set of hosts reachable;
//   a listed host may resolve to a private address, never to a link-local or metadata one.
// - Redirects are followed here, hop by hop (at most maxRedirects), each hop checked again.
//
// Residual risk, stated: the address is checked on our lookup and fetch looks the name up again,
// so a DNS answer that changes between the two (rebinding with TTL 0) is not caught.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

/** Host name → its addresses (tests inject one; no test may send traffic to a refused address). */
export type Resolver = (host: string) => Promise<string[]>;

export interface OutboundPolicy {
  /** Loopback and private ranges may be reached (local development). */
  allowPrivate: boolean;
  /** Only these hosts (exact, or `*.example.com` for subdomains); empty = any host. */
  allowedHosts: string[];
  resolve?: Resolver;
  /** Redirect hops followed before giving up (default 5). */
  maxRedirects?: number;
}

/** A request the policy refused. Not worth retrying: the same URL is refused again. */
export class OutboundRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OutboundRefused';
  }
}

/** Names that reach a cloud provider's instance metadata service (besides the addresses below). */
const METADATA_HOSTS = new Set([
  'metadata',
  'metadata.google.internal',
  'metadata.goog',
  'metadata.azure.com',
  'instance-data',
  'instance-data.ec2.internal',
]);

export type AddressClass = 'metadata' | 'link-local' | 'loopback' | 'private' | 'public';

function ipv4Bytes(ip: string): number[] | null {
  const parts = ip.split('.');
  if (parts.length !== 4) return null;
  const b = parts.map((p) => (/^\d{1,3}$/.test(p) ? Number(p) : Number.NaN));
  return b.every((n) => n >= 0 && n <= 255) ? b : null;
}

/** 16 bytes of an IPv6 address (with an embedded dotted IPv4 tail), or null. */
function ipv6Bytes(ip: string): number[] | null {
  let s = ip.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  let tail: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const b = ipv4Bytes(v4[1]);
    if (!b) return null;
    tail = b;
    s = `${s.slice(0, -v4[1].length)}0:0`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const groups = (h: string) => (h === '' ? [] : h.split(':'));
  const head = groups(halves[0]);
  const rest = halves.length === 2 ? groups(halves[1]) : [];
  const fill = 8 - head.length - rest.length;
  if (fill < 0 || (halves.length === 1 && fill !== 0)) return null;
  const all = [...head, ...Array(halves.length === 2 ? fill : 0).fill('0'), ...rest];
  if (all.length !== 8 || !all.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return null;
  const bytes = all.flatMap((g) => {
    const n = Number.parseInt(g, 16);
    return [n >> 8, n & 255];
  });
  if (tail.length) bytes.splice(12, 4, ...tail);
  return bytes;
}

/** fd00:ec2::254, AWS's instance metadata service over IPv6. */
const AWS_IMDS_V6 = [0xfd, 0, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54];

/** The bytes of an IP address: 4 for IPv4 (IPv4-mapped IPv6 included), 16 for IPv6; null otherwise. */
export function ipBytes(ip: string): number[] | null {
  const host = ip.replace(/^\[|\]$/g, '');
  if (isIP(host) === 4) return ipv4Bytes(host);
  if (isIP(host.replace(/%.*$/, '')) !== 6) return null;
  const b = ipv6Bytes(host);
  if (!b) return null;
  const mapped = b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
  return mapped ? b.slice(12) : b;
}

function classifyV4([a, b, c, d]: number[]): AddressClass {
  if (a === 169 && b === 254) return 'link-local'; // includes 169.254.169.254, every cloud's metadata
  if (a === 100 && b === 100 && c === 100 && d === 200) return 'metadata'; // Alibaba Cloud
  if (a === 127 || a === 0) return 'loopback'; // 0.0.0.0 reaches this host too
  if (a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)) return 'private';
  if (a === 100 && b >= 64 && b <= 127) return 'private'; // carrier-grade NAT
  if (a === 198 && (b === 18 || b === 19)) return 'private'; // benchmarking
  if (a === 192 && b === 0 && c === 0) return 'private'; // IETF protocol assignments
  if (a >= 224) return 'private'; // multicast, reserved, broadcast
  return 'public';
}

/** Classes of the hosts seen lately: the agent and channel hosts repeat on every message. */
const classCache = new Map<string, AddressClass | null>();

/** What kind of address `ip` is; null when it is not an IP address. */
export function addressClass(ip: string): AddressClass | null {
  const known = classCache.get(ip);
  if (known !== undefined) return known;
  const cls = classify(ip);
  if (classCache.size >= 1024) classCache.clear();
  classCache.set(ip, cls);
  return cls;
}

function classify(ip: string): AddressClass | null {
  const host = ip.replace(/^\[|\]$/g, '');
  if (isIP(host) === 4) return classifyV4(ipv4Bytes(host)!);
  if (isIP(host.replace(/%.*$/, '')) !== 6) return null;
  const b = ipv6Bytes(host);
  if (!b) return null;
  const zeros = (n: number) => b.slice(0, n).every((x) => x === 0);
  // IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64 (64:ff9b::a.b.c.d) carry an IPv4 address.
  if (zeros(10) && b[10] === 0xff && b[11] === 0xff) return classifyV4(b.slice(12));
  if (b[0] === 0 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && b.slice(4, 12).every((x) => x === 0))
    return classifyV4(b.slice(12));
  if (b.every((x, i) => x === AWS_IMDS_V6[i])) return 'metadata';
  if (b[0] === 0xfe && (b[1] & 0xc0) === 0x80) return 'link-local'; // fe80::/10
  if (zeros(15) && (b[15] === 1 || b[15] === 0)) return 'loopback'; // ::1 and ::
  if (zeros(12) && !zeros(16)) return classifyV4(b.slice(12));
  if ((b[0] & 0xfe) === 0xfc) return 'private'; // fc00::/7 unique local
  if (b[0] === 0xfe && (b[1] & 0xc0) === 0xc0) return 'private'; // fec0::/10 old site-local
  if (b[0] === 0xff) return 'private'; // multicast
  return 'public';
}

const ALWAYS_REFUSED: ReadonlySet<AddressClass> = new Set(['metadata', 'link-local']);

function normalHost(hostname: string): string {
  return hostname.toLowerCase().replace(/\.$/, '');
}

function isMetadataHost(host: string): boolean {
  return METADATA_HOSTS.has(normalHost(host));
}

/**
 * Checked when a URL is saved: a literal link-local or metadata address (or host name) is refused
 * at once, whatever the settings. Returns the problem, or null. Names are checked at request time.
 */
export function literalProblem(url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null; // the caller reports a malformed URL
  }
  if (isMetadataHost(u.hostname)) return 'must not point at a cloud metadata host';
  const cls = addressClass(u.hostname);
  if (cls && ALWAYS_REFUSED.has(cls)) return 'must not point at a link-local or cloud metadata address';
  return null;
}

function hostAllowed(host: string, allowed: string[]): boolean {
  const h = normalHost(host.replace(/^\[|\]$/g, ''));
  return allowed.some((a) => {
    const p = normalHost(a);
    return p.startsWith('*.') ? h.endsWith(p.slice(1)) : h === p;
  });
}

const defaultResolver: Resolver = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((r) => r.address);

/** Refuses (throws OutboundRefused) unless the policy lets a request go to `url`. Resolves names. */
export async function checkOutbound(url: URL, policy: OutboundPolicy): Promise<void> {
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new OutboundRefused(`outbound request refused: ${url.protocol} is not http or https`);
  const host = url.hostname;
  if (isMetadataHost(host)) throw new OutboundRefused(`outbound request refused: ${host} is a cloud metadata host`);
  const listed = policy.allowedHosts.length > 0 && hostAllowed(host, policy.allowedHosts);
  if (policy.allowedHosts.length > 0 && !listed)
    throw new OutboundRefused(`outbound request refused: ${host} is not in OUTBOUND_ALLOWED_HOSTS`);
  const literal = addressClass(host);
  let addresses: string[];
  if (literal) addresses = [host.replace(/^\[|\]$/g, '')];
  else {
    try {
      addresses = await (policy.resolve ?? defaultResolver)(host);
    } catch (err) {
      throw new Error(`cannot resolve ${host}: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (addresses.length === 0) throw new Error(`cannot resolve ${host}: no addresses`);
  }
  for (const addr of addresses) {
    const cls = addressClass(addr) ?? 'public';
    if (ALWAYS_REFUSED.has(cls))
      throw new OutboundRefused(`outbound request refused: ${host} is a link-local or cloud metadata address`);
    if ((cls === 'loopback' || cls === 'private') && !policy.allowPrivate && !listed)
      throw new OutboundRefused(`outbound request refused: ${host} is a ${cls} address (OUTBOUND_ALLOW_PRIVATE=false)`);
  }
}

/** Credentials never follow a redirect to another origin. */
const CREDENTIAL_HEADERS = ['authorization', 'cookie', 'proxy-authorization', 'apikey', 'x-api-key'];

/**
 * A fetch that applies the policy to the first request and to every redirect hop. Takes the
 * underlying fetch (tests pass a fake). Bodies are strings or absent in every caller, so a
 * 307/308 can resend them.
 */
export function createOutboundFetch(base: typeof fetch, policy: OutboundPolicy): typeof fetch {
  const maxRedirects = policy.maxRedirects ?? 5;
  // URLs with a literal address already let through: the policy's answer for them cannot change
  // (names are resolved on every request). Every message makes two calls to the same few URLs;
  // parsing and checking each again was measurable CPU per message.
  const passed = new Set<string>();
  const guarded = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    if (input instanceof Request) throw new TypeError('outbound fetch takes a URL, not a Request');
    const href = String(input);
    let url: URL | null = null;
    if (!passed.has(href)) {
      url = new URL(href);
      await checkOutbound(url, policy);
      if (addressClass(url.hostname)) {
        if (passed.size >= 1024) passed.clear();
        passed.add(href);
      }
    }
    let method = (init.method ?? 'GET').toUpperCase();
    let body = init.body;
    let headers: Headers | null = null; // copied only to drop credentials on a redirect
    let res = await base(href, { ...init, method, redirect: 'manual' });
    for (let hop = 0; ; hop++) {
      const location = res.headers.get('location');
      if (res.status < 300 || res.status >= 400 || res.status === 304 || !location) return res;
      if (init.redirect === 'manual') return res;
      await res.body?.cancel().catch(() => {});
      if (init.redirect === 'error' || hop >= maxRedirects)
        throw new OutboundRefused(`outbound request refused: more than ${maxRedirects} redirects`);
      url ??= new URL(href);
      headers ??= new Headers(init.headers);
      const next = new URL(location, url);
      if (next.origin !== url.origin) for (const h of CREDENTIAL_HEADERS) headers.delete(h);
      if (res.status === 303 || ((res.status === 301 || res.status === 302) && method === 'POST')) {
        method = method === 'HEAD' ? 'HEAD' : 'GET';
        body = undefined;
        headers.delete('content-type');
        headers.delete('content-length');
      }
      url = next;
      await checkOutbound(url, policy);
      res = await base(url.toString(), { ...init, method, body, headers, redirect: 'manual' });
    }
  };
  return Object.assign(guarded, { preconnect: base.preconnect }) as typeof fetch;
}

/** Query parameters whose values are credentials. */
const SECRET_PARAM = /key|token|secret|passw|auth|sig|credential|session/i;

/**
 * A URL fit to show: the password and credential-bearing query values become "****" (the
 * user name and the rest stay, so the owner still recognises the URL).
 */
export function maskUrl(url: string | null): string | null {
  if (url === null) return null;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url;
  }
  let changed = false;
  if (u.password) {
    u.password = '****';
    changed = true;
  }
  for (const name of new Set(u.searchParams.keys())) {
    if (!SECRET_PARAM.test(name)) continue;
    u.searchParams.set(name, '****');
    changed = true;
  }
  return changed ? u.toString().replace(/%2A%2A%2A%2A/g, '****') : url;
}
