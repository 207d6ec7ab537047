// Channel webhooks, one route per channel that declares one (POST /webhook/<path>/:instance).
// Authenticity is checked per instance; the answer is sent only after the durable inbox write
// (ack after commit). Credentials for replies always come from the database, never from the
// webhook body.
import { Elysia, t } from 'elysia';
import { CHANNELS } from '../channels/registry.ts';
import type { ChannelDefinition, ChannelWebhook } from '../channels/types.ts';
import type { Cluster } from '../cluster/index.ts';
import type { Pipeline } from '../engine/pipeline.ts';
import { crashPoint } from '../services/crash.ts';
import { constantTimeEqual } from '../services/ids.ts';
import type { InstanceService } from '../services/instances.ts';
import { ApiError, ErrorSchema } from './errors.ts';

const WebhookAnswer = t.Object(
  {
    status: t.String({ description: 'received | duplicate | ignored' }),
    trace_id: t.Union([t.String(), t.Null()]),
    message: t.String(),
  },
  { description: 'Accepted (after the durable write), duplicate or ignored' },
);

/** What the webhook routes use: instances by name, the pipeline's ingest and adapters, forwarding to the owner. */
export interface WebhookRouteDeps {
  instances: InstanceService;
  pipeline: Pick<Pipeline, 'ingest' | 'adapter'>;
  /** Read on each request (the gateway sets it once the cluster started); null in embedded mode. */
  cluster: Pick<Cluster, 'forwardToOwner'> | null;
}

const InstanceParam = t.Object({ instance: t.String({ maxLength: 100, description: 'Instance name' }) });

/** The gateway authenticates and parses the JSON body, then ingests the messages. */
function parsedWebhook(gw: WebhookRouteDeps, def: ChannelDefinition, hook: Extract<ChannelWebhook, { mode: 'parse' }>) {
  return new Elysia({ name: `webhook-${def.kind}` }).post(
    `/webhook/${hook.path}/:instance`,
    async ({ params, query, body, request }) => {
      const inst = gw.instances.getByName(params.instance);
      // Made only when refused: an Error (with its stack) per accepted webhook is measurable CPU.
      const unauthorized = () => new ApiError('UNAUTHORIZED', 'Webhook token missing or wrong for this instance');
      if (inst?.channel !== def.kind) throw unauthorized(); // do not reveal which names exist
      const token = (query as Record<string, string | undefined>).token ?? request.headers.get('x-webhook-token');
      const ok =
        (typeof token === 'string' && constantTimeEqual(token, inst.webhookSecret)) ||
        hook.authenticates?.(inst, body) === true;
      if (!ok) throw unauthorized();
      // Not silently dropped: the sender keeps the message and retries once the instance is active again.
      if (!inst.isActive)
        throw new ApiError(
          'UNAVAILABLE',
          `Instance '${inst.name}' is inactive; activate it to receive messages`,
          null,
          {
            'retry-after': '60',
          },
        );
      const { messages, ignored } = hook.parse(body, inst.id);
      if (messages.length === 0)
        return { status: 'ignored', trace_id: null, message: ignored.join('; ') || 'nothing to process' };
      const results = await Promise.all(messages.map((m) => gw.pipeline.ingest(m)));
      crashPoint('after_ack');
      const first = results[0];
      const allDup = results.every((r) => r.status === 'duplicate');
      const shed = results.filter((r) => r.status !== 'duplicate' && r.shed).length;
      const accepted = results.filter((r) => r.status !== 'duplicate').length - shed;
      const duplicates = results.length - accepted - shed;
      return {
        status: allDup ? 'duplicate' : 'received',
        trace_id: first.traceId,
        message: allDup
          ? 'Message already received'
          : results.length > 1
            ? // A batch: say what became of it, not only of its first message.
              `${accepted} of ${results.length} messages accepted` +
              (shed ? `, ${shed} shed: conversation backlog full` : '') +
              (duplicates ? `, ${duplicates} already received` : '')
            : first.shed
              ? 'Message accepted but shed: conversation backlog full'
              : 'Message accepted',
      };
    },
    {
      params: InstanceParam,
      query: t.Object({
        token: t.Optional(t.String({ maxLength: 200, description: "The instance's webhook token" })),
      }),
      body: t.Unknown({ description: hook.docs.body }),
      detail: { tags: ['webhooks'], summary: hook.docs.summary, security: [], description: hook.docs.description },
      response: { 200: WebhookAnswer, 400: ErrorSchema, 401: ErrorSchema, 503: ErrorSchema },
    },
  );
}

/** The raw request goes to the running adapter, which verifies and ingests it. */
function adapterWebhook(
  gw: WebhookRouteDeps,
  def: ChannelDefinition,
  hook: Extract<ChannelWebhook, { mode: 'adapter' }>,
) {
  return new Elysia({ name: `webhook-${def.kind}` }).post(
    `/webhook/${hook.path}/:instance`,
    async ({ params, body, request, set }) => {
      const inst = gw.instances.getByName(params.instance);
      const handle = hook.handler(inst ? gw.pipeline.adapter(inst.id) : null);
      // An unknown name answers like a bad signature (as the token-checked webhooks do): names are not revealed.
      if (inst?.channel !== def.kind) throw new ApiError('UNAUTHORIZED', `invalid ${def.name} request signature`);
      if (!handle) {
        // Cluster: the connection lives on the owner of the instance's shard; pass the request on.
        const forwarded = gw.cluster
          ? await gw.cluster.forwardToOwner(inst.id, request, typeof body === 'string' ? body : '')
          : null;
        if (forwarded) return forwarded;
        throw new ApiError('UNAVAILABLE', `${def.name} instance is not running`, null, { 'retry-after': '5' });
      }
      const answer = await handle(typeof body === 'string' ? body : '', request.headers);
      set.status = answer.status;
      if (answer.headers) Object.assign(set.headers, answer.headers);
      return answer.body;
    },
    {
      parse: 'text',
      params: InstanceParam,
      body: t.String({ description: hook.docs.body }),
      detail: { tags: ['webhooks'], summary: hook.docs.summary, security: [], description: hook.docs.description },
      response: {
        200: t.Unknown({ description: 'Accepted, challenge or ignored' }),
        401: t.Unknown({ description: 'Bad signature, or no such instance' }),
        503: t.Unknown({ description: 'Not running or overloaded' }),
      },
    },
  );
}

/**
 * A subscription handshake at GET on the webhook's path, answered from the stored config (the
 * adapter need not run). An unknown name is refused like a wrong token: names are not revealed.
 */
function webhookHandshake(
  gw: WebhookRouteDeps,
  def: ChannelDefinition,
  hook: Extract<ChannelWebhook, { mode: 'adapter' }>,
  handshake: NonNullable<Extract<ChannelWebhook, { mode: 'adapter' }>['handshake']>,
) {
  return new Elysia({ name: `webhook-handshake-${def.kind}` }).get(
    `/webhook/${hook.path}/:instance`,
    ({ params, query, set }) => {
      const inst = gw.instances.getByName(params.instance);
      const challenge =
        inst?.channel === def.kind ? handshake(inst, query as Record<string, string | undefined>) : null;
      if (challenge === null) throw new ApiError('FORBIDDEN', 'Verify token missing or wrong for this instance');
      set.headers['content-type'] = 'text/plain; charset=utf-8';
      return challenge;
    },
    {
      params: InstanceParam,
      query: t.Record(t.String(), t.String({ maxLength: 500 })),
      detail: {
        tags: ['webhooks'],
        summary: `${hook.docs.summary}: subscription handshake`,
        security: [],
        description: 'The platform checks the callback URL: answers its challenge when the verify token matches.',
      },
      response: {
        200: t.String({ description: 'The challenge, as text/plain' }),
        403: ErrorSchema,
      },
    },
  );
}

export function webhookRoutes(gw: WebhookRouteDeps) {
  const app = new Elysia({ name: 'webhooks' });
  for (const def of CHANNELS) {
    const hook = def.webhook;
    if (hook?.mode === 'parse') app.use(parsedWebhook(gw, def, hook));
    else if (hook?.mode === 'adapter') {
      app.use(adapterWebhook(gw, def, hook));
      if (hook.handshake) app.use(webhookHandshake(gw, def, hook, hook.handshake));
    }
  }
  return app;
}
