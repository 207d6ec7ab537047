// TypeBox schemas shared by the route modules, generated where possible from the service's
// field tables so the API and the validation rules cannot drift apart.
import { type TSchema, t } from 'elysia';
import { CHANNEL_KINDS, ALL_CHANNEL_FIELDS as FIELDS } from '../channels/registry.ts';
import type { FieldType } from '../channels/types.ts';

export function fieldSchema(kind: FieldType, name: string): TSchema {
  const d = { description: name.replace(/_/g, ' ') };
  switch (kind) {
    case 'bool':
      return t.Boolean(d);
    case 'int':
      return t.Integer({ ...d, minimum: 0 });
    case 'number':
      return t.Number({ ...d, exclusiveMinimum: 0 });
    case 'intOrString':
      return t.Union([t.Integer({ minimum: 0 }), t.String({ pattern: '^\\d{1,20}$' })], d);
    case 'strings':
      return t.Array(t.String({ maxLength: 64 }), { ...d, maxItems: 500 });
    case 'secret':
      return t.String({ ...d, maxLength: 4096, description: `${d.description} (secret; returned masked)` });
    case 'http':
      return t.String({ ...d, maxLength: 2048, description: `${d.description} (http/https URL)` });
    case 'ws':
      return t.String({ ...d, maxLength: 2048, description: `${d.description} (ws/wss URL)` });
    default:
      return t.String({ ...d, maxLength: 4096 });
  }
}

/** Every channel field across channels, by v1 (snake_case) name. */
export const ALL_CHANNEL_FIELDS: Record<string, FieldType> = Object.fromEntries(
  [...FIELDS.values()].map((f) => [f.v1, f.type]),
);

export const snakeToCamel = (s: string) => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
export const camelToSnake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

export const ChannelEnum = t.Union(
  CHANNEL_KINDS.map((k) => t.Literal(k)),
  { description: 'Channel kind' },
);

export const PageQuery = {
  limit: t.Optional(t.Integer({ minimum: 1, maximum: 100, default: 50, description: 'Page size (≤ 100)' })),
  cursor: t.Optional(t.String({ maxLength: 512, description: 'Opaque cursor from meta.cursor of the previous page' })),
};

export const SuccessSchema = t.Object({ success: t.Boolean() }, { description: 'Done' });
