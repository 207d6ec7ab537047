// A local stand-in for an Evolution API server (v2 routes), for tests and benchmarks.
// Records every call, can fail or slow down per route on demand, checks the global apikey.
import QRCode from 'qrcode';

export type EvolutionRoute =
  | 'sendText'
  | 'sendMedia'
  | 'sendReaction'
  | 'sendPresence'
  | 'create'
  | 'webhookSet'
  | 'connect'
  | 'connectionState'
  | 'logout'
  | 'restart'
  | 'mediaBase64';

export interface EvolutionCall {
  route: EvolutionRoute | 'unknown';
  method: string;
  path: string;
  /** The Evolution instance name from the path (for create: body.instanceName). */
  instance: string | null;
  apikey: string | null;
  body: any;
  /** Date.now() when the request arrived. */
  at: number;
  /** HTTP status the fake answered with. */
  status: number;
}

export interface SentText {
  instance: string;
  number: string;
  text: string;
  apikey: string | null;
  body: any;
  at: number;
  /** The key.id the fake returned. */
  id: string;
}

export interface FakeEvolutionInstance {
  state: 'open' | 'close' | 'connecting';
  webhook: { enabled: boolean; url: string; base64: boolean; events: string[]; byEvents: boolean } | null;
  qrCode: string | null;
}

export interface FakeEvolution {
  url: string;
  apikey: string;
  /** Successful sendText calls, in arrival order. */
  sent: SentText[];
  /** Every request, in arrival order (including failed and unauthorised ones). */
  calls: EvolutionCall[];
  instances: Map<string, FakeEvolutionInstance>;
  /** Media getBase64FromMediaMessage serves, by message key id. */
  media: Map<string, { bytes: Uint8Array; mimetype: string; fileName?: string }>;
  /**
   * The next `times` calls to `route` (or any route with '*') answer `status`; with `after`, that many
   * calls succeed first (e.g. fail the 2nd chunk of a reply).
   */
  fail(
    route: EvolutionRoute | '*',
    status: number,
    times?: number,
    opts?: { retryAfter?: string; body?: unknown; after?: number },
  ): void;
  /** Delay every answer (or one route's) by `ms`; 0 clears. */
  delay(ms: number, route?: EvolutionRoute): void;
  setState(instance: string, state: FakeEvolutionInstance['state']): void;
  /** Texts sent to one number (digits or JID as our side sent it). */
  sentTo(number: string): string[];
  /** Resolves once `sent.length >= n` (rejects after timeoutMs). */
  waitForSent(n: number, timeoutMs?: number): Promise<SentText[]>;
  /** Clears records and scripted failures/delays (instances stay). */
  reset(): void;
  stop(): Promise<void>;
}

export interface FakeEvolutionOptions {
  apikey?: string;
  /** State of an instance first seen through any route but create. Default 'open'. */
  defaultState?: FakeEvolutionInstance['state'];
}

const ROUTES: Array<{ method: string; re: RegExp; route: EvolutionRoute }> = [
  { method: 'POST', re: /^\/message\/sendText\/([^/]+)$/, route: 'sendText' },
  { method: 'POST', re: /^\/message\/sendMedia\/([^/]+)$/, route: 'sendMedia' },
  { method: 'POST', re: /^\/message\/sendReaction\/([^/]+)$/, route: 'sendReaction' },
  { method: 'POST', re: /^\/chat\/sendPresence\/([^/]+)$/, route: 'sendPresence' },
  { method: 'POST', re: /^\/instance\/create$/, route: 'create' },
  { method: 'POST', re: /^\/webhook\/set\/([^/]+)$/, route: 'webhookSet' },
  { method: 'GET', re: /^\/instance\/connect\/([^/]+)$/, route: 'connect' },
  { method: 'GET', re: /^\/instance\/connectionState\/([^/]+)$/, route: 'connectionState' },
  { method: 'DELETE', re: /^\/instance\/logout\/([^/]+)$/, route: 'logout' },
  { method: 'POST', re: /^\/instance\/restart\/([^/]+)$/, route: 'restart' },
  { method: 'POST', re: /^\/chat\/getBase64FromMediaMessage\/([^/]+)$/, route: 'mediaBase64' },
];

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });

const evolutionError = (status: number, message: string | string[]) =>
  json(status, {
    status,
    error:
      status === 401
        ? 'Unauthorized'
        : status === 403
          ? 'Forbidden'
          : status === 404
            ? 'Not Found'
            : status >= 500
              ? 'Internal Server Error'
              : 'Bad Request',
    response: { message: Array.isArray(message) ? message : [message] },
  });

let idCounter = 0;
const newMessageId = () =>
  `3EB0${(Date.now().toString(16) + (idCounter++).toString(16).padStart(6, '0')).toUpperCase()}`;

export async function startFakeEvolution(options: FakeEvolutionOptions = {}): Promise<FakeEvolution> {
  const apikey = options.apikey ?? 'evo-test-key';
  const defaultState = options.defaultState ?? 'open';
  const sent: SentText[] = [];
  const calls: EvolutionCall[] = [];
  const instances = new Map<string, FakeEvolutionInstance>();
  const media = new Map<string, { bytes: Uint8Array; mimetype: string; fileName?: string }>();
  let failures: Array<{
    route: EvolutionRoute | '*';
    status: number;
    left: number;
    skip: number;
    retryAfter?: string;
    body?: unknown;
  }> = [];
  let globalDelay = 0;
  let routeDelays = new Map<EvolutionRoute, number>();
  let sentWaiters: Array<{ n: number; resolve: (s: SentText[]) => void }> = [];

  const ensure = (name: string, state = defaultState): FakeEvolutionInstance => {
    let inst = instances.get(name);
    if (!inst) {
      inst = { state, webhook: null, qrCode: null };
      instances.set(name, inst);
    }
    return inst;
  };

  const takeFailure = (route: EvolutionRoute) => {
    const list = failures;
    const hit = list.find((f) => f.left > 0 && (f.route === route || f.route === '*'));
    if (!hit) return undefined;
    if (hit.skip > 0) {
      hit.skip--;
      return undefined;
    }
    hit.left--;
    return hit;
  };

  async function handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const match = ROUTES.map((r) => ({ r, m: req.method === r.method ? r.re.exec(url.pathname) : null })).find(
      (x) => x.m,
    );
    let body: any;
    const raw = await req.text();
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      body = raw;
    }
    const route = match?.r.route;
    const instance = match?.m?.[1]
      ? decodeURIComponent(match.m[1])
      : route === 'create'
        ? (body?.instanceName ?? null)
        : null;
    const call: EvolutionCall = {
      route: route ?? 'unknown',
      method: req.method,
      path: url.pathname,
      instance,
      apikey: req.headers.get('apikey'),
      body,
      at: Date.now(),
      status: 0,
    };
    calls.push(call);
    const answer = (res: Response) => {
      call.status = res.status;
      return res;
    };

    const wait = (route && routeDelays.get(route)) || globalDelay;
    if (wait > 0) await Bun.sleep(wait);
    if (!route) return answer(evolutionError(404, `Cannot ${req.method} ${url.pathname}`));
    if (call.apikey !== apikey) return answer(evolutionError(401, 'Unauthorized'));
    const failure = takeFailure(route);
    if (failure) {
      if (failure.body !== undefined) {
        return answer(
          json(failure.status, failure.body, failure.retryAfter ? { 'retry-after': failure.retryAfter } : {}),
        );
      }
      const res = evolutionError(failure.status, `scripted failure ${failure.status}`);
      if (failure.retryAfter) res.headers.set('retry-after', failure.retryAfter);
      return answer(res);
    }

    switch (route) {
      case 'sendText': {
        if (typeof body?.number !== 'string' || typeof body?.text !== 'string' || !body.number) {
          return answer(evolutionError(400, ['number and text are required']));
        }
        ensure(instance!);
        const id = newMessageId();
        const rec: SentText = {
          instance: instance!,
          number: body.number,
          text: body.text,
          apikey: call.apikey,
          body,
          at: call.at,
          id,
        };
        sent.push(rec);
        sentWaiters = sentWaiters.filter((w) => (sent.length >= w.n ? (w.resolve(sent.slice()), false) : true));
        const remoteJid = body.number.includes('@') ? body.number : `${body.number.replace(/^\+/, '')}@s.whatsapp.net`;
        return answer(
          json(201, {
            key: { remoteJid, fromMe: true, id },
            pushName: '',
            message: { extendedTextMessage: { text: body.text } },
            messageType: 'extendedTextMessage',
            messageTimestamp: Math.floor(Date.now() / 1000),
            status: 'PENDING',
          }),
        );
      }
      case 'sendMedia':
      case 'sendReaction': {
        ensure(instance!);
        return answer(
          json(201, {
            key: { remoteJid: body?.number ?? body?.key?.remoteJid ?? '', fromMe: true, id: newMessageId() },
            status: 'PENDING',
          }),
        );
      }
      case 'mediaBase64': {
        const m = media.get(String(body?.message?.key?.id ?? ''));
        if (!m) return answer(evolutionError(400, ['Message not found']));
        return answer(
          json(201, {
            mediaType: 'imageMessage',
            fileName: m.fileName ?? 'file',
            mimetype: m.mimetype,
            base64: Buffer.from(m.bytes).toString('base64'),
          }),
        );
      }
      case 'sendPresence': {
        ensure(instance!);
        return answer(json(201, { presence: body?.presence }));
      }
      case 'create': {
        if (typeof instance !== 'string' || !instance) return answer(evolutionError(400, ['instanceName is required']));
        if (instances.has(instance)) return answer(evolutionError(403, [`This name "${instance}" is already in use.`]));
        const inst = ensure(instance, 'connecting');
        inst.qrCode = `2@fake-${instance}-${Date.now()}`;
        const base64 = await QRCode.toDataURL(inst.qrCode);
        return answer(
          json(201, {
            instance: {
              instanceName: instance,
              instanceId: crypto.randomUUID(),
              integration: body?.integration,
              status: 'connecting',
            },
            hash: 'fake-hash',
            qrcode: { pairingCode: null, code: inst.qrCode, base64, count: 1 },
          }),
        );
      }
      case 'webhookSet': {
        const w = body?.webhook;
        if (!w || typeof w.url !== 'string') return answer(evolutionError(400, ['webhook.url is required']));
        const inst = ensure(instance!);
        inst.webhook = {
          enabled: !!w.enabled,
          url: w.url,
          base64: !!w.base64,
          events: w.events ?? [],
          byEvents: !!w.byEvents,
        };
        return answer(json(201, { id: 'fake-webhook', ...inst.webhook }));
      }
      case 'connect': {
        const inst = instances.get(instance!);
        if (!inst) return answer(evolutionError(404, [`The "${instance}" instance does not exist`]));
        if (inst.state === 'open') return answer(json(200, { instance: { instanceName: instance, state: 'open' } }));
        inst.state = 'connecting';
        inst.qrCode = `2@fake-${instance}-${Date.now()}`;
        const base64 = await QRCode.toDataURL(inst.qrCode);
        return answer(json(200, { pairingCode: null, code: inst.qrCode, base64, count: 1 }));
      }
      case 'connectionState': {
        const inst = instances.get(instance!) ?? ensure(instance!);
        return answer(json(200, { instance: { instanceName: instance, state: inst.state } }));
      }
      case 'logout': {
        const inst = instances.get(instance!);
        if (!inst) return answer(evolutionError(404, [`The "${instance}" instance does not exist`]));
        if (inst.state !== 'open') return answer(evolutionError(400, [`The "${instance}" instance is not connected`]));
        inst.state = 'close';
        return answer(json(200, { status: 'SUCCESS', error: false, response: { message: 'Instance logged out' } }));
      }
      case 'restart': {
        const inst = instances.get(instance!);
        if (!inst) return answer(evolutionError(404, [`The "${instance}" instance does not exist`]));
        return answer(json(200, { instance: { instanceName: instance, state: inst.state } }));
      }
    }
  }

  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch: (req) => handle(req),
    error: (err) => evolutionError(500, `fake evolution bug: ${err.message}`),
  });

  const fake: FakeEvolution = {
    url: `http://127.0.0.1:${server.port}`,
    apikey,
    sent,
    calls,
    instances,
    media,
    fail(route, status, times = 1, opts = {}) {
      failures.push({
        route,
        status,
        left: times,
        skip: opts.after ?? 0,
        retryAfter: opts.retryAfter,
        body: opts.body,
      });
    },
    delay(ms, route) {
      if (route) routeDelays.set(route, ms);
      else globalDelay = ms;
    },
    setState(instance, state) {
      ensure(instance).state = state;
    },
    sentTo(number) {
      return sent.filter((s) => s.number === number).map((s) => s.text);
    },
    waitForSent(n, timeoutMs = 5000) {
      if (sent.length >= n) return Promise.resolve(sent.slice());
      return new Promise((resolve, reject) => {
        const t = setTimeout(
          () => reject(new Error(`fake evolution: ${sent.length}/${n} sendText calls after ${timeoutMs} ms`)),
          timeoutMs,
        );
        sentWaiters.push({ n, resolve: (s) => (clearTimeout(t), resolve(s)) });
      });
    },
    reset() {
      sent.length = 0;
      calls.length = 0;
      failures = [];
      globalDelay = 0;
      routeDelays = new Map();
    },
    async stop() {
      server.stop(true);
    },
  };
  return fake;
}
