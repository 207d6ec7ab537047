// The instance record now lives in src/core/instance.ts; re-exported for existing importers.
export type {
  AccessMode,
  AgentConfig,
  AgentType,
  ChannelConfig,
  Instance,
  InstanceSettings,
  InstanceStatus,
  ReplyMode,
} from '../core/instance.ts';
