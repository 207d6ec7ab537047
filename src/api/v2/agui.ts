// POST /api/v2/agui/:instance — Switchboard as an AG-UI agent. The last user message of a
// RunAgentInput enters the instance's conversation for `threadId` through the same durable
// inbox and conversation actor as channel messages; the reply streams back as AG-UI SSE.
import { Elysia, t } from 'elysia';
import { VIA_API } from '../../channels/api/index.ts';
import type { InboundMessage } from '../../core/message.ts';
import type { Pipeline } from '../../engine/pipeline.ts';
import type { InboxRow } from '../../services/inbox.ts';
import { conversationIdFor } from '../../services/inbox.ts';
import type { SettingsService } from '../../services/settings.ts';
import { ApiError, errorResponses } from '../errors.ts';
import { principalOf } from '../principal.ts';
import { type InstanceLookup, visibleInstance } from './instances.ts';

const RunAgentInput = t.Object(
  {
    threadId: t.String({ minLength: 1, maxLength: 200 }),
    runId: t.String({ minLength: 1, maxLength: 200 }),
    messages: t.Array(
      t.Object(
        {
          id: t.Optional(t.String({ maxLength: 200 })),
          role: t.String({ maxLength: 20 }),
          content: t.Optional(t.Any()),
        },
        { additionalProperties: true },
      ),
      { maxItems: 1000 },
    ),
    tools: t.Optional(t.Array(t.Any())),
    context: t.Optional(t.Array(t.Any())),
    state: t.Optional(t.Any()),
    forwardedProps: t.Optional(t.Any()),
  },
  {
    additionalProperties: true,
    description: "AG-UI RunAgentInput; the last user message is sent to the instance's agent",
  },
);

type Frame = { type: string; payload?: Record<string, unknown> };

/**
 * What the AG-UI endpoint uses: instance lookup, the pipeline's ingest, inbox, stream hub and terminal
 * hook, and the settings (the reply's time budget).
 */
export interface AguiDeps extends InstanceLookup {
  pipeline: Pick<Pipeline, 'ingest' | 'inbox' | 'hub' | 'onTerminal'>;
  settings: SettingsService;
}

export function aguiRoutes(gw: AguiDeps) {
  // One terminal listener for all open runs: a message that ends without a RUN_* event (blocked, shed) still ends its stream.
  const waiters = new Map<string, (row: InboxRow, status: string) => void>();
  gw.pipeline.onTerminal((row, status) => waiters.get(row.id)?.(row, status));

  return new Elysia({ name: 'agui' }).post(
    '/api/v2/agui/:instance',
    async ({ params, body, request }) => {
      const inst = visibleInstance(gw, request, params.instance);
      const input = body as { threadId: string; runId: string; messages: Array<{ role: string; content?: unknown }> };
      const lastUser = [...input.messages].reverse().find((m) => m.role === 'user');
      const text =
        typeof lastUser?.content === 'string'
          ? lastUser.content
          : Array.isArray(lastUser?.content)
            ? (lastUser!.content as Array<{ type?: string; text?: string }>)
                .filter((p) => p?.type === 'text' && typeof p.text === 'string')
                .map((p) => p.text)
                .join('\n')
            : '';
      if (!text.trim())
        throw new ApiError('VALIDATION_ERROR', 'messages must end with a user message that has text content', [
          { field: 'messages', problem: 'no user message with text' },
        ]);
      if (!inst.isActive) throw new ApiError('CONFLICT', `Instance '${inst.name}' is inactive`);

      const chat = { chatId: `agui:${input.threadId}`, kind: 'direct' as const };
      const conversationId = conversationIdFor(inst.id, chat);
      const msg: InboundMessage = {
        instanceId: inst.id,
        providerMessageId: `agui:${input.threadId}:${input.runId}`,
        chat,
        sender: { id: `agui:${principalOf(request).keyId}`, name: 'AG-UI client' },
        text,
        contentType: 'text',
        timestamp: Date.now(),
        extra: { via: VIA_API, threadId: input.threadId, runId: input.runId },
      };

      const encoder = new TextEncoder();
      let controller!: ReadableStreamDefaultController<Uint8Array>;
      let done = false;
      let turnId: string | null = null;
      const early: Frame[] = [];
      const write = (event: Record<string, unknown>) => {
        if (!done) controller.enqueue(encoder.encode(`data: ${JSON.stringify(event)}\n\n`));
      };
      const end = () => {
        if (done) return;
        done = true;
        handle.detach();
        if (turnId) waiters.delete(turnId);
        clearTimeout(deadline);
        controller.close();
      };
      // Map the gateway's turn events to the client's thread and run.
      const forward = (f: Frame) => {
        const p = f.payload;
        if (!p || p.turnId !== turnId) return;
        const { instanceId: _i, conversationId: _c, turnId: _t, seq: _s, ...event } = p;
        if (event.type === 'RUN_STARTED' || event.type === 'RUN_FINISHED') {
          // AG-UI's run events carry the client's thread and run, and no message id.
          delete event.messageId;
          Object.assign(event, { threadId: input.threadId, runId: input.runId });
        }
        write(event);
        if (event.type === 'RUN_FINISHED' || event.type === 'RUN_ERROR') end();
      };
      const handle = gw.pipeline.hub.attach(
        {
          send(data: string) {
            const f = JSON.parse(data) as Frame;
            if (f.type !== 'event') return data.length;
            if (turnId === null) early.push(f);
            else forward(f);
            return data.length;
          },
          close: () => end(),
        },
        { instanceIds: [inst.id] },
      );
      handle.onMessage({ type: 'subscribe', channels: ['conversations'], filters: { conversationId } });
      const budgetMs = (inst.agent.timeoutSeconds * gw.settings.value<number>('pipeline.maxAttempts') + 60) * 1000;
      const deadline = setTimeout(() => {
        write({
          type: 'RUN_ERROR',
          message: 'timed out waiting for the reply; it will still be delivered to the conversation',
        });
        end();
      }, budgetMs);

      const stream = new ReadableStream<Uint8Array>({
        start(c) {
          controller = c;
        },
        cancel() {
          // The client went away; the message is durable and still completes.
          done = true;
          handle.detach();
          if (turnId) waiters.delete(turnId);
          clearTimeout(deadline);
        },
      });

      let result;
      try {
        result = await gw.pipeline.ingest(msg);
      } catch (err) {
        handle.detach();
        clearTimeout(deadline);
        throw err;
      }
      if (result.shed) {
        // The conversation's backlog is full: the run will never be answered, so say so now.
        handle.detach();
        clearTimeout(deadline);
        throw new ApiError(
          'RATE_LIMITED',
          'This thread has too many unanswered messages; retry later',
          { traceId: result.traceId },
          { 'retry-after': '5' },
        );
      }
      turnId = result.traceId;
      const finishWithRow = (row: InboxRow, status: string) => {
        if (done) return;
        if (status === 'completed' && row.response_text !== null) {
          write({ type: 'RUN_STARTED', threadId: input.threadId, runId: input.runId });
          write({ type: 'TEXT_MESSAGE_START', messageId: row.id, role: 'assistant' });
          write({ type: 'TEXT_MESSAGE_CONTENT', messageId: row.id, delta: row.response_text });
          write({ type: 'TEXT_MESSAGE_END', messageId: row.id });
          write({
            type: 'RUN_FINISHED',
            threadId: input.threadId,
            runId: input.runId,
            result: { text: row.response_text },
          });
        } else {
          write({ type: 'RUN_ERROR', message: row.error ?? `message ended ${status}` });
        }
        end();
      };
      waiters.set(turnId, (row, status) => {
        // Give the hub's RUN_FINISHED (coalesced) a moment to arrive first.
        setTimeout(() => finishWithRow(gw.pipeline.inbox.get(row.seq) ?? row, status), 100);
      });
      for (const f of early.splice(0)) forward(f);
      if (result.status === 'duplicate') {
        const row = gw.pipeline.inbox.get(result.seq);
        if (row && row.status !== 'pending' && row.status !== 'processing') finishWithRow(row, row.status);
      }
      return new Response(stream, {
        headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' },
      });
    },
    {
      params: t.Object({ instance: t.String({ maxLength: 200, description: 'Instance id or name' }) }),
      body: RunAgentInput,
      detail: {
        tags: ['streaming'],
        summary: 'Chat through the gateway as an AG-UI agent',
        description:
          'Body is AG-UI RunAgentInput; the answer is an AG-UI event stream (text/event-stream). The run is durable: a client that disconnects does not cancel it, and a repeated runId returns the stored reply.',
      },
      response: { 200: t.String({ description: 'text/event-stream of AG-UI events' }), ...errorResponses },
    },
  );
}
