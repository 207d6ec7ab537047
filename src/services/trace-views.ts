// v1 (setup guide) and v2 views of a trace.
import type { TraceRecord } from './traces.ts';

function userId(r: TraceRecord): string {
  return r.sender_phone ? `whatsapp:${r.sender_phone}` : r.sender_id;
}

export function v1Trace(r: TraceRecord) {
  return {
    trace_id: r.id,
    instance_id: r.instance_name,
    user_id: userId(r),
    message_content: r.text,
    response_content: r.response_text,
    status: r.status,
    duration_ms: r.duration_ms,
    created_at: r.received_at,
    completed_at: r.completed_at,
    evolution_api_success: r.channel_success === null ? null : r.channel_success === 1,
    error: r.error,
    possible_duplicate: r.possible_duplicate > 0,
    steps: r.steps.map((s) => ({
      step: s.step,
      status: s.status,
      timestamp: s.at,
      ...(s.durationMs !== null ? { duration_ms: s.durationMs } : {}),
      // The guide's trace names the instance on this step; read from the row, not stored per step.
      ...(s.step === 'instance_validated' ? { instance_name: r.instance_name } : {}),
      ...(s.details ?? {}),
    })),
  };
}

/**
 * The attempts made. The stored count is the failed attempts (it is the retry budget: the
 * pipeline adds one when an attempt fails), so a message answered on the first try stored 0; the
 * attempt that completed it counts too.
 */
export function attemptsMade(r: Pick<TraceRecord, 'attempts' | 'status'>): number {
  return r.status === 'completed' ? r.attempts + 1 : r.attempts;
}

export function v2Trace(r: TraceRecord) {
  return {
    id: r.id,
    instanceId: r.instance_id,
    instanceName: r.instance_name,
    conversationId: r.conversation_id,
    providerMessageId: r.provider_message_id,
    kind: r.kind,
    sender: { id: r.sender_id, name: r.sender_name, phone: r.sender_phone },
    text: r.text,
    contentType: r.content_type,
    responseText: r.response_text,
    status: r.status,
    attempts: attemptsMade(r),
    error: r.error,
    channelSuccess: r.channel_success === null ? null : r.channel_success === 1,
    possibleDuplicate: r.possible_duplicate > 0,
    durationMs: r.duration_ms,
    receivedAt: r.received_at,
    completedAt: r.completed_at,
    steps: r.steps,
  };
}
