// Channel webhooks. Authenticity is checked per instance; the answer is sent only after the
// durable inbox write (ack after commit). Credentials for replies always come from the
// database, never from the webhook body.
import { Elysia, t } from 'elysia';
import { parseEvolutionWebhook } from '../channels/evolution/parse.ts';
import { SlackAdapter } from '../channels/slack/adapter.ts';
import type { Gateway } from '../gateway.ts';
import { crashPoint } from '../services/crash.ts';
import { constantTimeEqual } from '../services/ids.ts';
import { ApiError, ErrorSchema } from './errors.ts';

const WebhookAnswer = t.Object(
  {
    status: t.String({ description: 'received | duplicate | ignored' }),
    trace_id: t.Union([t.String(), t.Null()]),
    message: t.String(),
  },
  { description: 'Accepted (after the durable write), duplicate or ignored' },
);

export function webhookRoutes(gw: Gateway) {
  return new Elysia({ name: 'webhooks' })
    .post(
      '/webhook/evolution/:instance',
      async ({ params, query, body, request }) => {
        const inst = gw.instances.getByName(params.instance);
        const unauthorized = new ApiError('UNAUTHORIZED', 'Webhook token missing or wrong for this instance');
        if (inst?.channel !== 'whatsapp-evolution') throw unauthorized; // do not reveal which names exist
        const token = (query as Record<string, string | undefined>).token ?? request.headers.get('x-webhook-token');
        const bodyKey = (body as { apikey?: unknown })?.apikey;
        const evolutionKey = typeof inst.config.evolution_key === 'string' ? inst.config.evolution_key : null;
        const ok =
          (typeof token === 'string' && constantTimeEqual(token, inst.webhookSecret)) ||
          (typeof bodyKey === 'string' && evolutionKey !== null && constantTimeEqual(bodyKey, evolutionKey));
        if (!ok) throw unauthorized;
        // Not silently dropped: the sender keeps the message and retries once the instance is active again.
        if (!inst.isActive)
          throw new ApiError(
            'UNAVAILABLE',
            `Instance '${inst.name}' is inactive; activate it to receive messages`,
            null,
            { 'retry-after': '60' },
          );
        const event = (body as { event?: unknown } | null)?.event;
        if (event !== undefined && event !== null && typeof event !== 'string')
          throw new ApiError('VALIDATION_ERROR', 'event: must be a string', [
            { field: 'event', problem: 'must be a string' },
          ]);
        const { messages, ignored } = parseEvolutionWebhook(body, inst.id);
        if (messages.length === 0)
          return { status: 'ignored', trace_id: null, message: ignored.join('; ') || 'nothing to process' };
        const results = await Promise.all(messages.map((m) => gw.pipeline.ingest(m)));
        crashPoint('after_ack');
        const first = results[0];
        const allDup = results.every((r) => r.status === 'duplicate');
        const shed = results.filter((r) => r.status !== 'duplicate' && r.shed).length;
        const accepted = results.filter((r) => r.status !== 'duplicate').length - shed;
        return {
          status: allDup ? 'duplicate' : 'received',
          trace_id: first.traceId,
          message: allDup
            ? 'Message already received'
            : results.length > 1
              ? // A batch: say what became of it, not only of its first message.
                `${accepted} of ${results.length} messages accepted` +
                (shed ? `, ${shed} shed: conversation backlog full` : '') +
                (results.length - accepted - shed ? `, ${results.length - accepted - shed} already received` : '')
              : first.shed
                ? 'Message accepted but shed: conversation backlog full'
                : 'Message accepted',
        };
      },
      {
        params: t.Object({ instance: t.String({ maxLength: 100, description: 'Instance name' }) }),
        query: t.Object({
          token: t.Optional(t.String({ maxLength: 200, description: "The instance's webhook token" })),
        }),
        body: t.Unknown({ description: 'Evolution API webhook ({event, instance, data, apikey, ...})' }),
        detail: {
          tags: ['webhooks'],
          summary: 'Evolution API webhook',
          security: [],
          description:
            "messages.upsert from an Evolution server. Authenticated by ?token= / x-webhook-token, or by a body apikey equal to the instance's Evolution key. Answered after the durable write.",
        },
        response: { 200: WebhookAnswer, 400: ErrorSchema, 401: ErrorSchema, 503: ErrorSchema },
      },
    )
    .post(
      '/webhook/slack/:instance',
      async ({ params, body, request, set }) => {
        const inst = gw.instances.getByName(params.instance);
        const adapter = inst ? gw.pipeline.adapter(inst.id) : null;
        // An unknown name answers like a bad signature (as Evolution's webhook does): names are not revealed.
        if (inst?.channel !== 'slack')
          throw new ApiError('UNAUTHORIZED', 'invalid Slack request signature or timestamp');
        if (!(adapter instanceof SlackAdapter)) {
          // Cluster: the Slack connection lives on the owner of the instance's shard; pass the signed request on.
          const forwarded = gw.cluster
            ? await gw.cluster.forwardToOwner(inst.id, request, typeof body === 'string' ? body : '')
            : null;
          if (forwarded) return forwarded;
          throw new ApiError('UNAVAILABLE', 'Slack instance is not running', null, { 'retry-after': '5' });
        }
        const answer = await adapter.handleEventsRequest(typeof body === 'string' ? body : '', request.headers);
        set.status = answer.status;
        if (answer.headers) Object.assign(set.headers, answer.headers);
        return answer.body;
      },
      {
        parse: 'text',
        params: t.Object({ instance: t.String({ maxLength: 100, description: 'Instance name' }) }),
        body: t.String({ description: 'Slack Events API request (signed)' }),
        detail: {
          tags: ['webhooks'],
          summary: 'Slack Events API',
          security: [],
          description:
            'Signed with the instance signing secret (v0 HMAC-SHA256, 5-minute window). Acked after the durable write.',
        },
        response: {
          200: t.Unknown({ description: 'Accepted, challenge or ignored' }),
          401: t.Unknown({ description: 'Bad signature, or no such Slack instance' }),
          503: t.Unknown({ description: 'Not running or overloaded' }),
        },
      },
    );
}
