// Access rules as data: what a rule says, who a message is from (normalised identifiers), whether
// a rule matches that sender and which of several matching rules wins. The access service
// (access.ts) stores the rules and applies them; this part has no state.
import { channelMatches, channelOf } from '../channels/registry.ts';
import type { Instance } from '../core/instance.ts';
import type { InboundMessage } from '../core/message.ts';

export type RuleType = 'allow' | 'deny';
export type RuleAction = 'block' | 'reply';
export type ChatKind = 'direct' | 'group';

export interface RuleCriteria {
  /** Exact platform user id (WhatsApp JID or phone, Discord/Slack user id); normalised. */
  platformUserId?: string;
  /** Phone number, `*` matches any digits (e.g. `+5511*`). */
  phone?: string;
  /** Channel kind, or a platform shared by several kinds (`whatsapp` matches both WhatsApp channels). */
  channel?: string;
  chatKind?: ChatKind;
  /** Group / channel id the message was sent in. */
  groupId?: string;
}

export interface AccessRule {
  id: string;
  instanceId: string | null;
  type: RuleType;
  criteria: RuleCriteria;
  priority: number;
  action: RuleAction;
  replyMessage: string | null;
  expiresAt: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface AccessRuleInput {
  instanceId?: string | null;
  type?: RuleType;
  criteria?: RuleCriteria;
  priority?: number;
  action?: RuleAction;
  replyMessage?: string | null;
  expiresAt?: string | null;
}

export interface RuleEvaluation {
  allowed: boolean;
  rule: AccessRule | null;
  reason: string;
}

/** Who a message is from, normalised for matching. */
export interface AccessSubject {
  ids: string[];
  phone: string | null;
  channel: string;
  chatKind: ChatKind;
  groupId: string | null;
}

const WA_USER = /^(.+?)(?::\d+)?@(?:s\.whatsapp\.net|c\.us)$/;
const WA_LID = /^(.+?)(?::\d+)?@lid$/;
/** Looks like a phone number (digits, spaces, punctuation, an optional leading +). */
export const PHONE_LIKE = /^\+?[\d\s().-]+$/;

/**
 * One canonical form per identifier: WhatsApp user JIDs and phone numbers become bare digits
 * ("+55 11 9999-0000", "551199990000@s.whatsapp.net", "551199990000:3@s.whatsapp.net" are equal),
 * LIDs lose their device suffix, everything else is trimmed and lower-cased.
 */
export function normalizeIdentifier(raw: string): string {
  const s = raw.trim().toLowerCase();
  const wa = WA_USER.exec(s);
  if (wa) return wa[1].replace(/\D/g, '');
  const lid = WA_LID.exec(s);
  if (lid) return `${lid[1]}@lid`;
  if (PHONE_LIKE.test(s) && /\d/.test(s)) return s.replace(/\D/g, '');
  return s;
}

/** The phone digits of a message's sender when the platform told us (JID, phone, LID alias). */
function senderPhone(msg: Pick<InboundMessage, 'sender'>, channel: string): string | null {
  const { id, phone, altId } = msg.sender;
  if (phone) {
    const p = normalizeIdentifier(phone);
    if (/^\d+$/.test(p)) return p;
  }
  for (const v of [id, altId]) {
    if (v && WA_USER.test(v.trim().toLowerCase())) return normalizeIdentifier(v);
  }
  // Some channels (WhatsApp) hand over bare digits.
  if (channelOf(channel)?.phoneSenderIds && /^\+?\d+$/.test(id.trim())) return id.replace(/\D/g, '');
  return null;
}

export function subjectOf(
  inst: Pick<Instance, 'channel'>,
  msg: Pick<InboundMessage, 'sender' | 'chat'>,
): AccessSubject {
  const ids = new Set<string>();
  for (const v of [msg.sender.id, msg.sender.altId, msg.sender.phone]) if (v) ids.add(normalizeIdentifier(v));
  const phone = senderPhone(msg, inst.channel);
  if (phone) ids.add(phone);
  return {
    ids: [...ids],
    phone,
    channel: inst.channel,
    chatKind: msg.chat.kind,
    groupId: msg.chat.kind === 'group' ? normalizeIdentifier(msg.chat.chatId) : null,
  };
}

function phonePattern(p: string): RegExp {
  const digits = p.replace(/[^\d*]/g, '').replace(/\*+/g, '*');
  return new RegExp(`^${digits.split('*').join('\\d*')}$`);
}

export function ruleMatches(rule: AccessRule, s: AccessSubject): boolean {
  const c = rule.criteria;
  if (c.platformUserId !== undefined && !s.ids.includes(normalizeIdentifier(c.platformUserId))) return false;
  if (c.phone !== undefined && (s.phone === null || !phonePattern(c.phone).test(s.phone))) return false;
  if (c.channel !== undefined && !channelMatches(c.channel, s.channel)) return false;
  if (c.chatKind !== undefined && c.chatKind !== s.chatKind) return false;
  if (c.groupId !== undefined && s.groupId !== normalizeIdentifier(c.groupId)) return false;
  return true;
}

/**
 * How narrowly a rule picks its senders (higher = narrower): a user id or exact phone names one
 * person, a wildcard phone a range (longer prefixes narrower), a group a room, chat kind and
 * channel whole classes. An instance rule is narrower than the same global rule.
 */
export function specificity(rule: AccessRule): number {
  const c = rule.criteria;
  let n = 0;
  if (c.platformUserId !== undefined) n += 1000;
  if (c.phone !== undefined) n += c.phone.includes('*') ? 300 + c.phone.replace(/\D/g, '').length : 1000;
  if (c.groupId !== undefined) n += 200;
  if (c.chatKind !== undefined) n += 20;
  if (c.channel !== undefined) n += 10;
  if (rule.instanceId !== null) n += 1;
  return n;
}

/** Highest priority first; then more specific; then deny before allow. */
export function compareRules(a: AccessRule, b: AccessRule): number {
  if (a.priority !== b.priority) return b.priority - a.priority;
  const sa = specificity(a);
  const sb = specificity(b);
  if (sa !== sb) return sb - sa;
  if (a.type !== b.type) return a.type === 'deny' ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** A rule as a trace and a decision's reason name it. */
export function describeRule(rule: AccessRule): string {
  const c = rule.criteria;
  const parts = Object.entries(c).map(([k, v]) => `${k}=${v}`);
  return `${rule.type} rule ${rule.id}${parts.length ? ` (${parts.join(', ')})` : ' (everyone)'}`;
}
