// Peers: each node advertises its URL in its heartbeat (CLUSTER_ADVERTISE_URL, else
// http://HOST:PORT as bound), with a MAC of (id, url) keyed by CLUSTER_SECRET: an entry without a
// valid one is never contacted (anyone who can write to Redis could otherwise name a URL that
// receives callers' API keys). A forwarded request carries FORWARDED_HEADER and is never passed on
// again; PEER_SIGNATURE_HEADER proves it came from a node with the same secret.
// - Reads: a GET this node cannot answer (a trace that lives on its instance's owner) is asked of
//   every live peer in parallel with the caller's own key; first 200 wins (fromPeers). Lists are
//   gathered and merged in ./gather.ts and ./gather-persons.ts; routes declare them in ./gathered.ts.
// - Webhooks whose verification needs the channel connection (Slack Events) are forwarded to the
//   shard owner with the raw body and signature headers; the owner verifies and answers.
import { hostname } from 'node:os';
import type { ClusterContext } from '../context.ts';
import {
  FORWARDED_HEADER,
  PEER_SIGNATURE_HEADER,
  type Peer,
  type PeerDirectory,
  peerRequestParts,
} from './protocol.ts';

const startedAt = new Date().toISOString();

export class Peers implements PeerDirectory {
  private url: string | null;
  private cache: { at: number; peers: Peer[]; untrusted: number } | null = null;
  /** Node entries whose URL failed its MAC (id + URL), logged once each. */
  private untrustedUrls = new Set<string>();

  constructor(
    private ctx: ClusterContext,
    /** Live members at the last heartbeat. */
    private live: () => readonly string[],
  ) {
    this.url = ctx.o.advertiseUrl ?? null;
  }

  /** Called once the HTTP server listens (port 0 → the real port), unless CLUSTER_ADVERTISE_URL is set. */
  advertisePort(port: number): void {
    if (this.url || !port) return;
    const host = this.ctx.host.config.host;
    const h =
      host === '0.0.0.0' || host === '::'
        ? hostname()
        : host.includes(':') && !host.startsWith('[')
          ? `[${host}]`
          : host;
    this.url = `http://${h}:${port}`;
  }

  /** This node's heartbeat info: its URL with the MAC that lets peers trust it. */
  heartbeatInfo(): string {
    const { ctx } = this;
    const mac = this.url ? ctx.keys.signNode(ctx.node, this.url) : null;
    return JSON.stringify({
      pid: process.pid,
      host: hostname(),
      port: ctx.host.config.port,
      url: this.url,
      mac,
      startedAt: startedAt,
    });
  }

  peerHeaders(method: string, pathAndQuery: string): Record<string, string> {
    return { [FORWARDED_HEADER]: this.ctx.node, [PEER_SIGNATURE_HEADER]: this.ctx.keys.signPeer(method, pathAndQuery) };
  }

  /** True for a request signed by a node with the same CLUSTER_SECRET within the last 30 s (the forwarded-by header alone proves nothing). */
  verifyPeer(request: Request): boolean {
    const sig = request.headers.get(PEER_SIGNATURE_HEADER);
    if (!sig) return false;
    const u = new URL(request.url);
    return this.ctx.keys.verifyPeer(sig, request.method, u.pathname + u.search);
  }

  /** Live peers with an advertised URL (heartbeat info), cached for one renew interval. */
  async peers(): Promise<Peer[]> {
    return (await this.peerList()).peers;
  }

  async peerList(): Promise<{ peers: Peer[]; untrusted: number }> {
    const { ctx } = this;
    const now = ctx.now();
    if (this.cache && now - this.cache.at < ctx.renewMs) return this.cache;
    const others = this.live().filter((n) => n !== ctx.node);
    const infos = others.length ? await ctx.cmd.mget(...others.map((n) => ctx.k(`node:${n}`))) : [];
    const peers: Peer[] = [];
    let untrusted = 0;
    others.forEach((id, i) => {
      const url = this.trustedUrl(id, infos[i]);
      if (url) peers.push({ id, url });
      else if (infos[i]) untrusted++;
    });
    this.cache = { at: now, peers, untrusted };
    return this.cache;
  }

  /**
   * Gathered read: a GET this node cannot answer (e.g. a trace that lives on the node owning its
   * instance's shard) is asked of every live peer in parallel, with the caller's own credentials;
   * the first 200 answer is returned (its JSON body), or null when no peer has it. A request that
   * already came from a peer is never passed on again.
   */
  async fromPeers(request: Request, timeoutMs = 2000): Promise<unknown | null> {
    if (request.method !== 'GET' || request.headers.has(FORWARDED_HEADER)) return null;
    const peers = await this.peers().catch(() => []);
    if (!peers.length) return null;
    const { path, credentials } = peerRequestParts(request);
    const headers: Record<string, string> = {
      ...this.peerHeaders('GET', path),
      accept: 'application/json',
      ...credentials,
    };
    const ask = async (p: { url: string }) => {
      const res = await fetch(p.url + path, { headers, signal: AbortSignal.timeout(timeoutMs) });
      if (res.status !== 200) throw new Error(String(res.status));
      return (await res.json()) as unknown;
    };
    try {
      return await Promise.any(peers.map(ask));
    } catch {
      return null;
    }
  }

  /** Base URL of the node holding the lease of an instance's shard; null when that is this node or unknown. */
  async ownerUrl(instanceId: string): Promise<string | null> {
    const { ctx } = this;
    const holder = await ctx.cmd.get(ctx.k(`lease:${ctx.shardOfInstance(instanceId)}`));
    if (!holder || holder === ctx.node) return null;
    return this.trustedUrl(holder, await ctx.cmd.get(ctx.k(`node:${holder}`)));
  }

  /**
   * The URL in a node's heartbeat info when its MAC (CLUSTER_SECRET) proves a node wrote it, else
   * null. A refused URL is logged once.
   */
  private trustedUrl(id: string, info: string | null | undefined): string | null {
    const v = info ? parseInfo(info) : null;
    if (typeof v?.url !== 'string' || !v.url) return null;
    if (this.ctx.keys.verifyNode(id, v.url, v.mac)) return v.url;
    const seen = `${id}\n${v.url}`;
    if (!this.untrustedUrls.has(seen)) {
      if (this.untrustedUrls.size >= 1000) this.untrustedUrls.clear();
      this.untrustedUrls.add(seen);
      this.ctx.host.log.warn(
        { node: id, url: v.url },
        'cluster: a node entry in Redis advertises a URL without a valid MAC of this CLUSTER_SECRET (written by something other than a node, or a node with another secret); never contacted',
      );
    }
    return null;
  }

  /**
   * Passes a webhook this node cannot serve (its channel connection lives on the owner, e.g. the
   * Slack Events API verified by the owner's adapter) to the owner: same path, raw body and headers.
   * Null when the request already came from a peer or no owner is reachable.
   */
  async forwardToOwner(instanceId: string, request: Request, rawBody: string): Promise<Response | null> {
    if (request.headers.has(FORWARDED_HEADER)) return null;
    const url = await this.ownerUrl(instanceId).catch(() => null);
    if (!url) return null;
    const headers = new Headers();
    request.headers.forEach((v, k) => {
      if (k === 'content-type' || k === 'user-agent' || k.startsWith('x-slack-')) headers.set(k, v);
    });
    headers.set(FORWARDED_HEADER, this.ctx.node);
    const u = new URL(request.url);
    try {
      const res = await fetch(url + u.pathname + u.search, {
        method: request.method,
        headers,
        body: rawBody,
        signal: AbortSignal.timeout(10_000),
      });
      const out = new Headers();
      for (const h of ['content-type', 'retry-after']) {
        const v = res.headers.get(h);
        if (v) out.set(h, v);
      }
      return new Response(await res.text(), { status: res.status, headers: out });
    } catch (err) {
      this.ctx.host.log.warn({ err: String(err), owner: url }, 'cluster: forwarding to the owner failed');
      return null;
    }
  }
}

/** A node's heartbeat info as stored in Redis; anything that is not a JSON object reads as null. */
export function parseInfo(text: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(text) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
