// v2 API keys: create (the full key is shown once), list/get (prefix and last 4 only), update,
// revoke, and each key's audit trail. Needs a key with '*' or 'admin:*'.
import { Elysia, t } from 'elysia';
import type { Clock } from '../../../actors/runtime/clock.ts';
import type { AuditService } from '../../services/audit.ts';
import type { InstanceService } from '../../services/instances.ts';
import { type ApiKeyView, hasScope, type KeyService, type Principal, SCOPES } from '../../services/keys.ts';
import { decodeCursor, PageMeta, page } from '../../services/pagination.ts';
import { ApiError, errorResponses, invalid, notFound } from '../errors.ts';
import { principalOf } from '../principal.ts';
import { PageQuery, SuccessSchema } from '../schemas.ts';

const ScopeEnum = t.Union(
  SCOPES.map((s) => t.Literal(s)),
  { description: 'A scope' },
);

const KeyView = t.Object(
  {
    id: t.String(),
    name: t.String(),
    keyPrefix: t.String({ description: 'First 8 characters' }),
    keySuffix: t.String({ description: 'Last 4 characters' }),
    scopes: t.Array(t.String()),
    instanceIds: t.Union([t.Array(t.String()), t.Null()], {
      description: 'Instances the key is restricted to; null = all',
    }),
    expiresAt: t.Union([t.String(), t.Null()]),
    revokedAt: t.Union([t.String(), t.Null()]),
    createdAt: t.String(),
    lastUsedAt: t.Union([t.String(), t.Null()]),
    lastUsedIp: t.Union([t.String(), t.Null()]),
    usageCount: t.Integer(),
  },
  { description: 'An API key (never the full key)' },
);

const CreatedKey = t.Object(
  { ...KeyView.properties, key: t.String({ description: 'The full key; shown only in this response' }) },
  { description: 'The new key' },
);

const Name = t.String({ minLength: 1, maxLength: 100, description: 'Human-readable name' });
const Scopes = t.Array(ScopeEnum, { minItems: 1, maxItems: SCOPES.length, description: 'Scopes granted' });
const InstanceIds = t.Union([t.Array(t.String({ maxLength: 200 }), { maxItems: 500 }), t.Null()], {
  description: 'Restrict to these instances (ids or names); null = all',
});
const ExpiresAt = t.Union([t.String({ format: 'date-time', maxLength: 40 }), t.Null()], {
  description: 'Expiry (ISO 8601); null = never',
});

const CreateBody = t.Object(
  { name: Name, scopes: Scopes, instanceIds: t.Optional(InstanceIds), expiresAt: t.Optional(ExpiresAt) },
  { additionalProperties: false, description: 'New key' },
);
const UpdateBody = t.Object(
  {
    name: t.Optional(Name),
    scopes: t.Optional(Scopes),
    instanceIds: t.Optional(InstanceIds),
    expiresAt: t.Optional(ExpiresAt),
  },
  { additionalProperties: false, minProperties: 1, description: 'Fields to change' },
);
const IdParams = t.Object({ id: t.String({ maxLength: 200, description: 'Key id' }) });

const AuditRecord = t.Object(
  {
    seq: t.Integer(),
    keyId: t.String(),
    method: t.String(),
    path: t.String({ description: 'Path and query, credentials removed' }),
    status: t.Integer(),
    ip: t.Union([t.String(), t.Null()]),
    userAgent: t.Union([t.String(), t.Null()]),
    at: t.String(),
  },
  { description: 'One authenticated request' },
);

/** What the keys routes use: the keys, their audit log, the instances keys are bound to, the clock (expiry). */
export interface KeysV2Deps {
  keys: KeyService;
  audit: AuditService;
  instances: InstanceService;
  clock: Clock;
}

export function keysV2(gw: KeysV2Deps, prefix = '/api/v2/keys') {
  /** instanceIds given by id or name → ids; unknown ones are a validation error. */
  const resolveInstances = (ids: string[] | null | undefined, caller: Principal): string[] | null | undefined => {
    if (ids === undefined) return undefined;
    if (ids === null) {
      if (caller.instanceIds !== null)
        throw new ApiError('FORBIDDEN', 'A key restricted to instances cannot create unrestricted keys');
      return null;
    }
    const out: string[] = [];
    const missing: string[] = [];
    for (const v of ids) {
      const inst = gw.instances.resolve(v);
      if (!inst || (caller.instanceIds !== null && !caller.instanceIds.includes(inst.id))) missing.push(v);
      else if (!out.includes(inst.id)) out.push(inst.id);
    }
    if (missing.length)
      throw invalid(`instanceIds: unknown instances: ${missing.slice(0, 10).join(', ')}`, [
        { field: 'instanceIds', problem: 'unknown instances', values: missing.slice(0, 10) },
      ]);
    return out;
  };
  // No privilege escalation: a caller grants only scopes it holds itself.
  const checkGrant = (scopes: string[] | undefined, caller: Principal) => {
    if (!scopes) return;
    const over = scopes.filter((s) => (s === '*' ? !caller.scopes.includes('*') : !hasScope(caller, s)));
    if (over.length)
      throw new ApiError('FORBIDDEN', `Cannot grant scopes this key does not hold: ${over.join(', ')}`, {
        scopes: over,
      });
  };
  const checkExpiry = (v: string | null | undefined) => {
    if (typeof v === 'string' && Number.isNaN(Date.parse(v)))
      throw invalid('expiresAt must be an ISO 8601 date-time', [
        { field: 'expiresAt', problem: 'must be an ISO 8601 date-time' },
      ]);
    return typeof v === 'string' ? new Date(Date.parse(v)).toISOString() : v;
  };
  const findKey = (id: string, caller: Principal): ApiKeyView => {
    const k = gw.keys.get(id);
    if (!k || !visibleTo(k, caller)) throw notFound('API key');
    return k;
  };
  // A key restricted to instances administers only keys within its own instances.
  const visibleTo = (k: ApiKeyView, caller: Principal) =>
    caller.instanceIds === null || k.instanceIds?.every((i) => caller.instanceIds!.includes(i));
  /** Refuses a change that would leave no working admin key (locking everyone out of /keys). */
  const keepAnAdmin = (id: string, after: { revoked?: boolean; scopes?: string[]; expiresAt?: string | null }) => {
    const admins = gw.keys.activeAdminIds(gw.clock.now());
    if (!admins.includes(id)) return;
    const stillAdmin =
      !after.revoked &&
      (after.scopes === undefined || after.scopes.includes('*') || after.scopes.includes('admin:*')) &&
      (after.expiresAt === undefined || after.expiresAt === null || Date.parse(after.expiresAt) > gw.clock.now());
    if (!stillAdmin && admins.length === 1)
      throw new ApiError('CONFLICT', 'This is the last working admin key; create another admin key first');
  };

  return new Elysia({ name: `keys-v2:${prefix}`, prefix })
    .get(
      '',
      ({ query, request }) => {
        const caller = principalOf(request);
        const after = decodeCursor<{ id: string }>(query.cursor, (v) => typeof v.id === 'string');
        const limit = query.limit ?? 50;
        const all = gw.keys
          .list()
          .filter((k) => visibleTo(k, caller) && (query.includeRevoked === true || !k.revokedAt));
        const rows = all.filter((k) => !after || k.id > after.id).slice(0, limit + 1);
        const res = page(rows, limit, (k) => ({ id: k.id }));
        return { items: res.items, meta: { ...res.meta, total: all.length } };
      },
      {
        query: t.Object({
          ...PageQuery,
          includeRevoked: t.Optional(t.Boolean({ description: 'Also list revoked keys' })),
        }),
        detail: {
          tags: ['keys'],
          summary: 'List API keys',
          description: 'Keys with their prefix and last 4 characters only; revoked keys only with includeRevoked=true.',
        },
        response: {
          200: t.Object({ items: t.Array(KeyView), meta: PageMeta }, { description: 'A page of keys' }),
          ...errorResponses,
        },
      },
    )
    .post(
      '',
      ({ body, request, set }) => {
        const caller = principalOf(request);
        checkGrant(body.scopes, caller);
        const instanceIds = resolveInstances(
          body.instanceIds === undefined ? caller.instanceIds : body.instanceIds,
          caller,
        );
        const expiresAt = checkExpiry(body.expiresAt);
        const { key, view } = gw.keys.create({
          name: body.name,
          scopes: [...new Set(body.scopes)],
          instanceIds: instanceIds ?? null,
          expiresAt: expiresAt ?? null,
        });
        set.status = 201;
        return { data: { ...view, key } };
      },
      {
        body: CreateBody,
        detail: {
          tags: ['keys'],
          summary: 'Create API key',
          description:
            "Returns the full key (sb_…) once; only its hash is stored. A key grants at most the caller's own scopes and instances.",
        },
        response: {
          201: t.Object({ data: CreatedKey }, { description: 'Created; keep the key, it is not shown again' }),
          ...errorResponses,
        },
      },
    )
    .get('/:id', ({ params, request }) => ({ data: findKey(params.id, principalOf(request)) }), {
      params: IdParams,
      detail: { tags: ['keys'], summary: 'Get API key', description: 'One key (prefix and last 4 characters only).' },
      response: { 200: t.Object({ data: KeyView }, { description: 'The key' }), ...errorResponses },
    })
    .patch(
      '/:id',
      ({ params, body, request }) => {
        const caller = principalOf(request);
        const cur = findKey(params.id, caller);
        if (cur.revokedAt) throw new ApiError('CONFLICT', 'The key is revoked');
        checkGrant(body.scopes, caller);
        const instanceIds = resolveInstances(body.instanceIds, caller);
        const expiresAt = checkExpiry(body.expiresAt);
        keepAnAdmin(cur.id, { scopes: body.scopes, expiresAt });
        return {
          data: gw.keys.update(cur.id, {
            name: body.name,
            scopes: body.scopes ? [...new Set(body.scopes)] : undefined,
            instanceIds,
            expiresAt,
          }),
        };
      },
      {
        params: IdParams,
        body: UpdateBody,
        detail: {
          tags: ['keys'],
          summary: 'Update API key',
          description: 'Changes name, scopes, instanceIds or expiresAt; takes effect on the next request.',
        },
        response: {
          200: t.Object({ data: KeyView }, { description: 'Updated' }),
          409: errorResponses[400],
          ...errorResponses,
        },
      },
    )
    .delete(
      '/:id',
      ({ params, request }) => {
        const k = findKey(params.id, principalOf(request));
        keepAnAdmin(k.id, { revoked: true });
        gw.keys.revoke(k.id);
        return { success: true };
      },
      {
        params: IdParams,
        detail: {
          tags: ['keys'],
          summary: 'Revoke API key',
          description:
            'Revokes the key (it answers 401 from now on). The last working admin key cannot be revoked (409).',
        },
        response: { 200: SuccessSchema, 409: errorResponses[400], ...errorResponses },
      },
    )
    .post(
      '/:id/revoke',
      ({ params, request }) => {
        const k = findKey(params.id, principalOf(request));
        keepAnAdmin(k.id, { revoked: true });
        gw.keys.revoke(k.id);
        return { data: gw.keys.get(k.id)! };
      },
      {
        params: IdParams,
        detail: {
          tags: ['keys'],
          summary: 'Revoke API key',
          description: 'Same as DELETE, answering with the revoked key.',
        },
        response: {
          200: t.Object({ data: KeyView }, { description: 'Revoked' }),
          409: errorResponses[400],
          ...errorResponses,
        },
      },
    )
    .get(
      '/:id/audit',
      ({ params, query, request }) => {
        const k = findKey(params.id, principalOf(request));
        const before = decodeCursor<{ seq: number }>(query.cursor, (v) => Number.isInteger(v.seq));
        const limit = query.limit ?? 50;
        const rows = gw.audit.list(k.id, { beforeSeq: before?.seq, limit: limit + 1 });
        const res = page(rows, limit, (r) => ({ seq: r.seq }));
        return { items: res.items, meta: res.meta };
      },
      {
        params: IdParams,
        query: t.Object(PageQuery),
        detail: {
          tags: ['keys'],
          summary: 'Key audit log',
          description: 'Requests made with the key, newest first (cursor pages). Kept for audit.retentionDays.',
        },
        response: {
          200: t.Object({ items: t.Array(AuditRecord), meta: PageMeta }, { description: 'A page of audit records' }),
          ...errorResponses,
        },
      },
    );
}
