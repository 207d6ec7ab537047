// The engine: hosts the message path inbox → conversation actors (supervised) → agents →
// channels, and the instance actors that own channel connections. Everything it depends on is
// given at construction: where work runs (placement: embedded, or the cluster's, swapped in once
// before start), the access step, and what happens after a message finishes (see finished()).
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
import type { MediaService } from '../media/index.ts';
import type { InboxRow, IngestOutcome } from '../services/inbox.ts';
import { effectiveMessaging } from '../services/instance-options.ts';
import type { InstanceService } from '../services/instances.ts';
import { messagingDefaults, type SettingsService } from '../services/settings.ts';
import { TraceService } from '../services/traces.ts';
import type { StreamHub } from '../stream/hub.ts';
import { FifoSemaphore } from './fifo-semaphore.ts';
import { type PipelineMetrics, pipelineMetrics, reasonLabel } from './pipeline-metrics.ts';
import { embeddedPlacement, type IngestKind, type Placement } from './placement.ts';
import { Metrics } from './prometheus.ts';

/** A message at its terminal state, as its conversation actor reports it. */
export interface FinishedMessage {
  row: InboxRow;
  status: string;
  instance: Instance | null;
  responseText: string | null;
  /** Facts the actor knows already (saves lookups); absent for rows ended outside a turn. */
  info?: TerminalInfo;
}

/** Something that happens after a message finishes (recording its events, answering a waiter). */
export type FinishedConsumer = (m: FinishedMessage) => void;

/** Something that happens after an instance's channel status changes (recording the event). */
export type InstanceStatusConsumer = (
  inst: Instance,
  status: InstanceStatus,
  detail: { reason?: string; qr?: string | null },
) => void;

/** The access step: whether a message may reach the agent. */
export type AccessCheck = (inst: Instance, msg: InboundMessage) => AccessDecision;

export interface PipelineOptions {
  db: Database;
  config: Config;
  clock: Clock;
  log: Logger;
  fetch: typeof fetch;
  instances: InstanceService;
  settings: SettingsService;
  /** The live stream: turns as they run, instance status events. Closed by shutdown(). */
  hub: StreamHub;
  /** The access step (the access service's rules). */
  access: AccessCheck;
  /** Run, in this order, after every message's terminal state (after the metrics, before the placement). */
  onFinished: FinishedConsumer[];
  /**
   * Run for every channel status change inside the transaction that stores it (before it is
   * published): what they write commits with the status, and a throw rolls the status back.
   */
  onInstanceStatus: InstanceStatusConsumer[];
  /** Where work runs; embedded (this process, its own inbox) unless given. Cluster mode swaps it before start. */
  placement?: (inbox: InboxStore) => Placement;
  factories?: Partial<Record<ChannelKind, AdapterFactory>>;
  adapterDeps?: Partial<AdapterDeps>;
  /** Overrides agent clients (tests). */
  agentFor?: (inst: Instance) => AgentClient;
  /** Inbound media fetched before the agent call, reply media sent after the text (src/media). */
  media?: MediaService;
}

export class Pipeline {
  readonly inbox: InboxStore;
  readonly traces: TraceService;
  readonly hub: StreamHub;
  readonly metrics = new Metrics();
  readonly conversations: Supervisor<ConversationMsg>;
  private actors = new Map<string, ConversationActor>();
  private instanceActors = new Map<string, InstanceActor>();
  private agentPermits: FifoSemaphore;
  private where: Placement;
  /** API requests waiting for a message's outcome (send API, AG-UI runs); see finished(). */
  private waiters: Array<(row: InboxRow, status: string) => void> = [];
  private m: PipelineMetrics;
  private started = false;
  private lastStatus = new Map<string, InstanceStatus>();

  constructor(private o: PipelineOptions) {
    const p = o.config.pipeline;
    // Received times on the engine's clock: the conversation windows (collect/interrupt) are measured on it.
    this.inbox = new InboxStore(
      o.db,
      { conversationBacklog: p.conversationBacklog, globalBacklog: p.globalBacklog },
      () => o.clock.now(),
    );
    this.where = o.placement ? o.placement(this.inbox) : embeddedPlacement(this.inbox);
    this.traces = new TraceService(o.db);
    this.hub = o.hub;
    this.agentPermits = new FifoSemaphore(p.agentConcurrency);
    this.m = pipelineMetrics(this.metrics, {
      db: o.db,
      inbox: this.inbox,
      actors: () => this.conversations.stats(),
      agentPermits: this.agentPermits,
      hub: this.hub,
    });

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
      access: (inst, msg) => o.access(inst, msg),
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
        terminal: (row, status, instance, responseText, info) =>
          this.finished({ row, status, instance, responseText, info }),
      },
      policy: {
        maxAttempts: () => o.settings.value<number>('pipeline.maxAttempts') ?? p.maxAttempts,
        retryBaseMs: p.retryBaseMs,
        retryMaxMs: p.retryMaxMs,
        prefetch: p.prefetch,
        typingDelayMs: p.typingDelayMs,
      },
      stillOwner: (id) => this.where.ownsConversation(id),
      shuttingDown: this.shutdownController.signal,
      messaging: (inst) => effectiveMessaging(inst.settings.messaging, () => messagingDefaults(o.settings)),
      media: o.media,
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

  /**
   * Everything that happens after a message reaches its terminal state, in order: the placement
   * first (cluster: acknowledges the message's hand-off entry — until that lands, a kill -9 makes
   * the next owner send the reply again, so nothing is put before it); the metrics; the consumers
   * given at construction (events and persons); API requests waiting for this outcome. A failing
   * consumer is logged and does not stop the others.
   */
  private finished(f: FinishedMessage): void {
    this.guarded(f.row, () => this.where.finished(f.row));
    this.m.terminal.inc({ status: f.status });
    for (const consume of this.o.onFinished) this.guarded(f.row, () => consume(f));
    for (const wait of this.waiters) this.guarded(f.row, () => wait(f.row, f.status));
  }

  private guarded(row: InboxRow, step: () => void): void {
    try {
      step();
    } catch (err) {
      this.o.log.error({ err: String(err), trace: row.id }, 'terminal listener failed');
    }
  }

  /** Registers an API request's wait for message outcomes (the send API, AG-UI runs). */
  onTerminal(waiter: (row: InboxRow, status: string) => void): void {
    this.waiters.push(waiter);
  }

  /** Where work runs now. */
  get placement(): Placement {
    return this.where;
  }

  /**
   * Swaps in another placement (cluster mode, once connected). Only before start(): instances are
   * connected and conversations resumed where the placement in force at start says.
   */
  usePlacement(placement: Placement): void {
    if (this.started) throw new Error('the placement is set before the pipeline starts');
    this.where = placement;
  }

  /** Schedules a conversation; a no-op when a wake is already queued. */
  wake(conversationId: string): void {
    if (!this.where.ownsConversation(conversationId)) return;
    // A running actor learns at once (its waiting window, or an interrupt); an idle one is woken.
    this.actors.get(conversationId)?.newWork();
    this.conversations.tell(conversationId, 'wake');
  }

  /** Ingress: the durable write where the placement says (embedded: this inbox; cluster: the owner's stream). */
  ingest(msg: InboundMessage, kind: IngestKind = 'inbound'): Promise<IngestOutcome> {
    // Media bytes a webhook carried go to the media store first: the inbox row keeps their hash.
    if (msg.media?.length && this.o.media) this.o.media.stage(this.o.instances.get(msg.instanceId), msg);
    return this.where.ingest(msg, kind);
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
    const shouldRun = inst.isActive && this.where.ownsInstance(inst.id);
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
      createAdapter: (i) => this.where.fenceAdapter(i.id, factory(i, deps)),
      ingest: (m) => this.ingest(m),
      deliveryStatus: async (i, d) => this.deliveryStatus(i, d),
      onStatus: (i, status, detail) => {
        try {
          // The consumers (the status event and its webhook deliveries) write in the status's transaction.
          this.o.instances.setStatus(i.id, status, detail.reason ?? null, () => {
            for (const c of this.o.onInstanceStatus) c(i, status, detail);
          });
        } catch (err) {
          // Nothing of the change was stored (the database is closing or broken); the actor runs on.
          this.o.log.warn({ err: String(err), instanceId: i.id, status }, 'instance status write failed');
        }
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
