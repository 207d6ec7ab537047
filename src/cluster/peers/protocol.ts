// How one node asks another: the headers that mark and sign a peer request, the caller's
// credentials passed along, and what gathered reads need of the peer directory. A leaf module
// (no Redis client), so the API's gathered reads load it in embedded mode too.

/** Marks a request one node passed to another, so the receiver answers from its own data only. */
export const FORWARDED_HEADER = 'x-switchboard-forwarded-by';
/** HMAC of a peer request with a key derived from CLUSTER_SECRET: lets a node recognise its peers' requests. */
export const PEER_SIGNATURE_HEADER = 'x-switchboard-peer-signature';

export interface Peer {
  id: string;
  url: string;
}

/** What a gathered read needs of the cluster: whom to ask, and how to sign the request. */
export interface PeerDirectory {
  /**
   * Live peers with a verified URL, and how many live node entries were not trusted (no valid MAC):
   * a read gathered without them is partial.
   */
  peerList(): Promise<{ peers: Peer[]; untrusted: number }>;
  /** Headers for a request to a peer: who forwards it, and a signature the peer can check. */
  peerHeaders(method: string, pathAndQuery: string): Record<string, string>;
}

/**
 * Path and query to send a peer (`search` replaces the request's query) and the caller's
 * credentials. A browser's `?apiKey=` goes as the x-api-key header, never in the forwarded query:
 * peers are often asked with a query built here, and a key does not belong in a URL.
 */
export function peerRequestParts(
  request: Request,
  search?: URLSearchParams,
): { path: string; credentials: Record<string, string> } {
  const u = new URL(request.url);
  const credentials: Record<string, string> = {};
  for (const h of ['x-api-key', 'authorization']) {
    const v = request.headers.get(h);
    if (v) credentials[h] = v;
  }
  const fromQuery = u.searchParams.get('apiKey');
  if (fromQuery && !credentials['x-api-key']) credentials['x-api-key'] = fromQuery;
  const q = new URLSearchParams(search ?? u.searchParams);
  q.delete('apiKey');
  const qs = q.toString();
  return { path: u.pathname + (qs ? `?${qs}` : ''), credentials };
}
