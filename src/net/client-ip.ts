// The address of the client behind a request: the socket's peer, or, when that peer is one of the
// configured reverse proxies (TRUSTED_PROXIES), the last X-Forwarded-For entry no trusted proxy
// added. A header from anyone else is ignored: it is whatever the client chose to write.
import { ipBytes } from './outbound.ts';

interface Range {
  bytes: number[];
  bits: number;
}

/** Parses "10.0.0.0/8", "::1" or "192.168.1.5" (a bare address is a /32 or /128). */
function parseRange(spec: string): Range | null {
  const [addr, len] = spec.split('/');
  const bytes = ipBytes(addr);
  if (!bytes) return null;
  const max = bytes.length * 8;
  const bits = len === undefined ? max : Number(len);
  if (!Number.isInteger(bits) || bits < 0 || bits > max) return null;
  return { bytes, bits };
}

function inRange(bytes: number[], r: Range): boolean {
  if (bytes.length !== r.bytes.length) return false;
  for (let i = 0, left = r.bits; left > 0; i++, left -= 8) {
    const mask = left >= 8 ? 0xff : (0xff << (8 - left)) & 0xff;
    if ((bytes[i] & mask) !== (r.bytes[i] & mask)) return false;
  }
  return true;
}

/** A function from (socket address, X-Forwarded-For) to the client's address; ranges that do not parse are skipped. */
export function clientIpResolver(trustedProxies: string[]) {
  const ranges = trustedProxies.map(parseRange).filter((r): r is Range => r !== null);
  const trusted = (ip: string) => {
    const b = ipBytes(ip);
    return b !== null && ranges.some((r) => inRange(b, r));
  };
  return (socketAddress: string | null | undefined, forwardedFor: string | null | undefined): string | null => {
    if (!socketAddress) return null;
    if (!forwardedFor || !trusted(socketAddress)) return socketAddress;
    // Right to left: each trusted proxy appended the address it saw; the first untrusted one is the client.
    const hops = forwardedFor
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    for (let i = hops.length - 1; i >= 0; i--) {
      if (!ipBytes(hops[i])) return socketAddress; // garbage in the chain: believe only the socket
      if (!trusted(hops[i])) return hops[i].slice(0, 64);
    }
    return hops[0]?.slice(0, 64) ?? socketAddress;
  };
}
