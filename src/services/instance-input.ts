// Instance input: what a create or update may say, checked and merged over the defaults (create)
// or the current record (update). Both API versions map their bodies to InstanceInput; the
// channel's definition says which config fields exist, their types and which are required.

import { scriptProblems } from '../agents/builtin.ts';
import { CHANNEL_KINDS, channelOf, inferChannel } from '../channels/registry.ts';
import type { FieldType } from '../channels/types.ts';
import { Validation } from '../core/errors.ts';
import type { AgentConfig, ChannelConfig, Instance, InstanceSettings } from '../core/instance.ts';
import type { ChannelKind } from '../core/message.ts';
import { literalProblem } from '../net/outbound.ts';
import { mergeMedia, mergeMessaging } from './instance-options.ts';
import { accessSettingsProblems } from './keyword-gates.ts';

export interface InstanceInput {
  name?: string;
  channel?: ChannelKind;
  isActive?: boolean;
  isDefault?: boolean;
  agent?: Partial<AgentConfig>;
  config?: ChannelConfig;
  settings?: Partial<InstanceSettings>;
  /** The v2 design's `messaging` and `media` options (stored with the settings; merged on update). */
  messaging?: unknown;
  media?: unknown;
}

/** Headers the HTTP client owns: set by a user they would redirect or smuggle requests. */
const RESERVED_HEADERS = new Set([
  'host',
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'content-length',
]);

/** Bounds of one instance's extension settings (they are stored with the instance and replicated). */
const MAX_EXTENSION_SETTINGS = 50;
const MAX_EXTENSION_BYTES = 32 * 1024;
const MAX_EXTENSION_DEPTH = 8;

function extensionSettingProblem(key: string, v: unknown): string | null {
  if (!/^[A-Za-z][A-Za-z0-9_.-]{0,63}$/.test(key)) return 'is not a setting name (letters, digits, _ . -; ≤ 64)';
  // Depth first, without recursion: JSON.stringify of a deep value would overflow the stack.
  const stack: Array<[unknown, number]> = [[v, 1]];
  while (stack.length) {
    const [x, depth] = stack.pop()!;
    if (x === null || typeof x !== 'object') continue;
    if (depth > MAX_EXTENSION_DEPTH) return `nests deeper than ${MAX_EXTENSION_DEPTH} levels`;
    for (const c of Array.isArray(x) ? x : Object.values(x)) stack.push([c, depth + 1]);
  }
  if (JSON.stringify(v).length > MAX_EXTENSION_BYTES)
    return `must be at most ${MAX_EXTENSION_BYTES} characters as JSON`;
  return null;
}

export const NAME_PATTERN = /^[a-z0-9][a-z0-9-]{1,62}$/;
const AGENT_TYPES = ['auto', 'json', 'agui', 'openai', 'leo', 'echo', 'script'] as const;
const REPLY_MODES = ['final', 'blocks', 'edit'] as const;
const ACCESS_MODES = ['disabled', 'blocklist', 'allowlist'] as const;

interface Problem {
  field: string;
  problem: string;
}

function checkUrl(v: unknown, protocols: string[]): string | null {
  if (typeof v !== 'string' || v.length > 2048) return 'must be a URL';
  try {
    const u = new URL(v);
    if (!protocols.includes(u.protocol)) return `must use ${protocols.join(' or ')}`;
    if (!u.hostname) return 'must have a host';
    // A fragment would swallow the path a client appends to the URL.
    if (v.includes('#')) return 'must not have a fragment (#)';
    return literalProblem(v);
  } catch {
    return 'must be a URL';
  }
}

function checkField(kind: FieldType, v: unknown): string | null {
  switch (kind) {
    case 'string':
      return typeof v === 'string' && v.length <= 4096 ? null : 'must be a string (≤ 4096 characters)';
    case 'secret':
      if (typeof v !== 'string' || v.length > 4096) return 'must be a string (≤ 4096 characters)';
      // A blank secret would work as a credential anyone can guess (e.g. a webhook's evolution_key).
      return v.trim() === '' ? 'must not be blank' : null;
    case 'bool':
      return typeof v === 'boolean' ? null : 'must be a boolean';
    case 'int':
      return Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 1e9
        ? null
        : 'must be a non-negative integer';
    case 'number':
      return typeof v === 'number' && Number.isFinite(v) && v > 0 && v <= 1e6 ? null : 'must be a positive number';
    case 'intOrString':
      return (Number.isInteger(v) && (v as number) >= 0) || (typeof v === 'string' && /^\d{1,20}$/.test(v))
        ? null
        : 'must be an integer';
    case 'http':
      return checkUrl(v, ['http:', 'https:']);
    case 'ws':
      return checkUrl(v, ['ws:', 'wss:']);
    case 'strings':
      return Array.isArray(v) && v.length <= 500 && v.every((s) => typeof s === 'string' && s.length <= 64)
        ? null
        : 'must be a list of ids';
  }
}

export const DEFAULT_AGENT: AgentConfig = {
  url: null,
  apiKey: null,
  type: 'auto',
  timeoutSeconds: 60,
  idleTimeoutSeconds: 30,
  defaultAgent: null,
  model: null,
  headers: {},
};
export const DEFAULT_SETTINGS: InstanceSettings = {
  replyMode: 'final',
  errorReply: null,
  accessMode: 'blocklist',
  maxTextLength: null,
};

/**
 * Validates and merges input over a base (create: defaults; update: current). Throws VALIDATION_ERROR listing every
 * problem. Field types, required fields and cross-field checks come from the channel's definition.
 */
export function validateInstanceInput(
  input: InstanceInput,
  base: Instance | null,
  defaultAgentTimeoutSeconds: () => number,
): Omit<Instance, 'id' | 'seq' | 'webhookSecret' | 'status' | 'statusReason' | 'createdAt' | 'updatedAt'> {
  const problems: Problem[] = [];
  const name = input.name ?? base?.name;
  if (name === undefined) problems.push({ field: 'name', problem: 'is required' });
  else if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    problems.push({
      field: 'name',
      problem: 'must be a slug: lowercase letters, digits and dashes, 2–63 characters, starting with a letter or digit',
    });
  }
  const config: ChannelConfig = { ...(base?.config ?? {}), ...(input.config ?? {}) };
  let channel: ChannelKind;
  if (base) {
    channel = base.channel;
    if (input.channel !== undefined && input.channel !== base.channel)
      problems.push({ field: 'channel', problem: 'cannot be changed; create a new instance' });
  } else {
    channel = input.channel ?? inferChannel(config);
    if (!CHANNEL_KINDS.includes(channel))
      problems.push({ field: 'channel', problem: `must be one of ${CHANNEL_KINDS.join(', ')}` });
  }
  const def = channelOf(channel);
  const fields = def?.fields ?? [];
  for (const [k, v] of Object.entries(input.config ?? {})) {
    const kind = fields.find((f) => f.v1 === k)?.type;
    if (!kind) {
      problems.push({ field: k, problem: `is not a field of a ${channel} instance` });
      continue;
    }
    if (v === null) {
      delete config[k];
      continue;
    }
    const p = checkField(kind, v);
    if (p) problems.push({ field: k, problem: p });
  }
  // A stored secret is never sent to a new endpoint: changing an endpoint drops the secrets that
  // go to it unless they are given again in the same request.
  const cleared = new Map<string, string>();
  if (base) {
    for (const { v1: urlField, receives } of fields) {
      if (!receives || !(urlField in (input.config ?? {})) || input.config![urlField] === base.config[urlField])
        continue;
      for (const secret of receives) {
        if (secret in (input.config ?? {}) || config[secret] === undefined) continue;
        delete config[secret];
        cleared.set(secret, urlField);
      }
    }
  }
  for (const req of fields.filter((f) => f.required).map((f) => f.v1)) {
    if (config[req] === undefined || config[req] === '') {
      const url = cleared.get(req);
      problems.push({
        field: req,
        problem: url
          ? `must be given again when ${url} changes (a stored secret is never sent to a new endpoint)`
          : `is required for a ${channel} instance`,
      });
    }
  }
  if (def?.validate) problems.push(...def.validate(config));
  if (def?.fillDefaults && name) def.fillDefaults(config, name);

  const agent: AgentConfig = {
    ...DEFAULT_AGENT,
    timeoutSeconds: defaultAgentTimeoutSeconds(),
    ...(base?.agent ?? {}),
  };
  const a = input.agent ?? {};
  if (base && a.url !== undefined && a.url !== base.agent.url) {
    // Same rule for the agent: its key and headers are not carried over to a new URL.
    if (a.apiKey === undefined) agent.apiKey = null;
    if (a.headers === undefined) agent.headers = {};
  }
  if (a.url !== undefined) {
    if (a.url === null) agent.url = null;
    else {
      const p = checkUrl(a.url, ['http:', 'https:']);
      if (p) problems.push({ field: 'agent.url', problem: p });
      else agent.url = a.url;
    }
  }
  if (a.apiKey !== undefined) {
    if (a.apiKey !== null && (typeof a.apiKey !== 'string' || a.apiKey.length > 4096))
      problems.push({ field: 'agent.apiKey', problem: 'must be a string' });
    else agent.apiKey = a.apiKey;
  }
  if (a.type !== undefined) {
    if (!AGENT_TYPES.includes(a.type as never))
      problems.push({ field: 'agent.type', problem: `must be one of ${AGENT_TYPES.join(', ')}` });
    else agent.type = a.type;
  }
  if (a.timeoutSeconds !== undefined) {
    if (!Number.isInteger(a.timeoutSeconds) || a.timeoutSeconds < 1 || a.timeoutSeconds > 600)
      problems.push({ field: 'agent.timeoutSeconds', problem: 'must be an integer between 1 and 600 seconds' });
    else agent.timeoutSeconds = a.timeoutSeconds;
  }
  if (a.idleTimeoutSeconds !== undefined) {
    if (!Number.isInteger(a.idleTimeoutSeconds) || a.idleTimeoutSeconds < 1 || a.idleTimeoutSeconds > 600)
      problems.push({ field: 'agent.idleTimeoutSeconds', problem: 'must be an integer between 1 and 600 seconds' });
    else agent.idleTimeoutSeconds = a.idleTimeoutSeconds;
  }
  if (a.script !== undefined) {
    const p = scriptProblems(a.script);
    if (p.length) problems.push(...p);
    else agent.script = a.script;
  }
  if (a.defaultAgent !== undefined) agent.defaultAgent = a.defaultAgent;
  if (a.model !== undefined) agent.model = a.model;
  if (a.headers !== undefined) {
    const h = a.headers ?? {};
    if (
      typeof h !== 'object' ||
      Object.entries(h).some(([k, v]) => !/^[A-Za-z0-9-]{1,64}$/.test(k) || typeof v !== 'string' || /[\r\n]/.test(v))
    ) {
      problems.push({ field: 'agent.headers', problem: 'must map header names to single-line strings' });
    } else if (Object.keys(h).some((k) => RESERVED_HEADERS.has(k.toLowerCase()))) {
      problems.push({
        field: 'agent.headers',
        problem: `must not set Host or hop-by-hop headers (${[...RESERVED_HEADERS].join(', ')})`,
      });
    } else agent.headers = h;
  }
  // An instance without an agent URL can still be created (e.g. to pair first); the pipeline
  // dead-letters its messages with a clear reason.

  const settings: InstanceSettings = { ...DEFAULT_SETTINGS, ...(base?.settings ?? {}) };
  const s = input.settings ?? {};
  if (s.replyMode !== undefined) {
    if (!REPLY_MODES.includes(s.replyMode))
      problems.push({ field: 'settings.replyMode', problem: `must be one of ${REPLY_MODES.join(', ')}` });
    else settings.replyMode = s.replyMode;
  }
  if (s.accessMode !== undefined) {
    if (!ACCESS_MODES.includes(s.accessMode))
      problems.push({ field: 'settings.accessMode', problem: `must be one of ${ACCESS_MODES.join(', ')}` });
    else settings.accessMode = s.accessMode;
  }
  if (s.errorReply !== undefined) {
    if (s.errorReply !== null && (typeof s.errorReply !== 'string' || s.errorReply.length > 4000))
      problems.push({ field: 'settings.errorReply', problem: 'must be a string (≤ 4000 characters) or null' });
    else settings.errorReply = s.errorReply;
  }
  if (s.maxTextLength !== undefined) {
    if (
      s.maxTextLength !== null &&
      (!Number.isInteger(s.maxTextLength) || s.maxTextLength < 100 || s.maxTextLength > 100_000)
    )
      problems.push({
        field: 'settings.maxTextLength',
        problem: 'must be an integer between 100 and 100000, or null',
      });
    else settings.maxTextLength = s.maxTextLength;
  }
  for (const [key, merge] of [
    ['messaging', mergeMessaging],
    ['media', mergeMedia],
  ] as const) {
    const patch = input[key] !== undefined ? input[key] : s[key];
    if (patch !== undefined) settings[key] = merge(settings[key], patch, problems);
  }
  for (const [k, v] of Object.entries(s)) {
    if (k in DEFAULT_SETTINGS || k === 'messaging' || k === 'media') continue;
    // Extension settings (access gates, keyword triggers): null removes one; each is bounded.
    if (v === null) delete settings[k];
    else {
      const p = extensionSettingProblem(k, v);
      if (p) problems.push({ field: `settings.${k}`, problem: p });
      else settings[k] = v;
    }
  }
  if (Object.keys(settings).length - Object.keys(DEFAULT_SETTINGS).length > MAX_EXTENSION_SETTINGS)
    problems.push({ field: 'settings', problem: `has more than ${MAX_EXTENSION_SETTINGS} extension settings` });
  problems.push(...accessSettingsProblems(settings));
  if (problems.length) throw new Validation(problems.map((p) => `${p.field} ${p.problem}`).join('; '), problems);
  return {
    name: name as string,
    channel,
    config,
    agent,
    settings,
    isActive: input.isActive ?? base?.isActive ?? true,
    isDefault: input.isDefault ?? base?.isDefault ?? false,
  };
}
