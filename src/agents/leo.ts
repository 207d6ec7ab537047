// Leo: an AG-UI stream authenticated from the environment (LEO_BEARER_TOKEN as a Bearer token,
// LEO_SUBSCRIPTION_KEY as X-Subscription-Key). The instance URL is used when set; otherwise the
// workflow stream URL is built from LEO_API_BASE_URL and LEO_WORKFLOW_ID.
import type { Config } from '../config.ts';
import { AguiAgentClient } from './agui.ts';
import { type EndpointOptions, errorEvent, statusError } from './http.ts';
import type { AgentClient, AgentEvent, AgentRequest } from './types.ts';
import { AgentError } from './types.ts';

export type LeoConfig = Config['leo'];

export function leoStreamUrl(leo: LeoConfig): string | null {
  if (!leo.apiBaseUrl || !leo.workflowId) return null;
  return `${leo.apiBaseUrl.replace(/\/+$/, '')}/workflow-engine/${encodeURIComponent(leo.workflowId)}/stream`;
}

export const LEO_TOKEN_REJECTED =
  'Leo rejected the bearer token (HTTP 401): LEO_BEARER_TOKEN has expired or is invalid; refresh LEO_BEARER_TOKEN (copy a new token from the Leo portal) and restart';

async function leoStatusError(res: Response): Promise<AgentError> {
  if (res.status === 401) {
    await res.body?.cancel().catch(() => {});
    return new AgentError(LEO_TOKEN_REJECTED, false, 401);
  }
  return statusError(res, 'Leo');
}

export class LeoAgentClient implements AgentClient {
  private readonly inner: AguiAgentClient | null;
  private readonly problem: string | null;

  constructor(ep: Omit<EndpointOptions, 'url'> & { url: string | null }, leo: LeoConfig) {
    const url = ep.url || leoStreamUrl(leo);
    // The bearer token and subscription key are the operator's, not the instance's: they are sent
    // only to the LEO_API_BASE_URL host, whatever URL an instance was given.
    const leoOrigin = leo.apiBaseUrl ? originOf(leo.apiBaseUrl) : null;
    this.problem = !url
      ? 'Leo agent has no URL: set the instance agent_api_url or LEO_API_BASE_URL and LEO_WORKFLOW_ID'
      : !leo.bearerToken
        ? 'Leo agent needs LEO_BEARER_TOKEN (not set)'
        : !leoOrigin
          ? 'Leo agent needs LEO_API_BASE_URL: the Leo credentials are only sent to that host'
          : originOf(url) !== leoOrigin
            ? `Leo credentials are only sent to ${leoOrigin}; this instance's agent URL points elsewhere`
            : null;
    this.inner =
      this.problem || !url
        ? null
        : new AguiAgentClient(
            { ...ep, url },
            {
              headers: (req) => {
                // The instance's agent_api_key (e.g. "leo_builtin") is a marker, not a credential.
                const h: Record<string, string> = { ...ep.headers };
                h.authorization = `Bearer ${leo.bearerToken}`;
                if (leo.subscriptionKey) h['x-subscription-key'] = leo.subscriptionKey;
                h['content-type'] = 'application/json';
                h.accept = 'text/event-stream';
                h['idempotency-key'] = req.idempotencyKey;
                return h;
              },
              mapStatus: leoStatusError,
            },
          );
  }

  run(req: AgentRequest, signal: AbortSignal): AsyncIterable<AgentEvent> {
    if (this.inner) return this.inner.run(req, signal);
    const problem = this.problem!;
    return (async function* () {
      yield errorEvent(new AgentError(problem, false));
    })();
  }
}

function originOf(url: string): string | null {
  try {
    return new URL(url).origin;
  } catch {
    return null;
  }
}
