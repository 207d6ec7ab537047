// What every part of the cluster shares: this node's identity and options, the keys derived from
// CLUSTER_SECRET, the command connection, the counters shown by GET /api/v2/cluster, and the
// node's life state (stopping, closed).
import type Redis from 'ioredis';
import { Unavailable } from '../core/errors.ts';
import type { ClusterKeys } from './crypto.ts';
import type { ClusterHost } from './host.ts';

export interface ClusterOptions {
  redisUrl: string;
  nodeId: string;
  prefix: string;
  shards: number;
  leaseMs: number;
  /** Dedupe window for provider message ids (ms). */
  dedupeTtlMs: number;
  /** This node's base URL for the other nodes (null: http://host:port once the server listens). */
  advertiseUrl?: string | null;
  /** CLUSTER_SECRET: the same on every node; keys for what is sealed in Redis and for peer requests. */
  secret: string;
}

export function newCounters() {
  return {
    acquired: 0,
    released: 0,
    fenced: 0,
    fencedWrites: 0,
    appended: 0,
    duplicates: 0,
    consumed: 0,
    acked: 0,
    handedOffRows: 0,
    blockedSends: 0,
    deadLettered: 0,
    ingestRetries: 0,
    droppedForDeletedInstance: 0,
  };
}

export type ClusterCounters = ReturnType<typeof newCounters>;

export interface ClusterContext {
  readonly host: ClusterHost;
  readonly o: ClusterOptions;
  readonly node: string;
  readonly keys: ClusterKeys;
  /** Appends, acks, config, shutdown steps: an unanswered call fails instead of hanging. */
  readonly cmd: Redis;
  /** Lease renewal (and heartbeat) interval: a third of the lease, at most 500 ms. */
  readonly renewMs: number;
  readonly counters: ClusterCounters;
  /** stopping: leaving the cluster (renew-only ticks, the reader ends); closed: no timer is armed again. */
  readonly life: { stopping: boolean; closed: boolean };
  /** A Redis key under this cluster's prefix. */
  k(s: string): string;
  /** Monotonic ms (the gateway's clock). */
  now(): number;
  shardOfInstance(instanceId: string): number;
}

/** A Redis call for an API request: unavailable Redis → 503 in the error envelope. */
export async function viaStore<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw new Unavailable(
      'Cluster store unavailable; retry later',
      { reason: String((err as Error).message ?? err) },
      2,
    );
  }
}
