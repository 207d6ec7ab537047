// v2 access rules: CRUD and a dry-run check. Keys restricted to instances see global rules and
// their instances' rules, and may change only their instances' rules.
import { Elysia, t } from 'elysia';
import type { AccessService } from '../../services/access.ts';
import type { AccessRule, AccessRuleInput } from '../../services/access-rules.ts';
import { canSeeInstance } from '../../services/keys.ts';
import { decodeCursor, PageMeta, page } from '../../services/pagination.ts';
import { ApiError, errorResponses, notFound } from '../errors.ts';
import { principalOf } from '../principal.ts';
import { PageQuery, SuccessSchema } from '../schemas.ts';
import { type InstanceLookup, visibleInstance } from './instances.ts';

const Criterion = (description: string) => t.Optional(t.String({ minLength: 1, maxLength: 200, description }));
const Criteria = t.Object(
  {
    platformUserId: Criterion(
      'Exact platform user id (WhatsApp JID or phone, Discord/Slack user id); normalised before matching',
    ),
    phone: Criterion('Phone number; * matches any digits, e.g. +5511*'),
    channel: Criterion('Channel kind, or "whatsapp" for both WhatsApp channels'),
    chatKind: t.Optional(t.Union([t.Literal('direct'), t.Literal('group')], { description: 'direct or group' })),
    groupId: Criterion('Group / channel id'),
  },
  { additionalProperties: false, description: 'All given criteria must match; an empty object matches everyone' },
);

const Rule = t.Object(
  {
    id: t.String(),
    instanceId: t.Union([t.String(), t.Null()], { description: 'null = global' }),
    type: t.Union([t.Literal('allow'), t.Literal('deny')]),
    criteria: Criteria,
    priority: t.Integer(),
    action: t.Union([t.Literal('block'), t.Literal('reply')]),
    replyMessage: t.Union([t.String(), t.Null()]),
    expiresAt: t.Union([t.String(), t.Null()]),
    createdAt: t.String(),
    updatedAt: t.String(),
  },
  { description: 'An access rule' },
);

const fields = {
  instanceId: t.Union([t.String({ maxLength: 200 }), t.Null()], { description: 'Instance id or name; null = global' }),
  type: t.Union([t.Literal('allow'), t.Literal('deny')], { description: 'allow or deny' }),
  criteria: Criteria,
  priority: t.Integer({
    minimum: -1_000_000,
    maximum: 1_000_000,
    description: 'Higher wins; ties go to the more specific rule, then deny',
  }),
  action: t.Union([t.Literal('block'), t.Literal('reply')], {
    description: 'block silently, or reply with replyMessage',
  }),
  replyMessage: t.Union([t.String({ maxLength: 4000 }), t.Null()], {
    description: "Sent to a denied sender when action is 'reply'",
  }),
  expiresAt: t.Union([t.String({ format: 'date-time', maxLength: 40 }), t.Null()], {
    description: 'The rule stops applying after this time',
  }),
};

const CreateBody = t.Object(
  {
    instanceId: t.Optional(fields.instanceId),
    type: fields.type,
    criteria: fields.criteria,
    priority: t.Optional(fields.priority),
    action: t.Optional(fields.action),
    replyMessage: t.Optional(fields.replyMessage),
    expiresAt: t.Optional(fields.expiresAt),
  },
  { additionalProperties: false, description: 'New rule' },
);
const UpdateBody = t.Object(
  {
    instanceId: t.Optional(fields.instanceId),
    type: t.Optional(fields.type),
    criteria: t.Optional(fields.criteria),
    priority: t.Optional(fields.priority),
    action: t.Optional(fields.action),
    replyMessage: t.Optional(fields.replyMessage),
    expiresAt: t.Optional(fields.expiresAt),
  },
  { additionalProperties: false, minProperties: 1, description: 'Fields to change' },
);
const IdParams = t.Object({ id: t.String({ maxLength: 200, description: 'Rule id' }) });

const Pause = t.Object(
  {
    instanceId: t.String(),
    chatKey: t.String({ description: 'chatId, or chatId/threadId' }),
    conversationId: t.String(),
    reason: t.Union([t.Literal('stop_keyword'), t.Literal('human_takeover')]),
    until: t.Union([t.String(), t.Null()], { description: 'null = until the resume keyword (or this API) resumes it' }),
    createdAt: t.String(),
  },
  { description: 'A conversation where the bot stays quiet' },
);

/** What the v2 access routes use: instance lookup and the access rules and pauses. */
export interface AccessV2Deps extends InstanceLookup {
  access: AccessService;
}

export function accessV2(gw: AccessV2Deps, prefix = '/api/v2/access') {
  const ruleFor = (request: Request, id: string): AccessRule => {
    const r = gw.access.getRule(id);
    if (!r || (r.instanceId !== null && !canSeeInstance(principalOf(request), r.instanceId)))
      throw notFound('Access rule');
    return r;
  };
  /** instanceId (id or name) → visible instance id; null (global) needs an unrestricted key. */
  const targetInstance = (request: Request, v: string | null | undefined): string | null | undefined => {
    if (v === undefined) return undefined;
    if (v === null) {
      if (principalOf(request).instanceIds !== null)
        throw new ApiError('FORBIDDEN', 'Keys restricted to instances cannot manage global rules');
      return null;
    }
    return visibleInstance(gw, request, v).id;
  };
  const writable = (request: Request, r: AccessRule) => {
    if (r.instanceId === null && principalOf(request).instanceIds !== null)
      throw new ApiError('FORBIDDEN', 'Keys restricted to instances cannot manage global rules');
  };

  return new Elysia({ name: `access-v2:${prefix}`, prefix })
    .get(
      '/rules',
      ({ query, request }) => {
        const p = principalOf(request);
        const after = decodeCursor<{ id: string }>(query.cursor, (v) => typeof v.id === 'string');
        const limit = query.limit ?? 50;
        const instanceId =
          query.instanceId === undefined
            ? undefined
            : query.instanceId === 'global'
              ? null
              : visibleInstance(gw, request, query.instanceId).id;
        const filter = { instanceId, type: query.type, visibleInstanceIds: p.instanceIds };
        const res = page(gw.access.listRules({ ...filter, afterId: after?.id, limit: limit + 1 }), limit, (r) => ({
          id: r.id,
        }));
        return { items: res.items, meta: { ...res.meta, total: gw.access.countRules(filter) } };
      },
      {
        query: t.Object({
          ...PageQuery,
          instanceId: t.Optional(
            t.String({ maxLength: 200, description: "Instance id or name; 'global' for global rules only" }),
          ),
          type: t.Optional(t.Union([t.Literal('allow'), t.Literal('deny')], { description: 'allow or deny' })),
        }),
        detail: {
          tags: ['access'],
          summary: 'List access rules',
          description: 'Cursor-paginated; filter by instance and type.',
        },
        response: {
          200: t.Object({ items: t.Array(Rule), meta: PageMeta }, { description: 'A page of rules' }),
          ...errorResponses,
        },
      },
    )
    .post(
      '/rules',
      ({ body, request, set }) => {
        const input: AccessRuleInput = {
          ...(body as AccessRuleInput),
          instanceId: targetInstance(request, body.instanceId ?? null),
        };
        const rule = gw.access.createRule(input);
        set.status = 201;
        return { data: rule };
      },
      {
        body: CreateBody,
        detail: {
          tags: ['access'],
          summary: 'Create access rule',
          description: 'Applies from the next message. Global rules (instanceId null) need an unrestricted key.',
        },
        response: { 201: t.Object({ data: Rule }, { description: 'Created' }), ...errorResponses },
      },
    )
    .get('/rules/:id', ({ params, request }) => ({ data: ruleFor(request, params.id) }), {
      params: IdParams,
      detail: { tags: ['access'], summary: 'Get access rule', description: 'One rule.' },
      response: { 200: t.Object({ data: Rule }, { description: 'The rule' }), ...errorResponses },
    })
    .patch(
      '/rules/:id',
      ({ params, body, request }) => {
        const cur = ruleFor(request, params.id);
        writable(request, cur);
        const patch: AccessRuleInput = {
          ...(body as AccessRuleInput),
          instanceId: targetInstance(request, body.instanceId),
        };
        return { data: gw.access.updateRule(cur.id, patch) };
      },
      {
        params: IdParams,
        body: UpdateBody,
        detail: {
          tags: ['access'],
          summary: 'Update access rule',
          description: 'Changes only the fields given; criteria are replaced as a whole.',
        },
        response: { 200: t.Object({ data: Rule }, { description: 'Updated' }), ...errorResponses },
      },
    )
    .delete(
      '/rules/:id',
      ({ params, request }) => {
        const cur = ruleFor(request, params.id);
        writable(request, cur);
        gw.access.deleteRule(cur.id);
        return { success: true };
      },
      {
        params: IdParams,
        detail: { tags: ['access'], summary: 'Delete access rule', description: 'Deletes the rule.' },
        response: { 200: SuccessSchema, ...errorResponses },
      },
    )
    .get(
      '/pauses',
      ({ query, request }) => {
        const after = decodeCursor<{ i: string; k: string }>(
          query.cursor,
          (v) => typeof v.i === 'string' && typeof v.k === 'string',
        );
        const limit = query.limit ?? 50;
        const instanceId =
          query.instanceId === undefined ? undefined : visibleInstance(gw, request, query.instanceId).id;
        const rows = gw.access.listPauses({
          instanceId,
          visibleInstanceIds: principalOf(request).instanceIds,
          after: after ? { instanceId: after.i, chatKey: after.k } : undefined,
          limit: limit + 1,
        });
        const res = page(rows, limit, (r) => ({ i: r.pause.instanceId, k: r.storedKey }));
        return { items: res.items.map((r) => r.pause), meta: res.meta };
      },
      {
        query: t.Object({
          ...PageQuery,
          instanceId: t.Optional(t.String({ maxLength: 200, description: 'Instance id or name' })),
        }),
        detail: {
          tags: ['access'],
          summary: 'List paused conversations',
          description:
            'Conversations where the bot is quiet: a sender used the stop keyword, or the account owner replied (human takeover, until a time). Ordered by instance and chat.',
        },
        response: {
          200: t.Object({ items: t.Array(Pause), meta: PageMeta }, { description: 'A page of pauses' }),
          ...errorResponses,
        },
      },
    )
    .delete(
      '/pauses/:conversationId',
      ({ params, request }) => {
        const p = gw.access.pauseByConversation(params.conversationId, principalOf(request).instanceIds);
        if (!p) throw notFound('Pause');
        gw.access.resume(p.pause.instanceId, p.storedKey);
        return { success: true };
      },
      {
        params: t.Object({ conversationId: t.String({ maxLength: 200, description: 'Conversation id' }) }),
        detail: {
          tags: ['access'],
          summary: 'Resume a paused conversation',
          description:
            'Ends a stop-keyword pause or a human takeover: the next message from this chat reaches the agent again.',
        },
        response: { 200: SuccessSchema, ...errorResponses },
      },
    )
    .post(
      '/check',
      ({ body, request }) => {
        const inst = visibleInstance(gw, request, body.instanceId);
        const r = gw.access.checkUser(inst, body.platformUserId, body.channel);
        return { data: { allowed: r.allowed, rule: r.rule, reason: r.reason } };
      },
      {
        body: t.Object(
          {
            instanceId: t.String({ minLength: 1, maxLength: 200, description: 'Instance id or name' }),
            platformUserId: t.String({ minLength: 1, maxLength: 200, description: 'User id or phone number' }),
            channel: t.Optional(
              t.String({ maxLength: 40, description: "Channel to match rules against (defaults to the instance's)" }),
            ),
          },
          { additionalProperties: false, description: 'Who to check' },
        ),
        detail: {
          tags: ['access'],
          summary: 'Check access',
          description:
            "Dry run of the instance's access mode and rules for a user (keyword gates and pauses are not applied).",
        },
        response: {
          200: t.Object(
            { data: t.Object({ allowed: t.Boolean(), rule: t.Union([Rule, t.Null()]), reason: t.String() }) },
            { description: 'The decision' },
          ),
          ...errorResponses,
        },
      },
    );
}
