// One actor per channel instance: owns the adapter's connection lifecycle and status, restarts
// it with backoff when it fails, stops it when the instance is deactivated or deleted.
import type { Logger } from 'pino';
import type { AdapterContext, ChannelAdapter } from '../src/channels/types.ts';
import type { Instance, InstanceStatus } from '../src/core/instance.ts';
import type { DeliveryStatus, InboundMessage, IngestResult } from '../src/core/message.ts';
import { Backoff } from './runtime/backoff.ts';
import type { Clock, Timer } from './runtime/clock.ts';

export interface InstanceActorDeps {
  clock: Clock;
  log: Logger;
  createAdapter(inst: Instance): ChannelAdapter;
  ingest(msg: InboundMessage): Promise<IngestResult>;
  /** A delivery receipt for something this instance sent. */
  deliveryStatus?(inst: Instance, status: DeliveryStatus): Promise<void>;
  /** Status changes (persist + publish). */
  onStatus(
    inst: Instance,
    status: InstanceStatus,
    detail: { reason?: string; qr?: string | null; pairingCode?: string | null },
  ): void;
}

export class InstanceActor {
  private adapterRef: ChannelAdapter | null = null;
  private restartTimer: Timer | null = null;
  private backoff = new Backoff({ baseMs: 2000, maxMs: 60_000, factor: 1.8 });
  private stopped = false;
  private generation = 0;
  status: InstanceStatus = 'disconnected';
  reason: string | null = null;
  qr: { qr: string; at: number } | null = null;
  pairingCode: string | null = null;

  constructor(
    public instance: Instance,
    private deps: InstanceActorDeps,
  ) {}

  get adapter(): ChannelAdapter | null {
    return this.adapterRef;
  }

  /** Start, stop and restart run one at a time: overlapping calls must never leave two live connections. */
  private chain: Promise<void> = Promise.resolve();
  private serial(fn: () => Promise<void>): Promise<void> {
    const next = this.chain.then(fn, fn);
    this.chain = next.catch(() => {});
    return next;
  }

  start(): Promise<void> {
    return this.serial(() => this.doStart());
  }

  private async doStart(): Promise<void> {
    this.stopped = false;
    if (this.adapterRef) await this.stopAdapter('restart'); // never two adapters for one instance
    const gen = ++this.generation;
    const inst = this.instance;
    let adapter: ChannelAdapter;
    try {
      adapter = this.deps.createAdapter(inst);
    } catch (err) {
      this.setStatus('error', { reason: `cannot create the channel adapter: ${(err as Error).message}` });
      return;
    }
    this.adapterRef = adapter;
    const ctx: AdapterContext = {
      instance: inst,
      log: this.deps.log.child({ instance: inst.name }),
      ingest: (m) => this.deps.ingest(m),
      ...(this.deps.deliveryStatus ? { deliveryStatus: (d) => this.deps.deliveryStatus!(this.instance, d) } : {}),
      setStatus: (status, detail) => {
        if (gen !== this.generation) return; // a stale adapter's late report
        this.setStatus(status, detail ?? {});
      },
    };
    this.setStatus('connecting', {});
    try {
      await adapter.start(ctx);
    } catch (err) {
      // Adapters report remote failures through setStatus; a throw is unexpected: restart later.
      this.setStatus('error', { reason: (err as Error).message });
      this.scheduleRestart();
    }
  }

  private setStatus(
    status: InstanceStatus,
    detail: { reason?: string; qr?: string | null; pairingCode?: string | null },
  ) {
    if (status === 'connected') {
      this.backoff.reset();
      this.qr = null;
      this.pairingCode = null;
    }
    if (detail.qr !== undefined) this.qr = detail.qr ? { qr: detail.qr, at: this.deps.clock.now() } : null;
    if (detail.pairingCode !== undefined) this.pairingCode = detail.pairingCode;
    const changed = status !== this.status || (detail.reason ?? null) !== this.reason || detail.qr !== undefined;
    this.status = status;
    this.reason = detail.reason ?? null;
    if (changed) this.deps.onStatus(this.instance, status, detail);
  }

  private scheduleRestart() {
    if (this.stopped || this.restartTimer) return;
    const delay = this.backoff.next();
    this.deps.log.warn(
      { instance: this.instance.name, delayMs: Math.round(delay) },
      'restarting channel after failure',
    );
    this.restartTimer = this.deps.clock.setTimeout(() => {
      this.restartTimer = null;
      void this.restart();
    }, delay);
  }

  restart(): Promise<void> {
    return this.serial(async () => {
      await this.stopAdapter('restart');
      if (!this.stopped) await this.doStart();
    });
  }

  private async stopAdapter(reason: string) {
    this.generation++;
    const a = this.adapterRef;
    this.adapterRef = null;
    if (a) {
      try {
        await a.stop(reason);
      } catch (err) {
        this.deps.log.warn({ instance: this.instance.name, err: (err as Error).message }, 'adapter stop failed');
      }
    }
  }

  stop(reason: string): Promise<void> {
    this.stopped = true;
    this.restartTimer?.cancel();
    this.restartTimer = null;
    return this.serial(async () => {
      await this.stopAdapter(reason);
      this.setStatus('disconnected', { reason });
    });
  }
}
