// v2 settings: typed known keys; unknown keys are rejected.
import { Elysia, t } from 'elysia';
import type { SettingsService } from '../../services/settings.ts';
import { errorResponses } from '../errors.ts';

const Setting = t.Object(
  {
    key: t.String(),
    value: t.Any(),
    description: t.String(),
    isDefault: t.Boolean(),
    updatedAt: t.Union([t.String(), t.Null()]),
  },
  { description: 'A setting' },
);
function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const KeyParams = t.Object({ key: t.String({ maxLength: 100, description: 'Setting key' }) });

/** What the settings routes use: the settings. */
export interface SettingsV2Deps {
  settings: SettingsService;
}

export function settingsV2(gw: SettingsV2Deps, prefix = '/api/v2/settings') {
  return (
    new Elysia({ name: `settings-v2:${prefix}`, prefix })
      .get(
        '',
        () => ({ items: gw.settings.list(), meta: { cursor: null, hasMore: false, total: gw.settings.list().length } }),
        {
          detail: {
            tags: ['settings'],
            summary: 'List settings',
            description: 'Every known setting with its current value.',
          },
          response: {
            200: t.Object(
              {
                items: t.Array(Setting),
                meta: t.Object({ cursor: t.Null(), hasMore: t.Boolean(), total: t.Integer() }),
              },
              { description: 'Settings' },
            ),
            ...errorResponses,
          },
        },
      )
      // The design's body is {settings:{key:value}}; a flat map of keys stays accepted. The answer
      // is the design's {data}; `items` (the earlier answer) carries the same list.
      .patch(
        '',
        ({ body }) => {
          const b = body as Record<string, unknown>;
          const wrapped = Object.keys(b).length === 1 && isPlainObject(b.settings);
          const updated = gw.settings.setMany((wrapped ? b.settings : b) as Record<string, unknown>);
          return { data: updated, items: updated };
        },
        {
          body: t.Record(t.String({ maxLength: 100 }), t.Any(), {
            description: 'Keys and values to set, atomically: `{settings:{key:value,…}}` (or the map itself)',
            minProperties: 1,
            maxProperties: 50,
          }),
          detail: {
            tags: ['settings'],
            summary: 'Update several settings',
            description: 'All or nothing: one invalid key or value rejects the batch.',
          },
          response: {
            200: t.Object(
              { data: t.Array(Setting), items: t.Array(Setting, { description: 'Same list (earlier answer shape)' }) },
              { description: 'Updated settings' },
            ),
            ...errorResponses,
          },
        },
      )
      .get('/:key', ({ params }) => ({ data: gw.settings.get(params.key) }), {
        params: KeyParams,
        detail: { tags: ['settings'], summary: 'Get setting', description: 'One setting.' },
        response: { 200: t.Object({ data: Setting }, { description: 'The setting' }), ...errorResponses },
      })
      .put('/:key', ({ params, body }) => ({ data: gw.settings.setMany({ [params.key]: body.value })[0] }), {
        params: KeyParams,
        body: t.Object(
          { value: t.Any({ description: 'New value' }) },
          { additionalProperties: false, description: 'The value' },
        ),
        detail: { tags: ['settings'], summary: 'Set setting', description: 'Sets one known setting.' },
        response: { 200: t.Object({ data: Setting }, { description: 'Updated' }), ...errorResponses },
      })
  );
}
