// v1 compatibility: POST /api/v1/instance/{name}/send-text (Omni v1; note the singular path).
import { Elysia, t } from 'elysia';
import { ErrorSchema, errorResponses, invalid } from '../errors.ts';
import { visibleInstance } from '../v2/instances.ts';
import { type MessagesV2Deps, sendFor } from '../v2/messages.ts';

const V1SendResult = t.Object(
  {
    success: t.Boolean(),
    message_id: t.String(),
    external_message_id: t.Union([t.String(), t.Null()]),
    status: t.String(),
  },
  { description: 'Send result (v1 shape)' },
);

/** What the v1 send route uses: the same as the v2 send API (instance lookup, the send service). */
export type SendV1Deps = MessagesV2Deps;

export function sendV1(gw: SendV1Deps) {
  return new Elysia({ name: 'send-v1', prefix: '/api/v1/instance' }).post(
    '/:name/send-text',
    async ({ params, body, request, set }) => {
      const to = body.phone_number ?? body.number;
      if (!to)
        throw invalid('phone_number (or number) is required', [{ field: 'phone_number', problem: 'is required' }]);
      const inst = visibleInstance(gw, request, params.name);
      const r = await sendFor(gw, request, set, inst, to, { text: body.text }, 'text');
      return { success: true, message_id: r.messageId, external_message_id: r.externalMessageId, status: r.status };
    },
    {
      params: t.Object({ name: t.String({ maxLength: 200, description: 'Instance name' }) }),
      body: t.Object({
        phone_number: t.Optional(t.String({ minLength: 1, maxLength: 200 })),
        number: t.Optional(t.String({ minLength: 1, maxLength: 200, description: 'Alias of phone_number' })),
        text: t.String({ minLength: 1, maxLength: 100_000 }),
      }),
      detail: {
        tags: ['messages'],
        summary: 'Send text (v1)',
        description:
          'Omni v1 compatible send. Same delivery as POST /api/v2/messages (ordered with agent replies; Idempotency-Key honoured).',
      },
      response: { 200: V1SendResult, 202: V1SendResult, ...errorResponses, 502: ErrorSchema, 503: ErrorSchema },
    },
  );
}
