// The gateway's composition root: database, services and actors, built once per process (or per
// test). The HTTP layer (src/server.ts) and main.ts only talk to this object.
import type { Database } from 'bun:sqlite';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type Clock, realClock } from '../actors/runtime/clock.ts';
import { startCheckpointer } from '../db/checkpointer.ts';
import { openDatabase } from '../db/open.ts';
import type { Cluster } from './cluster/index.ts';
import type { Config } from './config.ts';
import { loadConfig } from './config.ts';
import { Pipeline, type PipelineOptions } from './engine/pipeline.ts';
import { createLogger } from './log.ts';
import { MediaService } from './media/index.ts';
import { createOutboundFetch, type Resolver } from './net/outbound.ts';
import { AccessService } from './services/access.ts';
import { AuditService } from './services/audit.ts';
import { EventService } from './services/events.ts';
import { InstanceService } from './services/instances.ts';
import { KeyService } from './services/keys.ts';
import { MessageService } from './services/messages.ts';
import { PersonService } from './services/persons.ts';
import { limitsFromSettings, MemoryRateLimiter, type RateLimiter } from './services/rate-limit.ts';
import { Retention } from './services/retention.ts';
import { SettingsService } from './services/settings.ts';
import { StreamHub } from './stream/hub.ts';
import { WebhookService } from './webhooks/index.ts';

export interface GatewayOptions {
  log?: Logger;
  clock?: Clock;
  db?: Database;
  fetch?: typeof fetch;
  /** Host name lookup for the outbound policy (tests map names to addresses without DNS). */
  resolve?: Resolver;
  /** Channel adapter factories / agent overrides (tests). */
  pipeline?: Pick<PipelineOptions, 'factories' | 'adapterDeps' | 'agentFor'>;
}

export interface Gateway {
  config: Config;
  log: Logger;
  clock: Clock;
  db: Database;
  /** Fetch under the outbound policy: every request on a user's behalf (agents, channels) uses it. */
  fetch: typeof fetch;
  keys: KeyService;
  instances: InstanceService;
  settings: SettingsService;
  pipeline: Pipeline;
  /** Events (messages in/out, instance status) with search; recorded from the pipeline's hooks. */
  events: EventService;
  persons: PersonService;
  /** The send API (ordered through the conversation actors). */
  messages: MessageService;
  /** Access rules and keyword gates (the pipeline's access step). */
  access: AccessService;
  /** Buffered API audit log. */
  audit: AuditService;
  /** Outgoing webhooks: subscriptions and the signed, retried delivery of events to them. */
  webhooks: WebhookService;
  /** Media store, signed media URLs, transcription (src/media). */
  media: MediaService;
  /** Per-key rate limits; replaceable (cluster mode swaps in a shared limiter). */
  rateLimiter: RateLimiter;
  /** Cluster mode (REDIS_URL set): shard ownership and hand-off; null in embedded mode. */
  cluster: Cluster | null;
  /** Starts channel connections and resumes unfinished conversations. */
  start(): Promise<void>;
  /** Prometheus text for /metrics. */
  metricsText(): string;
  /** Flips to false when shutdown starts (readiness goes 503). */
  ready: boolean;
  /** Stops actors, drains in-flight work, closes the database. */
  close(): Promise<void>;
  /** Shutdown hooks registered by subsystems, run in reverse order. */
  onClose(fn: () => Promise<void> | void): void;
}

export function createGateway(config: Config = loadConfig(), opts: GatewayOptions = {}): Gateway {
  const log = opts.log ?? createLogger(config.logLevel);
  const db = opts.db ?? openDatabase(config.databasePath);
  // Only for a database this gateway opened (tests that pass their own keep SQLite's default).
  const checkpointer = opts.db ? null : startCheckpointer(db, config.databasePath, log);
  const settings = new SettingsService(db);
  const keys = new KeyService(db);
  const instances = new InstanceService(db, {
    agentTimeoutSeconds: () => settings.value<number>('agent.defaultTimeoutSeconds'),
  });
  keys.bootstrap(config.apiKey, join(config.dataDir, 'admin.key'), log);

  const clock = opts.clock ?? realClock;
  const fetchFn = createOutboundFetch(opts.fetch ?? fetch, { ...config.outbound, resolve: opts.resolve });
  const hub = new StreamHub({ clock });
  const persons = new PersonService(db);
  const events = new EventService(db, persons, { log, hub });
  const access = new AccessService(db, instances, clock, log);
  const media = new MediaService({
    db,
    dir: config.mediaDir,
    fetch: fetchFn,
    log,
    now: () => clock.now(),
    // Agents fetch the URLs: PUBLIC_URL when set, else this process's own address.
    baseUrl:
      config.publicUrl ??
      `http://${config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host}:${config.port}`,
    secret: config.cluster.secret,
  });
  // Embedded placement here; cluster mode swaps in its own in gw.start(), before pipeline.start().
  const pipeline = new Pipeline({
    db,
    config,
    clock,
    log,
    fetch: fetchFn,
    instances,
    settings,
    hub,
    access: (inst, msg) => access.check(inst, msg),
    // Events (and the persons they attribute messages to) are recorded once a message finished.
    onFinished: [(f) => events.recordTerminal(f.row, f.status, f.instance, f.responseText, f.info)],
    onInstanceStatus: [(inst, status, detail) => events.recordStatus(inst, status, detail)],
    media,
    ...opts.pipeline,
  });
  const retention = new Retention({ db, inbox: pipeline.inbox, settings, clock, log, media });
  const messages = new MessageService(db, pipeline);

  const audit = new AuditService(db, keys, clock, () => settings.value<number>('audit.retentionDays'), log);
  // Outgoing webhooks: outbox rows are written inside the event store's and the pauses' own writes.
  const webhooks = new WebhookService(db, {
    clock,
    log,
    fetch: fetchFn,
    instance: (id) => instances.get(id),
    options: {
      retryPeriodMs: config.webhooks.retryPeriodSeconds * 1000,
      retentionMs: config.webhooks.retentionDays * 86_400_000,
      secretGraceMs: config.webhooks.secretGraceSeconds * 1000,
    },
  });
  events.onWritten((e) => webhooks.recordEvent(e));
  access.onPauseChange((c) =>
    webhooks.recordPause({
      paused: c.paused,
      instanceId: c.pause.instanceId,
      conversationId: c.pause.conversationId,
      chatKey: c.pause.chatKey,
      reason: c.pause.reason,
      until: c.pause.until,
    }),
  );

  const closers: Array<() => Promise<void> | void> = [];
  let closed = false;
  const gw: Gateway = {
    config,
    log,
    clock,
    db,
    fetch: fetchFn,
    keys,
    instances,
    settings,
    pipeline,
    events,
    persons,
    messages,
    access,
    audit,
    webhooks,
    media,
    rateLimiter: new MemoryRateLimiter(limitsFromSettings(settings), () => clock.now()),
    cluster: null,
    start: async () => {
      audit.start();
      retention.start();
      events.backfill((id) => instances.get(id));
      webhooks.start();
      // The cluster's placement must be in force before the pipeline starts instances and resumes conversations.
      if (config.redisUrl) gw.cluster = await (await import('./cluster/index.ts')).startCluster(gw);
      return pipeline.start();
    },
    metricsText: () => pipeline.metrics.render(),
    ready: true,
    onClose(fn) {
      closers.push(fn);
    },
    async close() {
      if (closed) return;
      closed = true;
      gw.ready = false;
      // Runs in reverse: drain the pipeline, then write the events its last messages queued.
      closers.unshift(
        () => events.flush(),
        () => pipeline.shutdown(),
      );
      for (const fn of closers.reverse()) {
        try {
          await fn();
        } catch (err) {
          log.error({ err }, 'shutdown step failed');
        }
      }
      await checkpointer?.stop();
      db.close();
    },
  };
  gw.onClose(() => audit.close());
  // Attempts in flight are cancelled (they stay pending, same webhook-id, and go out after the next
  // start); events the draining pipeline still records are written to the outbox for then.
  gw.onClose(() => webhooks.stop());
  gw.onClose(() => retention.stop());
  return gw;
}
