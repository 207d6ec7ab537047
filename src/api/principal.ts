// What the server knows about each request while it runs: its id, when it started and, once the
// auth hook has checked the key, who is calling. Route modules ask for the caller here.
import { Unauthorized } from '../core/errors.ts';
import type { Principal } from '../services/keys.ts';

export interface RequestInfo {
  id: string;
  start: number;
  principal: Principal | null;
  /** The client's address (socket peer, or X-Forwarded-For from a trusted proxy); null without a socket. */
  ip: string | null;
}

const requests = new WeakMap<Request, RequestInfo>();

/** Starts tracking a request (the server's onRequest hook). */
export function trackRequest(request: Request, id: string, start: number, ip: string | null): RequestInfo {
  const info: RequestInfo = { id, start, principal: null, ip };
  requests.set(request, info);
  return info;
}

export function requestInfo(request: Request): RequestInfo | undefined {
  return requests.get(request);
}

/** The authenticated caller of an /api request (set by the auth hook). */
export function principalOf(request: Request): Principal {
  const p = requests.get(request)?.principal;
  if (!p) throw new Unauthorized('Not authenticated');
  return p;
}
