// Instance lifecycle across channels: QR, pairing code, status, connect/provision, restart,
// logout, Discord invite. One place that knows what each channel can do; the v1/v2 routes are thin
// shells over it. Evolution calls go to the Evolution server; the others to the running adapter
// owned by the instance actor.
import { inviteUrl } from '../channels/discord/config.ts';
import { statusOfEvolutionState } from '../channels/evolution/adapter.ts';
import {
  connectionState,
  evolutionConfigOf,
  connect as evolutionConnect,
  evolutionFlag,
  logout as evolutionLogout,
  restart as evolutionRestart,
  provisionInstance,
} from '../channels/evolution/client.ts';
import type { ChannelAdapter } from '../channels/types.ts';
import type { BaileysAdapter, BaileysStatus } from '../channels/whatsapp/adapter.ts';
import { qrToPngDataUrl } from '../channels/whatsapp/qr.ts';
import { ChannelError, ChannelFailure, Conflict, DomainError, NotFound, Validation } from '../core/errors.ts';
import type { Instance, InstanceStatus } from '../core/instance.ts';
import type { ChannelKind } from '../core/message.ts';
import type { Gateway } from '../gateway.ts';
import { webhookUrl } from './instances.ts';

/** Evolution hands out a QR that WhatsApp accepts for about a minute. */
const EVOLUTION_QR_TTL_MS = 60_000;
/** View Channel, Send Messages, Send Messages in Threads, Read Message History, Add Reactions. */
export const DEFAULT_DISCORD_PERMISSIONS = '274877975616';
/** Provisioning on create is best effort and must not hang around. */
const PROVISION_TIMEOUT_MS = 15_000;

const CHANNEL_NAMES: Record<ChannelKind, string> = {
  'whatsapp-evolution': 'whatsapp-evolution',
  'whatsapp-baileys': 'whatsapp-baileys',
  discord: 'discord',
  slack: 'slack',
  api: 'api',
};

export interface QrResult {
  /** PNG data URL. */
  qr: string;
  expiresAt: string;
}

export interface LifecycleStatus {
  status: InstanceStatus;
  reason: string | null;
  channel: ChannelKind;
  /** An instance actor is running the channel on this node. */
  running: boolean;
  hasQr: boolean;
  lastDisconnect?: BaileysStatus['lastDisconnect'];
  qrRounds?: number;
  nextReconnectAt?: string | null;
  /** Evolution's own state word (open / connecting / close). */
  evolutionState?: string;
}

type Lifecycle = Pick<Gateway, 'instances' | 'pipeline' | 'log' | 'fetch' | 'clock'>;

function unsupported(inst: Instance, what: string): DomainError {
  return new Validation(`Channel '${CHANNEL_NAMES[inst.channel]}' does not support ${what}`, {
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

function isBaileys(a: ChannelAdapter | null): a is BaileysAdapter {
  return !!a && a.kind === 'whatsapp-baileys' && typeof (a as BaileysAdapter).currentQr === 'function';
}

export class LifecycleService {
  constructor(private gw: Lifecycle) {}

  private callOpts(timeoutMs?: number) {
    return { fetch: this.gw.fetch, clock: this.gw.clock, ...(timeoutMs ? { timeoutMs } : {}) };
  }

  private evolutionCfg(inst: Instance) {
    try {
      return evolutionConfigOf(inst);
    } catch (err) {
      throw new Validation((err as Error).message);
    }
  }

  private baileys(inst: Instance): BaileysAdapter {
    const a = this.gw.pipeline.adapter(inst.id);
    if (!isBaileys(a)) {
      throw new Conflict(
        inst.isActive
          ? `Instance '${inst.name}' is not running yet; POST /api/v2/instances/${inst.id}/connect to start it`
          : `Instance '${inst.name}' is inactive; activate it first`,
      );
    }
    return a;
  }

  /** The current pairing QR as a PNG data URL. */
  async qr(inst: Instance): Promise<QrResult> {
    if (inst.channel === 'whatsapp-evolution') {
      const cfg = this.evolutionCfg(inst);
      let res;
      try {
        res = await evolutionConnect(cfg, this.callOpts());
      } catch (err) {
        if (err instanceof ChannelError && err.status === 404) {
          throw new NotFound(`${err.message}; POST /api/v2/instances/${inst.id}/connect creates it`);
        }
        throw channelFailure(err, 'Evolution connect');
      }
      if (!res.qr) {
        if (res.state === 'open')
          throw new Conflict(`Instance '${inst.name}' is already connected to WhatsApp; no QR code needed`);
        throw new NotFound(
          `Evolution gave no QR code for '${cfg.instanceName}'${res.state ? ` (state ${res.state})` : ''}; try again in a few seconds`,
        );
      }
      return { qr: res.qr, expiresAt: new Date(this.gw.clock.now() + EVOLUTION_QR_TTL_MS).toISOString() };
    }
    if (inst.channel === 'whatsapp-baileys') {
      const a = this.baileys(inst);
      const current = a.currentQr();
      if (current) return { qr: await qrToPngDataUrl(current.qr), expiresAt: current.expiresAt };
      const s = a.status();
      if (s.status === 'connected')
        throw new Conflict(`Instance '${inst.name}' is already linked and connected; no QR code needed`);
      if (s.status === 'logged_out' || s.status === 'disconnected' || s.status === 'error') {
        throw new Conflict(
          `No QR code: the instance is ${s.status}${s.reason ? ` (${s.reason})` : ''}; POST /api/v2/instances/${inst.id}/connect to start pairing`,
        );
      }
      throw new NotFound('No QR code yet: WhatsApp has not offered one; retry in a few seconds', null, 2);
    }
    throw unsupported(
      inst,
      inst.channel === 'api' ? 'pairing (it has no remote connection)' : 'QR pairing (it connects with a bot token)',
    );
  }

  /** Links WhatsApp by phone number: returns the code to type on the phone. */
  async pair(inst: Instance, phoneNumber: string): Promise<string> {
    if (inst.channel !== 'whatsapp-baileys')
      throw unsupported(inst, 'pairing by phone number (only whatsapp-baileys does)');
    try {
      return await this.baileys(inst).requestPairingCode(phoneNumber);
    } catch (err) {
      throw channelFailure(err, 'Pairing');
    }
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
    const a = actor?.adapter ?? null;
    if (isBaileys(a)) {
      const s = a.status();
      return {
        ...base,
        status: s.status,
        reason: s.reason,
        hasQr: a.currentQr() !== null,
        lastDisconnect: s.lastDisconnect,
        qrRounds: s.qrRounds,
        nextReconnectAt: s.nextReconnectAt,
      };
    }
    if (inst.channel === 'whatsapp-evolution') {
      let cfg;
      try {
        cfg = evolutionConfigOf(inst);
      } catch (err) {
        return { ...base, status: 'error', reason: (err as Error).message };
      }
      try {
        const state = await connectionState(cfg, this.callOpts());
        const status = statusOfEvolutionState(state);
        const reason = status === 'error' ? `Evolution reports state "${state}"` : null;
        this.gw.instances.setStatus(inst.id, status, reason);
        return { ...base, status, reason, evolutionState: state };
      } catch (err) {
        const reason = (err as Error).message;
        this.gw.instances.setStatus(inst.id, 'error', reason);
        return { ...base, status: 'error', reason };
      }
    }
    return base;
  }

  /**
   * Evolution: the guide's steps 1–3 (create the Evolution instance if missing, register our
   * webhook for MESSAGES_UPSERT), then a fresh status. Socket channels: (re)start the actor.
   */
  async connect(
    inst: Instance,
    baseUrl: string,
  ): Promise<{ status: LifecycleStatus; created?: boolean; qr?: string | null }> {
    if (inst.channel === 'api') throw unsupported(inst, 'connecting (it has no remote connection)');
    if (!inst.isActive) throw new Conflict(`Instance '${inst.name}' is inactive; activate it first`);
    if (inst.channel === 'whatsapp-evolution') {
      let res;
      try {
        res = await this.provision(inst, baseUrl);
      } catch (err) {
        const failure = channelFailure(err, 'Evolution provisioning');
        if (failure.code === 'CHANNEL_ERROR') this.gw.instances.setStatus(inst.id, 'error', (err as Error).message);
        throw failure;
      }
      await this.restartActor(inst);
      return { status: await this.status(inst), created: res.created, qr: res.qr?.qr ?? null };
    }
    await this.restartActor(inst);
    return { status: await this.status(this.gw.instances.get(inst.id) ?? inst) };
  }

  private provision(inst: Instance, baseUrl: string, timeoutMs?: number) {
    const cfg = this.evolutionCfg(inst);
    const url = webhookUrl(inst, baseUrl);
    if (!url) throw new DomainError('INTERNAL_ERROR', 'no webhook URL for this channel');
    return provisionInstance(cfg, { url, base64: evolutionFlag(inst, 'webhook_base64') }, this.callOpts(timeoutMs));
  }

  /**
   * After create: Evolution instances with auto_qr are provisioned in the background. Never throws
   * and never delays the create; a failure leaves the instance in 'error' with the reason.
   */
  afterCreate(inst: Instance, baseUrl: string): Promise<void> {
    if (inst.channel !== 'whatsapp-evolution' || !evolutionFlag(inst, 'auto_qr') || !inst.isActive)
      return Promise.resolve();
    const log = this.gw.log.child({ instance: inst.name });
    return this.provision(inst, baseUrl, PROVISION_TIMEOUT_MS).then(
      (r) => log.info({ created: r.created }, 'evolution instance provisioned'),
      (err) => {
        const reason = `Evolution provisioning failed: ${err instanceof Error ? err.message : String(err)}`;
        log.warn({ reason }, 'evolution provisioning failed');
        try {
          if (this.gw.instances.get(inst.id)) this.gw.instances.setStatus(inst.id, 'error', reason);
        } catch {
          // The gateway closed meanwhile.
        }
      },
    );
  }

  async restart(inst: Instance): Promise<LifecycleStatus> {
    if (inst.channel === 'api') throw unsupported(inst, 'restart (it has no remote connection)');
    if (!inst.isActive) throw new Conflict(`Instance '${inst.name}' is inactive; activate it first`);
    if (inst.channel === 'whatsapp-evolution') {
      try {
        await evolutionRestart(this.evolutionCfg(inst), this.callOpts());
      } catch (err) {
        throw channelFailure(err, 'Evolution restart');
      }
      await this.restartActor(inst);
      return this.status(inst);
    }
    const a = this.gw.pipeline.adapter(inst.id);
    // Baileys' own restart keeps the adapter and gives a fresh QR budget.
    if (isBaileys(a)) await a.restart();
    else await this.restartActor(inst);
    return this.status(inst);
  }

  async logout(inst: Instance): Promise<LifecycleStatus> {
    if (inst.channel === 'whatsapp-evolution') {
      try {
        await evolutionLogout(this.evolutionCfg(inst), this.callOpts());
      } catch (err) {
        throw channelFailure(err, 'Evolution logout');
      }
      this.gw.instances.setStatus(inst.id, 'logged_out', 'logged out on request');
      return { ...(await this.status(inst)), status: 'logged_out', reason: 'logged out on request' };
    }
    if (inst.channel === 'whatsapp-baileys') {
      await this.baileys(inst).logout();
      return this.status(inst);
    }
    throw unsupported(inst, 'logout (it is linked by a bot token: change the token or deactivate the instance)');
  }

  discordInvite(inst: Instance): string {
    if (inst.channel !== 'discord') throw unsupported(inst, 'Discord invites');
    const clientId = inst.config.discord_client_id;
    if (typeof clientId !== 'string' || !clientId)
      throw new Validation(`Instance '${inst.name}' has no discord_client_id`, [
        { field: 'discord_client_id', problem: 'is required for an invite URL' },
      ]);
    const perms = inst.config.discord_permissions;
    return inviteUrl(
      clientId,
      typeof perms === 'number' || typeof perms === 'string' ? perms : DEFAULT_DISCORD_PERMISSIONS,
    );
  }

  private async restartActor(inst: Instance): Promise<void> {
    const actor = this.gw.pipeline.instanceActor(inst.id);
    if (actor) await actor.restart();
    else await this.gw.pipeline.syncInstance(inst);
  }
}

const services = new WeakMap<object, LifecycleService>();

/** One LifecycleService per gateway, made on first use (no wiring in gateway.ts needed). */
export function lifecycleOf(gw: Lifecycle): LifecycleService {
  let s = services.get(gw);
  if (!s) services.set(gw, (s = new LifecycleService(gw)));
  return s;
}
