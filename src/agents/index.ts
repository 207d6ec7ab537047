// Picks the agent client for an instance and offers a helper that runs it to the final text.
import { type Clock, realClock } from '../../actors/runtime/clock.ts';
import type { Config } from '../config.ts';
import type { AgentConfig, AgentType } from '../core/instance.ts';
import { AguiAgentClient } from './agui.ts';
import { AutoAgentClient } from './auto.ts';
import { EchoAgentClient, ScriptAgentClient } from './builtin.ts';
import { type EndpointOptions, errorEvent } from './http.ts';
import { JsonAgentClient } from './json.ts';
import { LeoAgentClient } from './leo.ts';
import { OpenAiAgentClient } from './openai.ts';
import { type AgentClient, AgentError, type AgentEvent, type AgentRequest } from './types.ts';

export interface AgentClientOptions {
  leo: Config['leo'];
  fetch?: typeof fetch;
  clock?: Clock;
}

/**
 * The protocol an instance uses. An explicit type wins; `auto` becomes `leo` when the v1
 * `default_agent` is "leo" or the URL lives under LEO_API_BASE_URL.
 */
export function resolveAgentType(agent: AgentConfig, leo: Config['leo']): AgentType {
  if (agent.type !== 'auto') return agent.type;
  if (agent.defaultAgent?.trim().toLowerCase() === 'leo') return 'leo';
  const base = leo.apiBaseUrl?.replace(/\/+$/, '');
  if (base && agent.url && (agent.url === base || agent.url.startsWith(`${base}/`))) return 'leo';
  return 'auto';
}

export function createAgentClient(agent: AgentConfig, opts: AgentClientOptions): AgentClient {
  const type = resolveAgentType(agent, opts.leo);
  const base = {
    apiKey: agent.apiKey,
    headers: agent.headers ?? {},
    timeoutMs: Math.max(0, agent.timeoutSeconds) * 1000,
    idleTimeoutMs: Math.max(0, agent.idleTimeoutSeconds) * 1000,
    fetch: opts.fetch ?? fetch,
    clock: opts.clock ?? realClock,
  };
  if (type === 'leo') return new LeoAgentClient({ ...base, url: agent.url }, opts.leo);
  // Built in: no endpoint (a URL, if set, is ignored).
  if (type === 'echo') return new EchoAgentClient(base.clock);
  if (type === 'script') return new ScriptAgentClient(agent.script, base.clock);
  if (!agent.url) return failingClient(new AgentError('instance has no agent_api_url configured', false));
  // The seed JSON body (json, and auto which sends it too) follows the v1 guide's path rule.
  const url = type === 'json' || type === 'auto' ? withAgentChatPath(agent.url) : agent.url;
  const ep: EndpointOptions = { ...base, url };
  switch (type) {
    case 'json':
      return new JsonAgentClient(ep);
    case 'agui':
      return new AguiAgentClient(ep);
    case 'openai':
      return new OpenAiAgentClient(ep, agent.model);
    default:
      return new AutoAgentClient(ep);
  }
}

/** The v1 guide's "Agent API Contract": a base URL with no path is called at `/api/agent/chat`. */
export const AGENT_CHAT_PATH = '/api/agent/chat';
export function withAgentChatPath(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url;
  }
  if (u.pathname !== '/' && u.pathname !== '') return url;
  u.pathname = AGENT_CHAT_PATH;
  return u.toString();
}

function failingClient(err: AgentError): AgentClient {
  return {
    run: () =>
      (async function* () {
        yield errorEvent(err);
      })(),
  };
}

/**
 * Runs a client to its final text, passing every event to `onEvent` (deltas for the stream
 * hub). Throws the AgentError of an `error` event.
 */
export async function runAgent(
  client: AgentClient,
  req: AgentRequest,
  signal: AbortSignal,
  onEvent?: (e: AgentEvent) => void,
): Promise<string> {
  for await (const ev of client.run(req, signal)) {
    onEvent?.(ev);
    if (ev.type === 'final') return ev.text;
    if (ev.type === 'error') throw new AgentError(ev.message, ev.retryable, ev.status);
  }
  throw new AgentError('agent call ended without a reply', true);
}

export type { AgentClient, AgentEvent, AgentRequest } from './types.ts';
export { AgentError } from './types.ts';
