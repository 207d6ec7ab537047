// Builds a channel field: the v2 name is the camelCase of the v1 name, and a 'secret' is masked.
import type { ChannelField, FieldType } from './types.ts';

export function field(
  v1: string,
  type: FieldType,
  more: Pick<ChannelField, 'required' | 'receives' | 'env' | 'v1Default' | 'form'> = {},
): ChannelField {
  return {
    v1,
    v2: v1.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()),
    type,
    secret: type === 'secret',
    ...more,
  };
}
