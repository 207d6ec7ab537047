// Instance lifecycle across channels: QR, pairing code, status, connect/provision, restart,
// logout, invite URL. The generic steps live here; what a channel does differently comes from its
// definition's pairing and remote hooks (src/channels/<kind>/index.ts). The v1/v2 routes are thin
// shells over it.
import type { Logger } from 'pino';
import type { Clock } from '../../actors/runtime/clock.ts';
import { PAIRING_CODE_KINDS, requireChannel } from '../channels/registry.ts';
import type { LifecycleContext, LifecycleErrorCode, LifecycleStatus, QrResult } from '../channels/types.ts';
import { ChannelError, ChannelFailure, Conflict, DomainError, Validation } from '../core/errors.ts';
import type { Instance } from '../core/instance.ts';
import type { Pipeline } from '../engine/pipeline.ts';
import { type InstanceService, webhookUrl } from './instances.ts';

export type { LifecycleStatus, QrResult } from '../channels/types.ts';

/** What the lifecycle uses of the gateway (which satisfies it as it is). */
export interface LifecycleDeps {
  instances: InstanceService;
  /** The running instance actors and their channel connections. */
  pipeline: Pick<Pipeline, 'adapter' | 'instanceActor' | 'syncInstance'>;
  /** Under the outbound policy: the channel hooks' requests (e.g. to Evolution) go through it. */
  fetch: typeof fetch;
  clock: Clock;
  log: Logger;
}

function unsupported(inst: Instance, what: string): DomainError {
  return new Validation(`Channel '${inst.channel}' does not support ${what}`, {
    channel: inst.channel,
  });
}

/** A channel failure as the caller's error: 502 CHANNEL_ERROR with the reason, except the caller's own mistakes. */
function channelFailure(err: unknown, action: string): DomainError {
  if (err instanceof DomainError) return err;
  const message = err instanceof Error ? err.message : String(err);
  const status = err instanceof ChannelError ? err.status : undefined;
  if (status === 400) return new Validation(message);
  if (status === 409) return new Conflict(message);
  return new ChannelFailure(`${action} failed: ${message}`, { reason: message });
}

export class LifecycleService {
  constructor(private gw: LifecycleDeps) {}

  /** What a channel hook gets. `background`: status writes tolerate a deleted instance or a closed gateway. */
  private context(inst: Instance, opts: { baseUrl?: string; background?: boolean } = {}): LifecycleContext {
    const setStatus: LifecycleContext['setStatus'] = (status, reason) => {
      if (!opts.background) return this.gw.instances.setStatus(inst.id, status, reason);
      try {
        if (this.gw.instances.get(inst.id)) this.gw.instances.setStatus(inst.id, status, reason);
      } catch {
        // The gateway closed meanwhile.
      }
    };
    return {
      instance: inst,
      adapter: this.gw.pipeline.adapter(inst.id),
      fetch: this.gw.fetch,
      clock: this.gw.clock,
      log: opts.background ? this.gw.log.child({ instance: inst.name }) : this.gw.log,
      webhookUrl: opts.baseUrl === undefined ? null : webhookUrl(inst, opts.baseUrl),
      setStatus,
      status: () => this.status(inst),
      fail: (code: LifecycleErrorCode, message: string, details?: unknown, retryAfterSeconds?: number) =>
        new DomainError(code, message, details, retryAfterSeconds),
      failure: channelFailure,
      notRunning: () =>
        new Conflict(
          inst.isActive
            ? `Instance '${inst.name}' is not running yet; POST /api/v2/instances/${inst.id}/connect to start it`
            : `Instance '${inst.name}' is inactive; activate it first`,
        ),
    };
  }

  /** The current pairing QR as a PNG data URL. */
  async qr(inst: Instance): Promise<QrResult> {
    const def = requireChannel(inst.channel);
    if (def.pairing?.qr) return def.pairing.qr(this.context(inst));
    throw unsupported(
      inst,
      def.local ? 'pairing (it has no remote connection)' : 'QR pairing (it connects with a bot token)',
    );
  }

  /** Links by phone number: returns the code to type on the phone. */
  async pair(inst: Instance, phoneNumber: string): Promise<string> {
    const pairing = requireChannel(inst.channel).pairing;
    if (!pairing?.code) throw unsupported(inst, `pairing by phone number (only ${PAIRING_CODE_KINDS.join(', ')} does)`);
    return pairing.code(this.context(inst), phoneNumber);
  }

  async status(inst: Instance): Promise<LifecycleStatus> {
    const actor = this.gw.pipeline.instanceActor(inst.id);
    const base: LifecycleStatus = {
      status: actor?.status ?? inst.status,
      reason: actor ? actor.reason : inst.statusReason,
      channel: inst.channel,
      running: Boolean(actor?.adapter),
      hasQr: Boolean(actor?.qr),
    };
    const hook = requireChannel(inst.channel).remote?.status;
    return hook ? hook(this.context(inst), base) : base;
  }

  /**
   * The channel's own connect step (Evolution: create the remote instance if missing and register
   * our webhook), then the actor is (re)started and a fresh status returned.
   */
  async connect(
    inst: Instance,
    baseUrl: string,
  ): Promise<{ status: LifecycleStatus; created?: boolean; qr?: string | null }> {
    const def = requireChannel(inst.channel);
    if (def.local) throw unsupported(inst, 'connecting (it has no remote connection)');
    if (!inst.isActive) throw new Conflict(`Instance '${inst.name}' is inactive; activate it first`);
    if (def.remote?.connect) {
      const res = await def.remote.connect(this.context(inst, { baseUrl }));
      await this.restartActor(inst);
      return { status: await this.status(inst), ...res };
    }
    await this.restartActor(inst);
    return { status: await this.status(this.gw.instances.get(inst.id) ?? inst) };
  }

  /**
   * After create (e.g. Evolution with auto_qr provisions in the background). Never throws and never
   * delays the create; a failure leaves the instance in 'error' with the reason.
   */
  afterCreate(inst: Instance, baseUrl: string): Promise<void> {
    const hook = requireChannel(inst.channel).remote?.afterCreate;
    if (!hook || !inst.isActive) return Promise.resolve();
    return hook(this.context(inst, { baseUrl, background: true }));
  }

  async restart(inst: Instance): Promise<LifecycleStatus> {
    const def = requireChannel(inst.channel);
    if (def.local) throw unsupported(inst, 'restart (it has no remote connection)');
    if (!inst.isActive) throw new Conflict(`Instance '${inst.name}' is inactive; activate it first`);
    const restarted = (await def.remote?.restart?.(this.context(inst))) ?? false;
    if (!restarted) await this.restartActor(inst);
    return this.status(inst);
  }

  async logout(inst: Instance): Promise<LifecycleStatus> {
    const hook = requireChannel(inst.channel).remote?.logout;
    if (!hook)
      throw unsupported(inst, 'logout (it is linked by a bot token: change the token or deactivate the instance)');
    return hook(this.context(inst));
  }

  /** The URL that adds the instance's bot to a server (GET .../discord/invite). */
  discordInvite(inst: Instance): string {
    const hook = requireChannel(inst.channel).remote?.invite;
    if (!hook) throw unsupported(inst, 'Discord invites');
    return hook(this.context(inst));
  }

  private async restartActor(inst: Instance): Promise<void> {
    const actor = this.gw.pipeline.instanceActor(inst.id);
    if (actor) await actor.restart();
    else await this.gw.pipeline.syncInstance(inst);
  }
}

const services = new WeakMap<object, LifecycleService>();

/** One LifecycleService per gateway, made on first use (no wiring in gateway.ts needed). */
export function lifecycleOf(gw: LifecycleDeps): LifecycleService {
  let s = services.get(gw);
  if (!s) services.set(gw, (s = new LifecycleService(gw)));
  return s;
}
