// The channels this gateway speaks: one line per channel. Everything else asks here (by kind)
// instead of naming a channel; a new channel is a folder exporting a ChannelDefinition plus a line
// below.
import type { ChannelConfig } from '../core/instance.ts';
import type { ChannelKind } from '../core/message.ts';
import { apiChannel } from './api/index.ts';
import { discordChannel } from './discord/index.ts';
import { evolutionChannel } from './evolution/index.ts';
import { slackChannel } from './slack/index.ts';
import { telegramChannel } from './telegram/index.ts';
import type { AdapterFactory, ChannelDefinition, ChannelField } from './types.ts';
import { webchatChannel } from './webchat/index.ts';
import { whatsappChannel } from './whatsapp/index.ts';
import { whatsappCloudChannel } from './whatsapp-cloud/index.ts';

export type { AdapterDeps, AdapterFactory } from './types.ts';

export const CHANNELS: readonly ChannelDefinition[] = [
  evolutionChannel,
  whatsappChannel,
  whatsappCloudChannel,
  discordChannel,
  slackChannel,
  telegramChannel,
  apiChannel,
  webchatChannel,
];

const byKind = new Map(CHANNELS.map((d) => [d.kind, d]));

export const CHANNEL_KINDS: readonly ChannelKind[] = CHANNELS.map((d) => d.kind);

export function channelOf(kind: string): ChannelDefinition | null {
  return byKind.get(kind) ?? null;
}

/** For kinds read from the database (validated on write): an unknown one is a programming error. */
export function requireChannel(kind: string): ChannelDefinition {
  const d = byKind.get(kind);
  if (!d) throw new Error(`unknown channel kind '${kind}'`);
  return d;
}

export const DEFAULT_FACTORIES: Record<ChannelKind, AdapterFactory> = Object.fromEntries(
  CHANNELS.map((d) => [d.kind, d.createAdapter]),
);

/** The platform of a kind (both WhatsApp kinds are one platform: a number is the same user on both). */
export function platformOf(kind: string | null): string {
  if (kind === null) return apiChannel.platform;
  return byKind.get(kind)?.platform ?? kind;
}

/** Platforms that group several kinds; a filter or rule may name one instead of a kind. */
export const SHARED_PLATFORMS: readonly string[] = [
  ...new Set(CHANNELS.filter((d) => CHANNELS.some((o) => o !== d && o.platform === d.platform)).map((d) => d.platform)),
].filter((p) => !byKind.has(p));

/** What a channel criterion may be: a shared platform or a kind. */
export const CHANNEL_CRITERIA: readonly string[] = [...SHARED_PLATFORMS, ...CHANNEL_KINDS];

/** The kinds a criterion (a kind or a shared platform) names. */
export function kindsMatching(criterion: string): string[] {
  if (byKind.has(criterion)) return [criterion];
  const kinds = CHANNELS.filter((d) => d.platform === criterion).map((d) => d.kind);
  return kinds.length ? kinds : [criterion];
}

export function channelMatches(criterion: string, kind: string): boolean {
  return criterion === kind || (!byKind.has(criterion) && platformOf(kind) === criterion);
}

/** v1 creates without `channel`: the first channel one of whose identifying fields is given. */
export function inferChannel(config: ChannelConfig): ChannelKind {
  for (const d of CHANNELS) {
    if (Array.isArray(d.inferredFrom) && d.inferredFrom.some((f) => f in config)) return d.kind;
  }
  const fallback = CHANNELS.find((d) => d.inferredFrom === 'otherwise');
  if (!fallback) throw new Error('no channel is marked as the fallback for v1 creates');
  return fallback.kind;
}

/**
 * A v1 create's channel fields completed from the environment (fields with `v1Default`, e.g. the
 * guide's EVOLUTION_API_URL / EVOLUTION_API_KEY): for the channel the create names or infers, or —
 * when it names none and nothing in it points elsewhere — the first channel with defaults set.
 * Returns the channel to create (undefined: leave it to the usual inference).
 */
export function withV1Defaults(
  config: ChannelConfig,
  channel: ChannelKind | undefined,
  env: Readonly<Record<string, string | undefined>>,
): ChannelKind | undefined {
  const defaultsOf = (d: ChannelDefinition) =>
    d.fields.filter((f) => f.v1Default && env[f.v1Default] !== undefined && env[f.v1Default] !== '');
  let target = channel ? channelOf(channel) : null;
  if (!channel) {
    const inferred = channelOf(inferChannel(config));
    target = inferred?.inferredFrom === 'otherwise' ? (CHANNELS.find((d) => defaultsOf(d).length) ?? null) : inferred;
  }
  if (!target) return channel;
  for (const f of defaultsOf(target)) if (config[f.v1] === undefined) config[f.v1] = env[f.v1Default!];
  return channel ?? target.kind;
}

/** Every channel field by v1 name (a name two channels share, e.g. auto_qr, has one type). */
export const ALL_CHANNEL_FIELDS: ReadonlyMap<string, ChannelField> = new Map(
  CHANNELS.flatMap((d) => d.fields.map((f) => [f.v1, f] as const)),
);

/** Names of every secret field of every channel: the views mask these wherever they appear. */
export const SECRET_FIELDS: ReadonlySet<string> = new Set(
  CHANNELS.flatMap((d) => d.fields.filter((f) => f.secret).map((f) => f.v1)),
);

/** Kinds that pair by phone number, for "only … does" messages. */
export const PAIRING_CODE_KINDS: readonly ChannelKind[] = CHANNELS.filter((d) => d.pairing?.code).map((d) => d.kind);
