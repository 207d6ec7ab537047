// Self-fence at the channel: every outbound call of an instance's adapter is refused once its
// shard's lease is not certainly this node's, so a paused or partitioned former owner never sends
// after another node may have taken over.
import type { ChannelAdapter } from '../../channels/types.ts';
import { ChannelError } from '../../core/errors.ts';
import type { InboundMessage } from '../../core/message.ts';

const GUARDED = new Set(['send', 'edit', 'typing']);

/**
 * The adapter with send, edit and typing refused (a retryable ChannelError) while `leaseValid()` is
 * false. `delivered` hears of every reply whose last part the channel accepted (its inbound message).
 */
export function fenceAdapter(
  adapter: ChannelAdapter,
  leaseValid: () => boolean,
  blocked: () => void,
  delivered: (inbound: InboundMessage) => void = () => {},
): ChannelAdapter {
  return new Proxy(adapter, {
    get: (target, prop) => {
      const v = Reflect.get(target, prop, target) as unknown;
      if (typeof v !== 'function') return v;
      if (typeof prop === 'string' && GUARDED.has(prop)) {
        return (...args: unknown[]) => {
          if (!leaseValid()) {
            blocked();
            return Promise.reject(new ChannelError('this node no longer owns the instance (cluster fence)', true));
          }
          const result = (v as (...a: unknown[]) => unknown).apply(target, args);
          const opts = prop === 'send' ? (args[2] as Parameters<ChannelAdapter['send']>[2] | undefined) : undefined;
          const inbound = opts?.lastPart ? opts.inbound : undefined;
          if (!inbound) return result;
          return (result as ReturnType<ChannelAdapter['send']>).then((receipt) => {
            delivered(inbound);
            return receipt;
          });
        };
      }
      return (v as (...a: unknown[]) => unknown).bind(target);
    },
  });
}
