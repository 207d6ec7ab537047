// v1 access control from the setup guide: allow/block a phone number on an instance, list them.
// Stored as ordinary instance rules (priority 0), so v2 sees and manages the same rules.
import { Elysia, t } from 'elysia';
import type { AccessService } from '../../services/access.ts';
import type { AccessRule } from '../../services/access-rules.ts';
import { normalizeIdentifier } from '../../services/access-rules.ts';
import type { InstanceService } from '../../services/instances.ts';
import { canSeeInstance } from '../../services/keys.ts';
import { ApiError, errorResponses } from '../errors.ts';
import { principalOf } from '../principal.ts';

const NameParams = t.Object({ name: t.String({ maxLength: 200, description: 'Instance name' }) });

const V1Rule = t.Object(
  {
    id: t.String(),
    instance_name: t.String(),
    phone_number: t.Union([t.String(), t.Null()], {
      description: 'Phone (or user id) the rule names; null for rules on other criteria',
    }),
    action: t.Union([t.Literal('allow'), t.Literal('block')]),
    rule_type: t.Union([t.Literal('allow'), t.Literal('deny')]),
    priority: t.Integer(),
    created_at: t.String(),
  },
  { description: 'An access-control entry' },
);

const v1View = (r: AccessRule, instanceName: string) => ({
  id: r.id,
  instance_name: instanceName,
  phone_number: r.criteria.phone ?? r.criteria.platformUserId ?? null,
  action: r.type === 'allow' ? ('allow' as const) : ('block' as const),
  rule_type: r.type,
  priority: r.priority,
  created_at: r.createdAt,
});

const PHONE = /^\+?[\d\s().*-]{1,40}$/;

/** What the v1 access-control routes use: instances by name and the access rules. */
export interface AccessV1Deps {
  instances: InstanceService;
  access: AccessService;
}

export function accessV1(gw: AccessV1Deps) {
  const visible = (request: Request, name: string) => {
    const inst = gw.instances.getByName(name);
    if (!inst || !canSeeInstance(principalOf(request), inst.id))
      throw new ApiError('NOT_FOUND', `Instance '${name}' not found`);
    return inst;
  };
  return new Elysia({ name: 'access-v1', prefix: '/api/v1/instances' })
    .post(
      '/:name/access-control',
      ({ params, body, request, set }) => {
        const inst = visible(request, params.name);
        const raw = body.phone_number.trim();
        // A phone (with optional * wildcard) matches by number; anything else (a JID, a user id) exactly.
        const criteria = PHONE.test(raw) && /\d/.test(raw) ? { phone: raw } : { platformUserId: raw };
        const key = normalizeIdentifier(raw);
        // A newer allow/block for the same number replaces the older one instead of fighting it.
        for (const r of gw.access.listRules({ instanceId: inst.id })) {
          const c = r.criteria;
          const only = Object.keys(c).length === 1 && r.priority === 0;
          if (
            only &&
            ((c.phone && normalizeIdentifier(c.phone) === key) ||
              (c.platformUserId && normalizeIdentifier(c.platformUserId) === key))
          )
            gw.access.deleteRule(r.id);
        }
        const rule = gw.access.createRule({
          instanceId: inst.id,
          type: body.action === 'allow' ? 'allow' : 'deny',
          criteria,
          priority: 0,
          action: 'block',
        });
        set.status = 201;
        return v1View(rule, inst.name);
      },
      {
        params: NameParams,
        body: t.Object(
          {
            action: t.Union([t.Literal('allow'), t.Literal('block')], { description: 'allow or block' }),
            phone_number: t.String({
              minLength: 1,
              maxLength: 200,
              description: 'Phone number (e.g. +1234567890, * wildcard allowed) or platform user id',
            }),
          },
          { description: 'Allow or block a number' },
        ),
        detail: {
          tags: ['access'],
          summary: 'Allow or block a number (v1)',
          description:
            "As in the v1 setup guide. Blocking works under the default 'blocklist' mode; allowing restricts the bot to allowed numbers only when the instance's settings.accessMode is 'allowlist'.",
        },
        response: { 201: V1Rule, ...errorResponses },
      },
    )
    .get(
      '/:name/access-control',
      ({ params, request }) => {
        const inst = visible(request, params.name);
        return gw.access.listRules({ instanceId: inst.id }).map((r) => v1View(r, inst.name));
      },
      {
        params: NameParams,
        detail: {
          tags: ['access'],
          summary: 'List access control (v1)',
          description: "The instance's rules as a bare array.",
        },
        response: { 200: t.Array(V1Rule, { description: 'Rules' }), ...errorResponses },
      },
    );
}
