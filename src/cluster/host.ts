// What the cluster needs of the gateway it runs in, declared here so that the cluster never
// imports src/gateway.ts (the gateway satisfies this interface as it is). Each field is the
// narrowest slice of a service the cluster calls; cluster mode plugs in through the pipeline's
// usePlacement() and the writable fields: the shared rate limiter, readiness.
import type { Database } from 'bun:sqlite';
import type { Logger } from 'pino';
import type { Clock } from '../../actors/runtime/clock.ts';
import type { Config } from '../config.ts';
import type { Pipeline } from '../engine/pipeline.ts';
import type { InstanceService } from '../services/instances.ts';
import type { KeyService } from '../services/keys.ts';
import type { PersonService } from '../services/persons.ts';
import type { RateLimiter } from '../services/rate-limit.ts';
import type { SettingsService } from '../services/settings.ts';

/** The pipeline as the cluster drives it: its placement, instance connections, conversations, the local inbox. */
export type ClusterPipeline = Pick<
  Pipeline,
  | 'usePlacement'
  | 'syncInstance'
  | 'stopInstance'
  | 'cancelConversation'
  | 'wake'
  | 'conversations'
  | 'inbox'
  | 'traces'
  | 'hub'
  | 'metrics'
>;

export interface ClusterHost {
  config: Pick<Config, 'host' | 'port' | 'redisUrl' | 'cluster'>;
  log: Logger;
  clock: Pick<Clock, 'monotonic' | 'setTimeout'>;
  /** This node's own SQLite: replicated configuration, the inbox the owner ingests into. */
  db: Database;
  instances: Pick<InstanceService, 'list' | 'get' | 'onChange' | 'invalidate'>;
  keys: Pick<KeyService, 'invalidate'>;
  settings: SettingsService;
  access: { invalidate(): void };
  /** Outgoing webhooks: the subscriptions replicate like other configuration. */
  webhooks: { invalidate(): void };
  persons: PersonService;
  pipeline: ClusterPipeline;
  /** Replaced by the cluster's shared limiter at start. */
  rateLimiter: RateLimiter;
  /** Set to false when this node steps down (another secret's configuration in Redis). */
  ready: boolean;
  onClose(fn: () => Promise<void> | void): void;
}
