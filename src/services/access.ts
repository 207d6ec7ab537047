// The pipeline's access step: allow/deny rules (per instance or global), the instance's access
// mode, and keyword gates (triggers, stop keyword, human takeover). Rules and pauses live in
// SQLite so every node and every restart sees the same decisions. What a rule is and how it
// matches a sender: access-rules.ts; the keyword settings and trigger matching: keyword-gates.ts.
import type { Database } from 'bun:sqlite';
import type { Logger } from 'pino';
import type { Clock } from '../../actors/runtime/clock.ts';
import { CHANNEL_CRITERIA } from '../channels/registry.ts';
import type { AccessDecision } from '../core/conversation.ts';
import { NotFound, Validation } from '../core/errors.ts';
import type { Instance } from '../core/instance.ts';
import type { InboundMessage } from '../core/message.ts';
import {
  type AccessRule,
  type AccessRuleInput,
  type AccessSubject,
  compareRules,
  describeRule,
  normalizeIdentifier,
  PHONE_LIKE,
  type RuleAction,
  type RuleCriteria,
  type RuleEvaluation,
  type RuleType,
  ruleMatches,
  subjectOf,
} from './access-rules.ts';
import { isoNow, newId } from './ids.ts';
import { conversationIdForKey } from './inbox.ts';
import { asTriggers, triggerMatches } from './keyword-gates.ts';

export interface PauseView {
  instanceId: string;
  chatKey: string;
  /** The conversation's id (as in the conversations and traces APIs). */
  conversationId: string;
  reason: 'stop_keyword' | 'human_takeover';
  until: string | null;
  createdAt: string;
}

const str = (v: unknown): string | null => (typeof v === 'string' && v.trim() ? v.trim().toLowerCase() : null);

interface RuleRow {
  id: string;
  instance_id: string | null;
  type: RuleType;
  criteria_json: string;
  priority: number;
  action: RuleAction;
  reply_message: string | null;
  expires_at: string | null;
  created_at: string;
  updated_at: string;
}

const toRule = (r: RuleRow): AccessRule => ({
  id: r.id,
  instanceId: r.instance_id,
  type: r.type,
  criteria: JSON.parse(r.criteria_json),
  priority: r.priority,
  action: r.action,
  replyMessage: r.reply_message,
  expiresAt: r.expires_at,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

const CRITERIA_KEYS = ['platformUserId', 'phone', 'channel', 'chatKind', 'groupId'] as const;
const PHONE_PATTERN = /^\+?[\d\s().*-]{1,40}$/;

export interface RuleListFilter {
  /** undefined = all; null = only global rules; a string = that instance's rules. */
  instanceId?: string | null;
  type?: RuleType;
  /** Visibility of the caller (null = every instance); global rules are visible to everyone. */
  visibleInstanceIds?: string[] | null;
  afterId?: string;
  limit?: number;
}

/** What the rules need of the instance service (not its type: that service uses accessSettingsProblems from here). */
interface InstanceLookup {
  get(id: string): Instance | null;
}

export class AccessService {
  constructor(
    private db: Database,
    private instances: InstanceLookup,
    private clock: Pick<Clock, 'now'>,
    private log?: Logger,
  ) {}

  // -- rules CRUD ------------------------------------------------------------------------------

  getRule(id: string): AccessRule | null {
    const r = this.db.query<RuleRow, [string]>('SELECT * FROM access_rules WHERE id = ?').get(id);
    return r ? toRule(r) : null;
  }

  listRules(f: RuleListFilter = {}): AccessRule[] {
    const where: string[] = [];
    const args: Array<string | number | null> = [];
    if (f.instanceId === null) where.push('instance_id IS NULL');
    else if (f.instanceId !== undefined) {
      where.push('instance_id = ?');
      args.push(f.instanceId);
    }
    if (f.type) {
      where.push('type = ?');
      args.push(f.type);
    }
    if (f.visibleInstanceIds) {
      where.push(`(instance_id IS NULL OR instance_id IN (${f.visibleInstanceIds.map(() => '?').join(',') || "''"}))`);
      args.push(...f.visibleInstanceIds);
    }
    if (f.afterId) {
      where.push('id > ?');
      args.push(f.afterId);
    }
    const sql = `SELECT * FROM access_rules ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT ?`;
    args.push(f.limit ?? 1000);
    return this.db
      .query<RuleRow, typeof args>(sql)
      .all(...args)
      .map(toRule);
  }

  countRules(f: Omit<RuleListFilter, 'afterId' | 'limit'> = {}): number {
    return this.listRules({ ...f, limit: 1_000_000 }).length;
  }

  private validate(v: AccessRule): void {
    const problems: Array<{ field: string; problem: string }> = [];
    if (v.instanceId !== null && (typeof v.instanceId !== 'string' || !this.instances.get(v.instanceId)))
      problems.push({ field: 'instanceId', problem: 'no such instance' });
    if (v.type !== 'allow' && v.type !== 'deny')
      problems.push({ field: 'type', problem: 'must be one of: allow, deny' });
    if (v.action !== 'block' && v.action !== 'reply')
      problems.push({ field: 'action', problem: 'must be one of: block, reply' });
    if (!Number.isInteger(v.priority) || v.priority < -1_000_000 || v.priority > 1_000_000)
      problems.push({ field: 'priority', problem: 'must be an integer between -1000000 and 1000000' });
    const c = v.criteria as Record<string, unknown>;
    if (!c || typeof c !== 'object' || Array.isArray(c))
      problems.push({ field: 'criteria', problem: 'must be an object' });
    else {
      for (const k of Object.keys(c))
        if (!(CRITERIA_KEYS as readonly string[]).includes(k))
          problems.push({ field: `criteria.${k}`, problem: `is not a criterion (use ${CRITERIA_KEYS.join(', ')})` });
      for (const k of CRITERIA_KEYS) {
        const x = c[k];
        if (x !== undefined && (typeof x !== 'string' || !x.trim() || x.length > 200))
          problems.push({ field: `criteria.${k}`, problem: 'must be a non-empty string (≤ 200 characters)' });
      }
      if (typeof c.phone === 'string' && (!PHONE_PATTERN.test(c.phone) || !/\d/.test(c.phone)))
        problems.push({
          field: 'criteria.phone',
          problem: 'must be a phone number with digits and optional * wildcards, e.g. +5511*',
        });
      if (typeof c.channel === 'string' && !CHANNEL_CRITERIA.includes(c.channel))
        problems.push({ field: 'criteria.channel', problem: `must be one of: ${CHANNEL_CRITERIA.join(', ')}` });
      if (c.chatKind !== undefined && c.chatKind !== 'direct' && c.chatKind !== 'group')
        problems.push({ field: 'criteria.chatKind', problem: 'must be one of: direct, group' });
    }
    if (v.action === 'reply' && (typeof v.replyMessage !== 'string' || !v.replyMessage.trim()))
      problems.push({ field: 'replyMessage', problem: "is required when action is 'reply'" });
    if (v.replyMessage !== null && (typeof v.replyMessage !== 'string' || v.replyMessage.length > 4000))
      problems.push({ field: 'replyMessage', problem: 'must be a string (≤ 4000 characters) or null' });
    if (
      v.expiresAt !== null &&
      (typeof v.expiresAt !== 'string' || v.expiresAt.length > 40 || Number.isNaN(Date.parse(v.expiresAt)))
    )
      problems.push({ field: 'expiresAt', problem: 'must be an ISO 8601 date-time or null' });
    if (problems.length) throw new Validation(problems.map((p) => `${p.field} ${p.problem}`).join('; '), problems);
  }

  private cleanCriteria(c: RuleCriteria | undefined): RuleCriteria {
    if (!c || typeof c !== 'object' || Array.isArray(c)) return c as RuleCriteria;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(c))
      if (v !== undefined && v !== null) out[k] = typeof v === 'string' ? v.trim() : v;
    return out as RuleCriteria;
  }

  createRule(input: AccessRuleInput): AccessRule {
    const now = isoNow(this.clock.now());
    const rule: AccessRule = {
      id: newId(),
      instanceId: input.instanceId ?? null,
      type: input.type as RuleType,
      criteria: this.cleanCriteria(input.criteria ?? {}),
      priority: input.priority ?? 0,
      action: input.action ?? 'block',
      replyMessage: input.replyMessage ?? null,
      expiresAt: input.expiresAt ?? null,
      createdAt: now,
      updatedAt: now,
    };
    this.validate(rule);
    if (rule.expiresAt) rule.expiresAt = new Date(Date.parse(rule.expiresAt)).toISOString();
    this.db
      .query(
        'INSERT INTO access_rules (id, instance_id, type, criteria_json, priority, action, reply_message, expires_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        rule.id,
        rule.instanceId,
        rule.type,
        JSON.stringify(rule.criteria),
        rule.priority,
        rule.action,
        rule.replyMessage,
        rule.expiresAt,
        now,
        now,
      );
    this.invalidate();
    return rule;
  }

  updateRule(id: string, patch: AccessRuleInput): AccessRule {
    const cur = this.getRule(id);
    if (!cur) throw new NotFound('Access rule not found');
    const next: AccessRule = {
      ...cur,
      instanceId: patch.instanceId === undefined ? cur.instanceId : patch.instanceId,
      type: patch.type ?? cur.type,
      criteria: patch.criteria === undefined ? cur.criteria : this.cleanCriteria(patch.criteria),
      priority: patch.priority ?? cur.priority,
      action: patch.action ?? cur.action,
      replyMessage: patch.replyMessage === undefined ? cur.replyMessage : patch.replyMessage,
      expiresAt: patch.expiresAt === undefined ? cur.expiresAt : patch.expiresAt,
      updatedAt: isoNow(this.clock.now()),
    };
    this.validate(next);
    if (next.expiresAt) next.expiresAt = new Date(Date.parse(next.expiresAt)).toISOString();
    this.db
      .query(
        'UPDATE access_rules SET instance_id = ?, type = ?, criteria_json = ?, priority = ?, action = ?, reply_message = ?, expires_at = ?, updated_at = ? WHERE id = ?',
      )
      .run(
        next.instanceId,
        next.type,
        JSON.stringify(next.criteria),
        next.priority,
        next.action,
        next.replyMessage,
        next.expiresAt,
        next.updatedAt,
        id,
      );
    this.invalidate();
    return next;
  }

  deleteRule(id: string): boolean {
    this.invalidate();
    return this.db.query('DELETE FROM access_rules WHERE id = ?').run(id).changes > 0;
  }

  // -- evaluation ------------------------------------------------------------------------------

  /** An instance's rules (its own and global), best first; cached until any rule changes. */
  private rulesCache = new Map<string, AccessRule[]>();

  /** Drops cached rules (a rule changed here, or was replicated from another node). */
  invalidate(): void {
    this.rulesCache.clear();
    this.anyPause.clear();
  }

  /** Per instance: whether it has any pause row (most have none: skips a query per message). */
  private anyPause = new Map<string, boolean>();

  /** Rules that apply to the instance now (its own and global, not expired), best first. */
  private activeRules(instanceId: string): AccessRule[] {
    let rules = this.rulesCache.get(instanceId);
    if (!rules) {
      rules = this.db
        .query<RuleRow, [string]>('SELECT * FROM access_rules WHERE instance_id = ? OR instance_id IS NULL')
        .all(instanceId)
        .map(toRule)
        .sort(compareRules);
      this.rulesCache.set(instanceId, rules);
    }
    const now = this.clock.now();
    return rules.filter((r) => r.expiresAt === null || Date.parse(r.expiresAt) > now);
  }

  /**
   * Applies the instance's access mode and rules to a sender (no keyword gates). The subject may be
   * given as a function: most instances have no rule, and then it is never built.
   */
  evaluate(inst: Instance, subject: AccessSubject | (() => AccessSubject)): RuleEvaluation {
    const mode = inst.settings.accessMode ?? 'blocklist';
    if (mode === 'disabled') return { allowed: true, rule: null, reason: 'access control disabled for this instance' };
    const rules = this.activeRules(inst.id);
    const s = rules.length === 0 ? null : typeof subject === 'function' ? subject() : subject;
    const rule = s ? (rules.find((r) => ruleMatches(r, s)) ?? null) : null;
    if (rule) return { allowed: rule.type === 'allow', rule, reason: `matched ${describeRule(rule)}` };
    return mode === 'allowlist'
      ? { allowed: false, rule: null, reason: 'not on the allowlist' }
      : { allowed: true, rule: null, reason: 'no rule matched (blocklist mode)' };
  }

  /** POST /access/check: would this user be allowed on this instance? */
  checkUser(inst: Instance, platformUserId: string, channel?: string): RuleEvaluation {
    const s = subjectOf(inst, { sender: { id: platformUserId }, chat: { chatId: platformUserId, kind: 'direct' } });
    if (channel) s.channel = channel;
    if (!s.phone && PHONE_LIKE.test(platformUserId.trim()) && /\d/.test(platformUserId))
      s.phone = normalizeIdentifier(platformUserId);
    return this.evaluate(inst, s);
  }

  /** The pipeline's access step. */
  check(inst: Instance, msg: InboundMessage): AccessDecision {
    const settings = inst.settings as Record<string, unknown>;
    const chatKey = msg.chat.threadId ? `${msg.chat.chatId}#${msg.chat.threadId}` : msg.chat.chatId;
    const now = this.clock.now();

    // Human takeover: the owner typed on the phone; the bot stays quiet in this chat for a while.
    const takeover = Number.isInteger(settings.humanTakeoverMinutes) ? (settings.humanTakeoverMinutes as number) : 0;
    if (msg.fromOwner && takeover > 0) {
      const until = isoNow(now + takeover * 60_000);
      this.pause(inst.id, chatKey, 'human_takeover', until);
      return { allowed: false, reason: `human takeover: the account owner replied; bot paused until ${until}` };
    }

    const ev = this.evaluate(inst, () => subjectOf(inst, msg));
    if (!ev.allowed) {
      const reply = ev.rule?.action === 'reply' ? ev.rule.replyMessage : null;
      return { allowed: false, reason: ev.reason, ruleId: ev.rule?.id ?? null, reply };
    }

    const text = msg.text ?? '';
    const said = text.trim().toLowerCase();
    const stop = str(settings.stopKeyword);
    const resume = str(settings.resumeKeyword);
    const paused = this.pauseOf(inst.id, chatKey, now);
    if (stop && said === stop) {
      this.pause(inst.id, chatKey, 'stop_keyword', null);
      const stopReply = typeof settings.stopReply === 'string' && settings.stopReply.trim() ? settings.stopReply : null;
      return {
        allowed: false,
        reason: 'stop keyword: bot paused for this conversation',
        ruleId: ev.rule?.id ?? null,
        reply: stopReply,
      };
    }
    if (paused) {
      if (resume && said === resume) {
        this.resume(inst.id, chatKey);
        return { allowed: true, reason: 'resume keyword: conversation resumed', ruleId: ev.rule?.id ?? null };
      }
      return {
        allowed: false,
        reason:
          paused.reason === 'human_takeover'
            ? `paused: human takeover until ${paused.until}`
            : 'paused: stop keyword (send the resume keyword to continue)',
        ruleId: ev.rule?.id ?? null,
      };
    }

    const triggers = asTriggers(settings.triggers);
    if (triggers.length && !triggers.some((t) => triggerMatches(t, text))) {
      return { allowed: false, reason: 'no trigger matched', ruleId: ev.rule?.id ?? null };
    }
    return { allowed: true, reason: ev.reason, ruleId: ev.rule?.id ?? null };
  }

  // -- pauses ----------------------------------------------------------------------------------

  /**
   * Pause changes made here (not rows applied from the cluster): `fn` runs inside the transaction
   * that writes the change, so what it writes commits with it (the outgoing webhooks' outbox).
   */
  private pauseListeners: Array<(change: { paused: boolean; pause: PauseView }) => void> = [];
  onPauseChange(fn: (change: { paused: boolean; pause: PauseView }) => void): void {
    this.pauseListeners.push(fn);
  }

  /** Also the MCP pause tool (an operator takes over a chat); `chatKey` is the stored form (`chatId#threadId`). */
  pause(instanceId: string, chatKey: string, reason: PauseView['reason'], until: string | null): void {
    const row = { instance_id: instanceId, chat_key: chatKey, reason, until, created_at: isoNow(this.clock.now()) };
    this.db.transaction(() => {
      this.db
        .query(
          `INSERT INTO conversation_pauses (instance_id, chat_key, reason, until, created_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT(instance_id, chat_key) DO UPDATE SET reason = excluded.reason, until = excluded.until, created_at = excluded.created_at`,
        )
        .run(instanceId, chatKey, reason, until, row.created_at);
      for (const l of this.pauseListeners) l({ paused: true, pause: toPause(row) });
    })();
    this.anyPause.delete(instanceId);
    this.log?.info({ instanceId, reason, until }, 'conversation paused');
  }

  /** The live pause of a conversation, or null (expired pauses are removed). */
  pauseOf(instanceId: string, chatKey: string, now = this.clock.now()): PauseView | null {
    let any = this.anyPause.get(instanceId);
    if (any === undefined) {
      any =
        this.db
          .query<{ n: number }, [string]>(
            'SELECT EXISTS (SELECT 1 FROM conversation_pauses WHERE instance_id = ?) AS n',
          )
          .get(instanceId)!.n === 1;
      this.anyPause.set(instanceId, any);
    }
    if (!any) return null;
    const r = this.db
      .query<PauseRow, [string, string]>('SELECT * FROM conversation_pauses WHERE instance_id = ? AND chat_key = ?')
      .get(instanceId, chatKey);
    if (!r) return null;
    if (r.until !== null && Date.parse(r.until) <= now) {
      this.resume(instanceId, chatKey);
      return null;
    }
    return toPause(r);
  }

  /** Live pauses (expired ones are left to the next message of their chat), by instance then chat. */
  listPauses(
    f: {
      instanceId?: string;
      visibleInstanceIds: string[] | null;
      after?: { instanceId: string; chatKey: string };
      limit: number;
    },
    now = this.clock.now(),
  ): Array<{ pause: PauseView; storedKey: string }> {
    const where = ['(until IS NULL OR until > ?)'];
    const args: Array<string | number> = [isoNow(now)];
    if (f.instanceId !== undefined) {
      where.push('instance_id = ?');
      args.push(f.instanceId);
    }
    if (f.visibleInstanceIds) {
      where.push(`instance_id IN (${f.visibleInstanceIds.map(() => '?').join(',') || "''"})`);
      args.push(...f.visibleInstanceIds);
    }
    if (f.after) {
      where.push('(instance_id > ? OR (instance_id = ? AND chat_key > ?))');
      args.push(f.after.instanceId, f.after.instanceId, f.after.chatKey);
    }
    args.push(f.limit);
    return this.db
      .query<PauseRow, typeof args>(
        `SELECT * FROM conversation_pauses WHERE ${where.join(' AND ')} ORDER BY instance_id, chat_key LIMIT ?`,
      )
      .all(...args)
      .map((r) => ({ pause: toPause(r), storedKey: r.chat_key }));
  }

  /** The live pause of a conversation by its id, among the given instances. */
  pauseByConversation(
    conversationId: string,
    visibleInstanceIds: string[] | null,
    now = this.clock.now(),
  ): { pause: PauseView; storedKey: string } | null {
    // Pauses are few (one per stopped chat) and the id is a hash of (instance, chat): scan them.
    const rows = this.db.query<PauseRow, []>('SELECT * FROM conversation_pauses').all();
    const r = rows.find(
      (p) =>
        toPause(p).conversationId === conversationId &&
        (!visibleInstanceIds || visibleInstanceIds.includes(p.instance_id)),
    );
    if (!r || !this.pauseOf(r.instance_id, r.chat_key, now)) return null;
    return { pause: toPause(r), storedKey: r.chat_key };
  }

  resume(instanceId: string, chatKey: string): boolean {
    this.anyPause.delete(instanceId);
    return this.db.transaction(() => {
      const r = this.db
        .query<PauseRow, [string, string]>(
          'DELETE FROM conversation_pauses WHERE instance_id = ? AND chat_key = ? RETURNING *',
        )
        .get(instanceId, chatKey);
      if (r) for (const l of this.pauseListeners) l({ paused: false, pause: toPause(r) });
      return r !== null;
    })();
  }
}

interface PauseRow {
  instance_id: string;
  chat_key: string;
  reason: PauseView['reason'];
  until: string | null;
  created_at: string;
}

/**
 * Pause rows name a thread `chatId#threadId` (their stored, replicated key); conversations name it
 * `chatId/threadId`. The view speaks the conversations' language, so its ids match theirs.
 */
function toPause(r: PauseRow): PauseView {
  const hash = r.chat_key.lastIndexOf('#');
  const chatKey = hash < 0 ? r.chat_key : `${r.chat_key.slice(0, hash)}/${r.chat_key.slice(hash + 1)}`;
  return {
    instanceId: r.instance_id,
    chatKey,
    conversationId: conversationIdForKey(r.instance_id, chatKey),
    reason: r.reason,
    until: r.until,
    createdAt: r.created_at,
  };
}
