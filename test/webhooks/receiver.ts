// A webhook receiver on loopback, as a subscriber would write one: every request is verified with
// the standardwebhooks library and the subscription's secret(s); a request that does not verify
// is recorded as a failure (and answered 401), so a test can assert there were none.
import { Webhook } from 'standardwebhooks';

export interface Delivery {
  webhookId: string;
  type: string;
  timestamp: string;
  data: Record<string, any>;
  signatures: string[];
  at: number;
}

export interface Receiver {
  url: string;
  /** Verified deliveries, in arrival order (retries and redeliveries included). */
  got: Delivery[];
  /** Requests that did not verify with every secret in `secrets`. */
  unverified: string[];
  /** Each must verify the request on its own (both during a rotation). */
  secrets: string[];
  /** Answer for the next requests (default 200). */
  answer: (d: Delivery) => Response | Promise<Response>;
  stop(): void;
}

export function startReceiver(): Receiver {
  const r: Receiver = {
    url: '',
    got: [],
    unverified: [],
    secrets: [],
    answer: () => new Response('ok'),
    stop: () => server.stop(true),
  };
  const server = Bun.serve({
    hostname: '127.0.0.1',
    port: 0,
    async fetch(req) {
      const body = await req.text();
      const headers = Object.fromEntries(req.headers.entries());
      try {
        if (r.secrets.length === 0) throw new Error('receiver has no secret');
        for (const s of r.secrets) new Webhook(s).verify(body, headers);
      } catch (err) {
        r.unverified.push(`${headers['webhook-id']}: ${String(err)}`);
        return new Response('bad signature', { status: 401 });
      }
      const parsed = JSON.parse(body) as { type: string; timestamp: string; data: Record<string, unknown> };
      const d: Delivery = {
        webhookId: headers['webhook-id'],
        ...parsed,
        signatures: headers['webhook-signature'].split(' '),
        at: Date.now(),
      };
      r.got.push(d);
      return r.answer(d);
    },
  });
  r.url = `http://127.0.0.1:${server.port}/hook`;
  return r;
}

export async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}
