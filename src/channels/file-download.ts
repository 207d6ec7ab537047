// A media file an adapter downloads itself (with the platform's credentials): a refused address
// or a 4xx is final, a network failure, 408, 429 or 5xx is retried with the message's retries.
import { ChannelError } from '../core/errors.ts';
import { OutboundRefused } from '../net/outbound.ts';

export async function downloadFile(
  fetchFn: typeof fetch,
  url: string,
  init: RequestInit,
  what: string,
  /** How a network error is told (e.g. masking a token that is part of the URL). */
  describe: (err: unknown) => string = (err) => (err instanceof Error ? err.message : String(err)),
): Promise<Response> {
  let res: Response;
  try {
    res = await fetchFn(url, init);
  } catch (err) {
    if (err instanceof OutboundRefused) throw new ChannelError(`${what}: ${err.message}`, false);
    const name = (err as Error)?.name;
    if (name === 'TimeoutError' || name === 'AbortError') throw err;
    throw new ChannelError(`${what} failed: ${describe(err)}`, true);
  }
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    const retryable = res.status >= 500 || res.status === 429 || res.status === 408;
    throw new ChannelError(`${what} answered HTTP ${res.status}`, retryable, undefined, res.status);
  }
  return res;
}
