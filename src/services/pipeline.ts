// Wires the message path: inbox → conversation actors (supervised) → agents → channels, plus
// the instance actors that own channel connections, the stream hub and the pipeline metrics.
import type { Database } from 'bun:sqlite';
import type { Logger } from 'pino';
import { ConversationActor, type ConversationDeps, type ConversationMsg } from '../../actors/conversation.ts';
import { InstanceActor } from '../../actors/instance.ts';
import type { Clock, Timer } from '../../actors/runtime/clock.ts';
import { Supervisor } from '../../actors/runtime/supervisor.ts';
import { InboxStore } from '../../db/inbox-store.ts';
import { createAgentClient } from '../agents/index.ts';
import type { AgentClient } from '../agents/types.ts';
import { type AdapterDeps, type AdapterFactory, DEFAULT_FACTORIES } from '../channels/registry.ts';
import type { ChannelAdapter } from '../channels/types.ts';
import type { Config } from '../config.ts';
import type { AccessDecision, TerminalInfo } from '../core/conversation.ts';
import type { Instance, InstanceStatus } from '../core/instance.ts';
import type { ChannelKind, DeliveryStatus, InboundMessage } from '../core/message.ts';
import { StreamHub } from '../stream/hub.ts';
import type { InboxRow, IngestOutcome } from './inbox.ts';
import type { InstanceService } from './instances.ts';
import { Metrics } from './metrics.ts';
import { Semaphore } from './semaphore.ts';
import type { SettingsService } from './settings.ts';
import { TraceService } from './traces.ts';

export interface PipelineOptions {
  db: Database;
  config: Config;
  clock: Clock;
  log: Logger;
  fetch: typeof fetch;
  instances: InstanceService;
  settings: SettingsService;
  factories?: Partial<Record<ChannelKind, AdapterFactory>>;
  adapterDeps?: Partial<AdapterDeps>;
  /** Overrides agent clients (tests). */
  agentFor?: (inst: Instance) => AgentClient;
}

export type { TerminalInfo } from '../core/conversation.ts';

/** Listeners for things other subsystems record (events, persons): called after each terminal state. */
export type TerminalListener = (
  row: InboxRow,
  status: string,
  inst: Instance | null,
  responseText: string | null,
  info?: TerminalInfo,
) => void;

export class Pipeline {
  readonly inbox: InboxStore;
  readonly traces: TraceService;
  readonly hub: StreamHub;
  readonly metrics = new Metrics();
  readonly conversations: Supervisor<ConversationMsg>;
  private actors = new Map<string, ConversationActor>();
  private instanceActors = new Map<string, InstanceActor>();
  private agentPermits: Semaphore;
  private terminalListeners: TerminalListener[] = [];
  private statusListeners: Array<
    (inst: Instance, status: InstanceStatus, detail: { reason?: string; qr?: string | null }) => void
  > = [];
  /** The access step; replaced by the access service when it is wired. */
  access: (inst: Instance, msg: InboundMessage) => AccessDecision = () => ({
    allowed: true,
    reason: 'no access rules',
  });
  /** Cluster mode hook: whether this node owns the conversation / instance now. */
  owns: { conversation(id: string): boolean; instance(id: string): boolean } = {
    conversation: () => true,
    instance: () => true,
  };
  /** Cluster mode hook: ingress goes to the owner's shard stream instead of the local inbox. */
  ingestHook: ((msg: InboundMessage, kind: 'inbound' | 'send') => Promise<IngestOutcome>) | null = null;
  /** Cluster mode hook: wraps a channel adapter (the self-fence refuses sends after losing the shard). */
  wrapAdapter: (instanceId: string, adapter: ChannelAdapter) => ChannelAdapter = (_id, adapter) => adapter;

  private m;
  private started = false;
  private lastStatus = new Map<string, InstanceStatus>();

  constructor(private o: PipelineOptions) {
    const p = o.config.pipeline;
    this.inbox = new InboxStore(o.db, { conversationBacklog: p.conversationBacklog, globalBacklog: p.globalBacklog });
    this.traces = new TraceService(o.db);
    this.hub = new StreamHub({ clock: o.clock });
    this.agentPermits = new Semaphore(p.agentConcurrency);
    const mt = this.metrics;
    this.m = {
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
      reconnects: mt.counter(
        'switchboard_channel_status_changes_total',
        'Channel status changes by status and channel',
      ),
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
    const renderBacklog = this.m.backlog.render.bind(this.m.backlog);
    this.m.backlog.render = () => {
      this.m.backlog.series.clear();
      for (const n of this.inbox.backlogSizes()) this.m.backlog.observe(n);
      return renderBacklog();
    };
    mt.gauge(
      'switchboard_dedupe_hits_total',
      'Redelivered messages recognised as duplicates since start',
      () => this.inbox.counters.duplicates,
    );
    mt.gauge(
      'switchboard_shed_total',
      'Messages shed (conversation backlog full) since start',
      () => this.inbox.counters.shed,
    );
    mt.gauge(
      'switchboard_overloaded_total',
      'Ingress refused with 503 (global backlog full) since start',
      () => this.inbox.counters.overloaded,
    );
    mt.gauge('switchboard_inbox_depth', 'Messages not yet terminal', () => this.inbox.depth);
    mt.gauge('switchboard_inbox_oldest_age_seconds', 'Age of the oldest unfinished message', () => this.oldestAge());
    mt.gauge('switchboard_ingest_total', 'Ingest outcomes since start', () => [
      [{ outcome: 'accepted' }, this.inbox.counters.accepted],
      [{ outcome: 'duplicate' }, this.inbox.counters.duplicates],
      [{ outcome: 'shed' }, this.inbox.counters.shed],
      [{ outcome: 'overloaded' }, this.inbox.counters.overloaded],
    ]);
    mt.gauge('switchboard_actors', 'Conversation actors', () => {
      const s = this.conversations.stats();
      return [
        [{ state: 'active' }, s.active],
        [{ state: 'busy' }, s.busy],
        [{ state: 'passivated_total' }, s.passivated],
      ];
    });
    mt.gauge('switchboard_agent_permits_in_use', 'Agent calls in flight', () => this.agentPermits.active);
    mt.gauge(
      'switchboard_agent_permits_waiting',
      'Conversations waiting for an agent slot',
      () => this.agentPermits.waiting,
    );
    mt.gauge('switchboard_ws_clients', 'WebSocket clients', () => this.hub.stats().clients);
    mt.gauge(
      'switchboard_ws_resyncs_total',
      'Resyncs sent to lagging WebSocket clients',
      () => this.hub.stats().resyncsTotal,
    );

    const agentCache = new WeakMap<Instance, AgentClient>();
    const agentFor =
      o.agentFor ??
      ((inst: Instance) => {
        let c = agentCache.get(inst);
        if (!c)
          agentCache.set(
            inst,
            (c = createAgentClient(inst.agent, { leo: o.config.leo, fetch: o.fetch, clock: o.clock })),
          );
        return c;
      });

    // One dependency object shared by every conversation actor (per-actor closures cost ~1 KB each).
    const actorDeps: ConversationDeps = {
      inbox: this.inbox,
      clock: o.clock,
      log: o.log,
      instance: (id) => o.instances.get(id),
      adapter: (id) => this.instanceActors.get(id)?.adapter ?? null,
      agentFor,
      access: (inst, msg) => this.access(inst, msg),
      sink: this.hub,
      agentPermits: this.agentPermits,
      observer: {
        agentDone: (_i, ms, ttft) => {
          this.m.agentSeconds.observe(ms / 1000);
          if (ttft !== null) this.m.ttft.observe(ttft / 1000);
        },
        sent: (i, ms, ok) => {
          this.m.sendSeconds.observe(ms / 1000, { channel: i.channel });
          if (!ok) this.m.sendFailures.inc({ channel: i.channel });
        },
        retried: (_i, stage) => this.m.retries.inc({ stage }),
        deadLettered: () => this.m.deadLetters.inc(),
        possibleDuplicate: (i) => this.m.duplicates.inc({ channel: i.channel }),
        terminal: (row, status, inst, text, info) => {
          this.m.terminal.inc({ status });
          for (const l of this.terminalListeners) {
            try {
              l(row, status, inst, text, info);
            } catch (err) {
              o.log.error({ err: String(err), trace: row.id }, 'terminal listener failed');
            }
          }
        },
      },
      policy: {
        maxAttempts: () => o.settings.value<number>('pipeline.maxAttempts') ?? p.maxAttempts,
        retryBaseMs: p.retryBaseMs,
        retryMaxMs: p.retryMaxMs,
        prefetch: p.prefetch,
        typingDelayMs: p.typingDelayMs,
      },
      stillOwner: (id) => this.owns.conversation(id),
      shuttingDown: this.shutdownController.signal,
    };

    this.conversations = new Supervisor<ConversationMsg>({
      clock: o.clock,
      idleMs: p.actorIdleMs,
      maxActive: p.maxActiveActors,
      mailboxCapacity: 2,
      restart: { baseMs: 200, maxMs: 30_000, maxRestarts: 20 },
      create: (key) => {
        const actor = new ConversationActor(key, actorDeps);
        this.actors.set(key, actor);
        return {
          receive: () => actor.receive(),
          stop: async (reason) => {
            this.actors.delete(key);
            await actor.stop(reason);
          },
        };
      },
      onEvent: (e) => {
        if (e.type === 'dropped' || e.type === 'failed')
          o.log.error({ key: e.key, err: String((e as { error: unknown }).error) }, `conversation actor ${e.type}`);
      },
    });

    this.inbox.onNewWork((conversationId) => this.wake(conversationId));
    o.instances.onChange((c) => {
      // A delete cascades to the instance's unfinished rows: recount the backlog bounds.
      if (c.type === 'deleted') this.inbox.recount();
      if (!this.started) return; // channels connect only once the gateway has started
      if (c.type === 'deleted') void this.stopInstance(c.instance.id, 'deleted');
      else void this.syncInstance(c.instance);
    });
  }

  private oldestAge(): number {
    const r = this.o.db
      .query<{ t: string | null }, []>(
        "SELECT MIN(received_at) AS t FROM inbox WHERE status IN ('pending','processing')",
      )
      .get();
    return r?.t ? Math.max(0, (Date.now() - Date.parse(r.t)) / 1000) : 0;
  }

  onTerminal(fn: TerminalListener): void {
    this.terminalListeners.push(fn);
  }

  onInstanceStatus(
    fn: (inst: Instance, status: InstanceStatus, detail: { reason?: string; qr?: string | null }) => void,
  ): void {
    this.statusListeners.push(fn);
  }

  /** Schedules a conversation; a no-op when a wake is already queued. */
  wake(conversationId: string): void {
    if (!this.owns.conversation(conversationId)) return;
    this.conversations.tell(conversationId, 'wake');
  }

  /** Ingress: the durable inbox write. */
  ingest(msg: InboundMessage, kind: 'inbound' | 'send' = 'inbound'): Promise<IngestOutcome> {
    return this.ingestHook ? this.ingestHook(msg, kind) : this.inbox.ingest(msg, kind);
  }

  /** A delivery receipt: on the outbox row and the message's trace, and live to subscribers. */
  deliveryStatus(inst: Instance, d: DeliveryStatus): void {
    const hit = this.inbox.recordDeliveryStatus(inst.id, d);
    if (!hit) return;
    this.hub.publishEvent(
      'conversations',
      {
        type: 'message.status',
        instanceId: inst.id,
        conversationId: hit.conversationId,
        traceId: hit.traceId,
        externalMessageId: d.platformMessageId,
        status: d.status,
        error: d.error ?? null,
      },
      { instanceId: inst.id, conversationId: hit.conversationId },
    );
  }

  /** Aborts a conversation's in-flight turn without finishing it (cluster: the shard moved). */
  cancelConversation(conversationId: string): void {
    this.actors.get(conversationId)?.cancel();
  }

  /** Starts instance actors and resumes every unfinished conversation, in order. */
  async start(): Promise<void> {
    this.started = true;
    for (const inst of this.o.instances.list()) await this.syncInstance(inst);
    this.resumeIdleWork();
    this.scheduleSweep();
  }

  /** Wakes every conversation that has unfinished rows but no active actor. */
  private resumeIdleWork(): void {
    for (const { conversationId } of this.inbox.conversationsWithWork()) {
      if (!this.conversations.has(conversationId)) this.wake(conversationId);
    }
  }

  /**
   * A safety net for "every acknowledged message reaches a terminal state": should an actor ever
   * give up on a wake-up (repeated crashes) while rows stay pending, they are picked up again.
   */
  private sweepTimer: Timer | null = null;
  private scheduleSweep(): void {
    this.sweepTimer = this.o.clock.setTimeout(() => {
      this.resumeIdleWork();
      this.scheduleSweep();
    }, 30_000);
  }

  instanceActor(id: string): InstanceActor | null {
    return this.instanceActors.get(id) ?? null;
  }

  adapter(instanceId: string): ChannelAdapter | null {
    return this.instanceActors.get(instanceId)?.adapter ?? null;
  }

  /** Starts, restarts or stops an instance's actor to match its record. */
  async syncInstance(inst: Instance): Promise<void> {
    const current = this.instanceActors.get(inst.id);
    const shouldRun = inst.isActive && this.owns.instance(inst.id);
    if (!shouldRun) {
      if (current) await this.stopInstance(inst.id, inst.isActive ? 'not owner' : 'deactivated');
      return;
    }
    if (current) {
      const prev = current.instance;
      current.instance = inst;
      const reconnect =
        JSON.stringify(prev.config) !== JSON.stringify(inst.config) ||
        prev.name !== inst.name ||
        prev.settings.maxTextLength !== inst.settings.maxTextLength;
      if (reconnect) await current.restart();
      return;
    }
    const deps: AdapterDeps = {
      db: this.o.db,
      config: this.o.config,
      clock: this.o.clock,
      log: this.o.log,
      fetch: this.o.fetch,
      ...this.o.adapterDeps,
    };
    const factory = this.o.factories?.[inst.channel] ?? DEFAULT_FACTORIES[inst.channel];
    const actor = new InstanceActor(inst, {
      clock: this.o.clock,
      log: this.o.log,
      createAdapter: (i) => this.wrapAdapter(i.id, factory(i, deps)),
      ingest: (m) => this.ingest(m),
      deliveryStatus: async (i, d) => this.deliveryStatus(i, d),
      onStatus: (i, status, detail) => {
        this.o.instances.setStatus(i.id, status, detail.reason ?? null);
        this.m.reconnects.inc({ status, channel: i.channel });
        const before = this.lastStatus.get(i.id);
        this.lastStatus.set(i.id, status);
        if (
          status !== 'connected' &&
          before !== undefined &&
          before !== status &&
          (before === 'connected' || status !== 'connecting')
        ) {
          this.m.lostConnections.inc({ channel: i.channel, reason: reasonLabel(detail.reason ?? status) });
        }
        this.hub.publishEvent(
          'instances',
          {
            type: 'instance.status',
            instanceId: i.id,
            name: i.name,
            status,
            reason: detail.reason ?? null,
            hasQr: Boolean(detail.qr),
          },
          { instanceId: i.id },
        );
        for (const l of this.statusListeners) l(i, status, detail);
      },
    });
    this.instanceActors.set(inst.id, actor);
    await actor.start();
  }

  async stopInstance(id: string, reason: string): Promise<void> {
    const a = this.instanceActors.get(id);
    if (!a) return;
    this.instanceActors.delete(id);
    await a.stop(reason);
  }

  /** Aborted when shutdown starts: actors finish the turn in flight but start no new one and skip retry waits. */
  private shutdownController = new AbortController();

  async shutdown(): Promise<void> {
    this.sweepTimer?.cancel();
    this.shutdownController.abort(new Error('shutting down'));
    for (const actor of this.actors.values()) void actor.stop('shutdown');
    await this.conversations.shutdown();
    await Promise.all([...this.instanceActors.keys()].map((id) => this.stopInstance(id, 'shutdown')));
    this.hub.close();
  }
}

/** A reconnect reason as a low-cardinality label (numbers and ids stripped, bounded length). */
function reasonLabel(reason: string): string {
  return (
    reason
      .toLowerCase()
      .replace(/[0-9a-f]{8,}|\d+/g, 'N')
      .replace(/\s+/g, ' ')
      .trim()
      .slice(0, 48) || 'unknown'
  );
}
