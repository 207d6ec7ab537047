// The pipeline's Prometheus series: what the conversation actors report (agent and send timings,
// retries, dead letters, terminal states, channel status changes) and gauges sampled at scrape
// time from the inbox, the actors, the agent permits and the stream hub.
import type { Database } from 'bun:sqlite';
import type { InboxStore } from '../../db/inbox-store.ts';
import type { StreamHub } from '../stream/hub.ts';
import type { FifoSemaphore } from './fifo-semaphore.ts';
import type { Metrics } from './prometheus.ts';

/** What the gauges sample. */
export interface PipelineGaugeSources {
  db: Database;
  inbox: InboxStore;
  actors(): { active: number; busy: number; passivated: number };
  agentPermits: FifoSemaphore;
  hub: StreamHub;
}

/** Registers the pipeline's series on `mt`; returns the ones the pipeline updates. */
export function pipelineMetrics(mt: Metrics, s: PipelineGaugeSources) {
  const m = {
    agentSeconds: mt.histogram('switchboard_agent_duration_seconds', 'Agent call duration'),
    ttft: mt.histogram('switchboard_agent_time_to_first_token_seconds', 'Agent time to first delta'),
    sendSeconds: mt.histogram('switchboard_send_duration_seconds', 'Channel send duration by channel'),
    sendFailures: mt.counter('switchboard_send_failures_total', 'Failed channel sends by channel'),
    retries: mt.counter('switchboard_retries_total', 'Retried attempts by stage'),
    deadLetters: mt.counter('switchboard_dead_letters_total', 'Messages dead-lettered'),
    duplicates: mt.counter(
      'switchboard_possible_duplicate_sends_total',
      'Parts resent after an interrupted send (possible duplicates)',
    ),
    terminal: mt.counter('switchboard_messages_total', 'Messages by terminal status'),
    reconnects: mt.counter('switchboard_channel_status_changes_total', 'Channel status changes by status and channel'),
    lostConnections: mt.counter(
      'switchboard_channel_reconnects_total',
      'Channel connections lost or restarted (a reconnect follows), by channel and reason',
    ),
    backlog: mt.histogram(
      'switchboard_conversation_backlog',
      'Unfinished messages per conversation (sampled at scrape; conversations with a backlog)',
      [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
    ),
  };
  // The backlog histogram is a snapshot: rebuilt from the inbox's counts on every scrape.
  const renderBacklog = m.backlog.render.bind(m.backlog);
  m.backlog.render = () => {
    m.backlog.series.clear();
    for (const n of s.inbox.backlogSizes()) m.backlog.observe(n);
    return renderBacklog();
  };
  const counters = s.inbox.counters;
  mt.gauge(
    'switchboard_dedupe_hits_total',
    'Redelivered messages recognised as duplicates since start',
    () => counters.duplicates,
  );
  mt.gauge('switchboard_shed_total', 'Messages shed (conversation backlog full) since start', () => counters.shed);
  mt.gauge(
    'switchboard_overloaded_total',
    'Ingress refused with 503 (global backlog full) since start',
    () => counters.overloaded,
  );
  mt.gauge('switchboard_inbox_depth', 'Messages not yet terminal', () => s.inbox.depth);
  mt.gauge('switchboard_inbox_oldest_age_seconds', 'Age of the oldest unfinished message', () => oldestAge(s.db));
  mt.gauge('switchboard_ingest_total', 'Ingest outcomes since start', () => [
    [{ outcome: 'accepted' }, counters.accepted],
    [{ outcome: 'duplicate' }, counters.duplicates],
    [{ outcome: 'shed' }, counters.shed],
    [{ outcome: 'overloaded' }, counters.overloaded],
  ]);
  mt.gauge('switchboard_actors', 'Conversation actors', () => {
    const a = s.actors();
    return [
      [{ state: 'active' }, a.active],
      [{ state: 'busy' }, a.busy],
      [{ state: 'passivated_total' }, a.passivated],
    ];
  });
  mt.gauge('switchboard_agent_permits_in_use', 'Agent calls in flight', () => s.agentPermits.active);
  mt.gauge(
    'switchboard_agent_permits_waiting',
    'Conversations waiting for an agent slot',
    () => s.agentPermits.waiting,
  );
  mt.gauge('switchboard_ws_clients', 'WebSocket clients', () => s.hub.stats().clients);
  mt.gauge(
    'switchboard_ws_resyncs_total',
    'Resyncs sent to lagging WebSocket clients',
    () => s.hub.stats().resyncsTotal,
  );
  return m;
}

export type PipelineMetrics = ReturnType<typeof pipelineMetrics>;

function oldestAge(db: Database): number {
  const r = db
    .query<{ t: string | null }, []>("SELECT MIN(received_at) AS t FROM inbox WHERE status IN ('pending','processing')")
    .get();
  return r?.t ? Math.max(0, (Date.now() - Date.parse(r.t)) / 1000) : 0;
}

/** A reconnect reason as a low-cardinality label (numbers and ids stripped, bounded length). */
export function reasonLabel(reason: string): string {
  return (
    reason
      .toLowerCase()
      .replace(/[0-9a-f]{8,}|\d+/g, 'N')
      .replace(/\s+/g, ' ')
      .trim()
      .slice(0, 48) || 'unknown'
  );
}
