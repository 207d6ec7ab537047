// One interface for every agent protocol: a request becomes a stream of events ending in the
// final text (or an error).

export interface AgentRequest {
  /** Seed contract fields. */
  userId: string; // e.g. "whatsapp:+15551234567"
  sessionId: string; // stable per conversation
  message: string;
  context: { channel: string; instance: string; source: string };
  sessionOrigin: string; // e.g. "whatsapp"
  /** Derived from instance + provider message id; the same on every retry. */
  idempotencyKey: string;
  /** Our message id (AG-UI runId is derived from it). */
  messageId: string;
  senderName?: string;
  /**
   * A batched turn (conversation modes collect/interrupt): every message it answers, in order.
   * `message` is then their texts joined with newlines; `messageId` is the last one's.
   */
  messages?: Array<{ id: string; text: string; time: string }>;
}

export type AgentEvent =
  | { type: 'start'; runId?: string }
  | { type: 'delta'; text: string }
  /** A new text message began inside the same run (joined to the previous with a blank line). */
  | { type: 'message_break' }
  | { type: 'final'; text: string }
  | { type: 'error'; message: string; retryable: boolean; status?: number };

export interface AgentClient {
  run(req: AgentRequest, signal: AbortSignal): AsyncIterable<AgentEvent>;
}

/** Thrown (or yielded as an error event) for failures; retryable decides whether the pipeline retries. */
export class AgentError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'AgentError';
  }
}
