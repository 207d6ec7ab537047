// The instance record as the services, actors and channel adapters see it.
import type { ChannelKind } from './message.ts';

export type InstanceStatus = 'connecting' | 'connected' | 'disconnected' | 'logged_out' | 'error';
/** `echo` and `script` are built in (src/agents/builtin.ts): no endpoint, no outside service. */
export type AgentType = 'auto' | 'json' | 'agui' | 'openai' | 'leo' | 'echo' | 'script';

/** The `script` agent's rules: the first pattern (a case-insensitive regex) that matches picks the reply. */
export interface AgentScript {
  rules: Array<{ pattern: string; reply: string }>;
  /** Said when no rule matches. */
  fallback?: string | null;
}
export type ReplyMode = 'final' | 'blocks' | 'edit';
export type AccessMode = 'disabled' | 'blocklist' | 'allowlist';

export interface AgentConfig {
  url: string | null;
  apiKey: string | null;
  type: AgentType;
  timeoutSeconds: number;
  /** Idle timeout between stream events. */
  idleTimeoutSeconds: number;
  /** v1 `default_agent` (e.g. "leo"). */
  defaultAgent: string | null;
  /** OpenAI-compatible model name. */
  model: string | null;
  headers: Record<string, string>;
  /** Rules of the built-in `script` agent. */
  script?: AgentScript | null;
}

export interface InstanceSettings {
  replyMode: ReplyMode;
  /** Sent to the user when a message is dead-lettered; null = say nothing. */
  errorReply: string | null;
  accessMode: AccessMode;
  /** Overrides the channel's max text length. */
  maxTextLength: number | null;
  [key: string]: unknown;
}

/**
 * Channel-specific fields, stored under their v1 (snake_case) names, e.g. evolution_url,
 * evolution_key, whatsapp_instance, webhook_base64, auto_qr, discord_bot_token,
 * discord_client_id, discord_guild_id, discord_default_channel_id, discord_permissions,
 * discord_slash_commands_enabled, discord_api_url, slack_bot_token, slack_signing_secret,
 * slack_app_token, slack_api_url, whatsapp_ws_url.
 */
export type ChannelConfig = Record<string, unknown>;

export interface Instance {
  id: string;
  seq: number;
  name: string;
  channel: ChannelKind;
  isActive: boolean;
  isDefault: boolean;
  agent: AgentConfig;
  config: ChannelConfig;
  settings: InstanceSettings;
  webhookSecret: string;
  status: InstanceStatus;
  statusReason: string | null;
  createdAt: string;
  updatedAt: string;
}
