// Leo: an AG-UI stream authenticated from the environment (LEO_BEARER_TOKEN as a Bearer token,
// LEO_SUBSCRIPTION_KEY as X-Subscription-Key). The instance URL is used when set; otherwise the
// workflow stream URL is built from LEO_API_BASE_URL and LEO_WORKFLOW_ID.
import type { Config } from '../config.ts';
import type { AgentClient, AgentEvent, AgentRequest } from './types.ts';
import { AgentError } from './types.ts';
import { AguiAgentClient } from './agui.ts';
import { errorEvent, statusError, type EndpointOptions } from './http.ts';

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
    this.problem = !url
      ? 'Leo agent has no URL: set the instance agent_api_url or LEO_API_BASE_URL and LEO_WORKFLOW_ID'
      : !leo.bearerToken
        ? 'Leo agent needs LEO_BEARER_TOKEN (not set)'
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
                h['authorization'] = `Bearer ${leo.bearerToken}`;
                if (leo.subscriptionKey) h['x-subscription-key'] = leo.subscriptionKey;
                h['content-type'] = 'application/json';
                h['accept'] = 'text/event-stream';
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
