// WhatsApp through an Evolution API server: webhook in, HTTP calls out; pairing, status, restart
// and logout are proxied to Evolution.

import { ChannelError, Validation } from '../../core/errors.ts';
import { constantTimeEqual } from '../../services/ids.ts';
import { phoneOrJid } from '../addressing.ts';
import { field } from '../fields.ts';
import type { ChannelDefinition, LifecycleContext } from '../types.ts';
import { EVOLUTION_CAPABILITIES, EvolutionAdapter, statusOfEvolutionState } from './adapter.ts';
import {
  connect,
  connectionState,
  evolutionConfigOf,
  evolutionFlag,
  logout,
  provisionInstance,
  restart,
} from './client.ts';
import { parseEvolutionWebhook } from './parse.ts';

/** Evolution hands out a QR that WhatsApp accepts for about a minute. */
const EVOLUTION_QR_TTL_MS = 60_000;
/** Provisioning on create is best effort and must not hang around. */
const PROVISION_TIMEOUT_MS = 15_000;

function callOpts(ctx: LifecycleContext, timeoutMs?: number) {
  return { fetch: ctx.fetch, clock: ctx.clock, ...(timeoutMs ? { timeoutMs } : {}) };
}

function configOf(ctx: LifecycleContext) {
  try {
    return evolutionConfigOf(ctx.instance);
  } catch (err) {
    throw ctx.fail('VALIDATION_ERROR', (err as Error).message);
  }
}

/** Creates the Evolution instance if missing and registers our webhook for MESSAGES_UPSERT. */
function provision(ctx: LifecycleContext, timeoutMs?: number) {
  const cfg = configOf(ctx);
  if (!ctx.webhookUrl) throw ctx.fail('INTERNAL_ERROR', 'no webhook URL for this channel');
  return provisionInstance(
    cfg,
    { url: ctx.webhookUrl, base64: evolutionFlag(ctx.instance, 'webhook_base64') },
    callOpts(ctx, timeoutMs),
  );
}

export const evolutionChannel: ChannelDefinition = {
  kind: 'whatsapp-evolution',
  platform: 'whatsapp',
  name: 'WhatsApp via Evolution API',
  library: 'Evolution API (HTTP)',
  version: 'Evolution API v2',
  capabilities: EVOLUTION_CAPABILITIES,
  fields: [
    field('evolution_url', 'http', {
      required: true,
      receives: ['evolution_key'],
      v1Default: 'EVOLUTION_API_URL',
      form: { label: 'Evolution API URL' },
    }),
    field('evolution_key', 'secret', {
      required: true,
      v1Default: 'EVOLUTION_API_KEY',
      form: { label: 'Evolution API key' },
    }),
    field('whatsapp_instance', 'string', {
      form: { label: 'Evolution instance name', hint: 'Defaults to the instance name' },
    }),
    field('webhook_base64', 'bool'),
    field('auto_qr', 'bool'),
    field('evolution_quote_replies', 'bool'),
    field('evolution_send_delay_ms', 'int'),
  ],
  inferredFrom: ['evolution_url', 'evolution_key'],
  fillDefaults(config, name) {
    if (!config.whatsapp_instance) config.whatsapp_instance = name;
  },
  createAdapter: (inst, d) => new EvolutionAdapter(inst, { clock: d.clock, fetch: d.fetch, log: d.log }),
  webhook: {
    path: 'evolution',
    mode: 'parse',
    docs: {
      summary: 'Evolution API webhook',
      description:
        "messages.upsert from an Evolution server. Authenticated by ?token= / x-webhook-token, or by a body apikey equal to the instance's Evolution key. Answered after the durable write.",
      body: 'Evolution API webhook ({event, instance, data, apikey, ...})',
    },
    authenticates(inst, body) {
      const bodyKey = (body as { apikey?: unknown } | null)?.apikey;
      const key = inst.config.evolution_key;
      return typeof bodyKey === 'string' && typeof key === 'string' && constantTimeEqual(bodyKey, key);
    },
    parse: (body, instanceId) => {
      // A malformed body is the sender's mistake (400), not something to ignore with a 200.
      const event = (body as { event?: unknown } | null)?.event;
      if (event !== undefined && event !== null && typeof event !== 'string')
        throw new Validation('event: must be a string', [{ field: 'event', problem: 'must be a string' }]);
      return parseEvolutionWebhook(body, instanceId);
    },
  },
  chatFor: phoneOrJid,
  phoneSenderIds: true,
  agentSource: 'evolution-api',
  pairing: {
    async qr(ctx) {
      const cfg = configOf(ctx);
      let res;
      try {
        res = await connect(cfg, callOpts(ctx));
      } catch (err) {
        if (err instanceof ChannelError && err.status === 404) {
          throw ctx.fail('NOT_FOUND', `${err.message}; POST /api/v2/instances/${ctx.instance.id}/connect creates it`);
        }
        throw ctx.failure(err, 'Evolution connect');
      }
      if (!res.qr) {
        if (res.state === 'open')
          throw ctx.fail(
            'CONFLICT',
            `Instance '${ctx.instance.name}' is already connected to WhatsApp; no QR code needed`,
          );
        throw ctx.fail(
          'NOT_FOUND',
          `Evolution gave no QR code for '${cfg.instanceName}'${res.state ? ` (state ${res.state})` : ''}; try again in a few seconds`,
        );
      }
      return { qr: res.qr, expiresAt: new Date(ctx.clock.now() + EVOLUTION_QR_TTL_MS).toISOString() };
    },
  },
  remote: {
    async status(ctx, base) {
      let cfg;
      try {
        cfg = evolutionConfigOf(ctx.instance);
      } catch (err) {
        return { ...base, status: 'error', reason: (err as Error).message };
      }
      try {
        const state = await connectionState(cfg, callOpts(ctx));
        const status = statusOfEvolutionState(state);
        const reason = status === 'error' ? `Evolution reports state "${state}"` : null;
        ctx.setStatus(status, reason);
        return { ...base, status, reason, evolutionState: state };
      } catch (err) {
        const reason = (err as Error).message;
        ctx.setStatus('error', reason);
        return { ...base, status: 'error', reason };
      }
    },
    async connect(ctx) {
      let res;
      try {
        res = await provision(ctx);
      } catch (err) {
        const failure = ctx.failure(err, 'Evolution provisioning');
        if (failure.code === 'CHANNEL_ERROR') ctx.setStatus('error', (err as Error).message);
        throw failure;
      }
      return { created: res.created, qr: res.qr?.qr ?? null };
    },
    async afterCreate(ctx) {
      if (!evolutionFlag(ctx.instance, 'auto_qr')) return;
      try {
        const r = await provision(ctx, PROVISION_TIMEOUT_MS);
        ctx.log.info({ created: r.created }, 'evolution instance provisioned');
      } catch (err) {
        const reason = `Evolution provisioning failed: ${err instanceof Error ? err.message : String(err)}`;
        ctx.log.warn({ reason }, 'evolution provisioning failed');
        ctx.setStatus('error', reason);
      }
    },
    async restart(ctx) {
      try {
        await restart(configOf(ctx), callOpts(ctx));
      } catch (err) {
        throw ctx.failure(err, 'Evolution restart');
      }
      return false;
    },
    async logout(ctx) {
      try {
        await logout(configOf(ctx), callOpts(ctx));
      } catch (err) {
        throw ctx.failure(err, 'Evolution logout');
      }
      ctx.setStatus('logged_out', 'logged out on request');
      return { ...(await ctx.status()), status: 'logged_out', reason: 'logged out on request' };
    },
  },
  traceSteps: { sent: 'evolution_api_called' },
};
