// Access rules: identifier normalisation, precedence, keyword gates and pauses, the v1/v2 routes,
// and the pipeline end to end (a denied sender's message ends 'blocked' and never reaches the agent).
import { describe, expect, test } from 'bun:test';
import type { InboundMessage } from '../../src/core/message.ts';
import { normalizeIdentifier } from '../../src/services/access-rules.ts';
import { conversationIdFor } from '../../src/services/inbox.ts';
import { evolutionInstance, evolutionUpsert, until, useFakeEvolutionAndAgent } from '../fixtures.ts';
import { ADMIN_KEY, createTestGateway } from '../helpers.ts';

function msg(over: Partial<InboundMessage> & { from?: string } = {}): InboundMessage {
  const from = over.from ?? '5511999990000@s.whatsapp.net';
  return {
    instanceId: 'x',
    providerMessageId: crypto.randomUUID(),
    chat: { chatId: from, kind: 'direct' },
    sender: { id: from },
    text: 'hello',
    contentType: 'text',
    timestamp: 0,
    ...over,
  };
}

async function withInstance(settings: Record<string, unknown> = {}) {
  const t = createTestGateway();
  const res = await t.call('POST', '/api/v2/instances', { name: 'wa', channel: 'whatsapp-baileys', settings });
  expect(res.status).toBe(201);
  const inst = () => t.gw.instances.get(res.body.data.id)!;
  const rule = async (body: Record<string, unknown>) => {
    const r = await t.call('POST', '/api/v2/access/rules', { instanceId: res.body.data.id, ...body });
    expect(r.status).toBe(201);
    return r.body.data;
  };
  return { ...t, id: res.body.data.id as string, inst, rule };
}

describe('identifiers', () => {
  test('phones, WhatsApp JIDs with device suffixes and spaced numbers normalise to the same digits', () => {
    const forms = [
      '+55 11 99999-0000',
      '5511999990000@s.whatsapp.net',
      '5511999990000:12@s.whatsapp.net',
      '(55) 11 99999 0000',
      '5511999990000@c.us',
    ];
    for (const f of forms) expect(normalizeIdentifier(f)).toBe('5511999990000');
    expect(normalizeIdentifier('1234567:3@lid')).toBe('1234567@lid');
    expect(normalizeIdentifier('  U0ABC  ')).toBe('u0abc');
  });

  test('a sender known only by LID matches a phone rule when the platform reports the phone alias', async () => {
    const t = await withInstance();
    await t.rule({ type: 'deny', criteria: { phone: '+5511999990000' } });
    const lidOnly = msg({ from: '8888@lid' });
    expect(t.gw.access.check(t.inst(), lidOnly).allowed).toBe(true);
    const withAlias = msg({
      sender: { id: '8888:4@lid', altId: '5511999990000@s.whatsapp.net' },
      chat: { chatId: '8888@lid', kind: 'direct' },
    });
    expect(t.gw.access.check(t.inst(), withAlias).allowed).toBe(false);
    const withPhone = msg({
      sender: { id: '8888@lid', phone: '+5511999990000' },
      chat: { chatId: '8888@lid', kind: 'direct' },
    });
    expect(t.gw.access.check(t.inst(), withPhone).allowed).toBe(false);
    await t.close();
  });
});

describe('precedence', () => {
  test('blocklist mode: a wildcard deny blocks the range, an exact allow at equal priority carves out one number', async () => {
    const t = await withInstance();
    const deny = await t.rule({ type: 'deny', criteria: { phone: '+5511*' } });
    const allow = await t.rule({ type: 'allow', criteria: { phone: '+5511999990000' } });
    const a = t.gw.access.check(t.inst(), msg());
    expect(a).toMatchObject({ allowed: true, ruleId: allow.id });
    const b = t.gw.access.check(t.inst(), msg({ from: '5511888880000@s.whatsapp.net' }));
    expect(b).toMatchObject({ allowed: false, ruleId: deny.id });
    expect(t.gw.access.check(t.inst(), msg({ from: '4911888880000@s.whatsapp.net' })).allowed).toBe(true);
    await t.close();
  });

  test('higher priority wins over specificity; at equal priority and specificity deny wins', async () => {
    const t = await withInstance();
    await t.rule({ type: 'allow', criteria: { phone: '+5511999990000' }, priority: 1 });
    const broad = await t.rule({ type: 'deny', criteria: {}, priority: 5 });
    expect(t.gw.access.check(t.inst(), msg())).toMatchObject({ allowed: false, ruleId: broad.id });
    await t.call('DELETE', `/api/v2/access/rules/${broad.id}`);
    const deny = await t.rule({ type: 'deny', criteria: { phone: '+5511999990000' }, priority: 1 });
    expect(t.gw.access.check(t.inst(), msg())).toMatchObject({ allowed: false, ruleId: deny.id });
    await t.close();
  });

  test('allowlist mode blocks strangers; global rules apply to every instance; expired rules are ignored', async () => {
    const t = await withInstance({ accessMode: 'allowlist' });
    expect(t.gw.access.check(t.inst(), msg())).toMatchObject({ allowed: false, reason: 'not on the allowlist' });
    const g = await t.call('POST', '/api/v2/access/rules', {
      instanceId: null,
      type: 'allow',
      criteria: { channel: 'whatsapp', chatKind: 'direct' },
    });
    expect(g.status).toBe(201);
    expect(t.gw.access.check(t.inst(), msg())).toMatchObject({ allowed: true, ruleId: g.body.data.id });
    expect(t.gw.access.check(t.inst(), msg({ chat: { chatId: '123-456@g.us', kind: 'group' } })).allowed).toBe(false);
    await t.call('PATCH', `/api/v2/access/rules/${g.body.data.id}`, {
      expiresAt: new Date(Date.now() - 1000).toISOString(),
    });
    expect(t.gw.access.check(t.inst(), msg()).allowed).toBe(false);
    await t.call('PATCH', `/api/v2/instances/${t.id}`, { settings: { accessMode: 'disabled' } });
    expect(t.gw.access.check(t.inst(), msg())).toMatchObject({
      allowed: true,
      reason: 'access control disabled for this instance',
    });
    await t.close();
  });

  test('a reply rule answers the denied sender with its message; group rules match by group id', async () => {
    const t = await withInstance();
    await t.rule({
      type: 'deny',
      criteria: { groupId: '120363-999@g.us' },
      action: 'reply',
      replyMessage: 'Not in this group, sorry',
    });
    const d = t.gw.access.check(t.inst(), msg({ chat: { chatId: '120363-999@g.us', kind: 'group' } }));
    expect(d).toMatchObject({ allowed: false, reply: 'Not in this group, sorry' });
    expect(t.gw.access.check(t.inst(), msg({ chat: { chatId: '120363-111@g.us', kind: 'group' } })).allowed).toBe(true);
    await t.close();
  });
});

describe('keyword gates', () => {
  test('triggers: only matching messages get through (contains, equals, startsWith, regex)', async () => {
    const t = await withInstance({
      triggers: [
        { type: 'startsWith', value: '!bot' },
        { type: 'regex', value: '^order\\s+#\\d+$' },
      ],
    });
    expect(t.gw.access.check(t.inst(), msg({ text: '!bot what time is it' })).allowed).toBe(true);
    expect(t.gw.access.check(t.inst(), msg({ text: 'ORDER #42' })).allowed).toBe(true);
    expect(t.gw.access.check(t.inst(), msg({ text: 'just chatting' }))).toMatchObject({
      allowed: false,
      reason: 'no trigger matched',
    });
    await t.close();
  });

  test('the stop keyword pauses one conversation (persistently) until the resume keyword', async () => {
    const t = await withInstance({
      stopKeyword: 'STOP',
      resumeKeyword: 'start',
      stopReply: 'Paused. Send START to resume.',
    });
    const stop = t.gw.access.check(t.inst(), msg({ text: ' stop ' }));
    expect(stop).toMatchObject({ allowed: false, reply: 'Paused. Send START to resume.' });
    expect(t.gw.access.check(t.inst(), msg({ text: 'are you there?' })).reason).toContain('paused: stop keyword');
    // Other conversations are not affected.
    expect(t.gw.access.check(t.inst(), msg({ from: '4911@s.whatsapp.net', text: 'hi' })).allowed).toBe(true);
    // The pause is in SQLite, not in memory.
    const row = t.gw.db.query('SELECT reason, until FROM conversation_pauses').get() as {
      reason: string;
      until: string | null;
    };
    expect(row).toEqual({ reason: 'stop_keyword', until: null });
    expect(t.gw.access.check(t.inst(), msg({ text: 'Start' })).allowed).toBe(true);
    expect(t.gw.access.check(t.inst(), msg({ text: 'are you there?' })).allowed).toBe(true);
    await t.close();
  });

  test('human takeover: a message from the owner pauses the bot in that chat for the configured minutes', async () => {
    let now = Date.parse('2025-01-01T00:00:00Z');
    const t = createTestGateway(
      {},
      { clock: { now: () => now, monotonic: () => now, setTimeout: () => ({ cancel() {} }), sleep: async () => {} } },
    );
    const res = await t.call('POST', '/api/v2/instances', {
      name: 'wa',
      channel: 'whatsapp-baileys',
      settings: { humanTakeoverMinutes: 30 },
    });
    const inst = () => t.gw.instances.get(res.body.data.id)!;
    const owner = t.gw.access.check(inst(), msg({ fromOwner: true, text: 'I will handle this one' }));
    expect(owner.allowed).toBe(false);
    expect(owner.reason).toContain('human takeover');
    now += 29 * 60_000;
    expect(t.gw.access.check(inst(), msg({ text: 'thanks!' })).reason).toContain('paused: human takeover');
    now += 2 * 60_000;
    expect(t.gw.access.check(inst(), msg({ text: 'thanks!' })).allowed).toBe(true);
    await t.close();
  });
});

describe('pauses API', () => {
  test('paused conversations are listed with their conversation id and can be resumed; other tenants see none of them', async () => {
    const t = await withInstance({ stopKeyword: 'STOP', resumeKeyword: 'start' });
    t.gw.access.check(t.inst(), msg({ text: 'stop' }));
    t.gw.access.check(t.inst(), msg({ from: '4911@s.whatsapp.net', text: 'STOP' }));
    const list = await t.call('GET', '/api/v2/access/pauses?limit=1');
    expect(list.status).toBe(200);
    expect(list.body.items).toHaveLength(1);
    expect(list.body.meta.hasMore).toBe(true);
    const rest = await t.call('GET', `/api/v2/access/pauses?cursor=${list.body.meta.cursor}`);
    const all = [...list.body.items, ...rest.body.items];
    expect(all.map((p: any) => p.chatKey).sort()).toEqual(['4911@s.whatsapp.net', '5511999990000@s.whatsapp.net']);
    const paused = all.find((p: any) => p.chatKey === '5511999990000@s.whatsapp.net');
    expect(paused).toMatchObject({ instanceId: t.id, reason: 'stop_keyword', until: null });
    // The id is the one the conversations and traces APIs use.
    expect(paused.conversationId).toBe(
      conversationIdFor(t.id, { chatId: '5511999990000@s.whatsapp.net', kind: 'direct' }),
    );

    // A key bound to another instance sees no pauses and cannot resume one.
    const other = await t.call('POST', '/api/v2/instances', { name: 'other', channel: 'whatsapp-baileys' });
    const { key: tenant } = t.gw.keys.create({
      name: 'tenant',
      scopes: ['access:*'],
      instanceIds: [other.body.data.id],
    });
    expect((await t.call('GET', '/api/v2/access/pauses', undefined, { 'x-api-key': tenant })).body.items).toEqual([]);
    expect(
      (await t.call('DELETE', `/api/v2/access/pauses/${paused.conversationId}`, undefined, { 'x-api-key': tenant }))
        .status,
    ).toBe(404);

    const del = await t.call('DELETE', `/api/v2/access/pauses/${paused.conversationId}`);
    expect(del.status).toBe(200);
    expect(t.gw.access.check(t.inst(), msg({ text: 'are you there?' })).allowed).toBe(true);
    expect((await t.call('DELETE', `/api/v2/access/pauses/${paused.conversationId}`)).body.error.code).toBe(
      'NOT_FOUND',
    );
    expect((await t.call('GET', '/api/v2/access/pauses')).body.items).toHaveLength(1);
    await t.close();
  });

  test('a paused thread is listed under the conversation id of that thread and resumed by it', async () => {
    const t = await withInstance({ stopKeyword: 'STOP' });
    const thread = { chatId: 'C42', threadId: '1700000000.000100', kind: 'group' as const };
    t.gw.access.check(t.inst(), msg({ chat: thread, text: 'stop' }));
    const [p] = (await t.call('GET', '/api/v2/access/pauses')).body.items;
    expect(p).toMatchObject({ chatKey: 'C42/1700000000.000100', conversationId: conversationIdFor(t.id, thread) });
    expect(t.gw.access.check(t.inst(), msg({ chat: thread, text: 'hello?' })).allowed).toBe(false);
    expect((await t.call('DELETE', `/api/v2/access/pauses/${conversationIdFor(t.id, thread)}`)).status).toBe(200);
    expect(t.gw.access.check(t.inst(), msg({ chat: thread, text: 'hello?' })).allowed).toBe(true);
    await t.close();
  });
});

describe('routes', () => {
  test('v2 CRUD, filters and validation', async () => {
    const t = await withInstance();
    const r = await t.rule({ type: 'deny', criteria: { platformUserId: 'U123' }, priority: 3 });
    expect(r).toMatchObject({
      instanceId: t.id,
      type: 'deny',
      criteria: { platformUserId: 'U123' },
      priority: 3,
      action: 'block',
      replyMessage: null,
    });
    expect((await t.call('GET', `/api/v2/access/rules/${r.id}`)).body.data.id).toBe(r.id);
    const list = await t.call('GET', `/api/v2/access/rules?instanceId=wa&type=deny`);
    expect(list.body.items.map((x: any) => x.id)).toEqual([r.id]);
    expect(list.body.meta.total).toBe(1);
    const upd = await t.call('PATCH', `/api/v2/access/rules/${r.id}`, { type: 'allow' });
    expect(upd.body.data.type).toBe('allow');
    const bad = await t.call('POST', '/api/v2/access/rules', {
      instanceId: t.id,
      type: 'deny',
      criteria: { phone: 'abc' },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('VALIDATION_ERROR');
    const noReply = await t.call('POST', '/api/v2/access/rules', {
      instanceId: t.id,
      type: 'deny',
      criteria: {},
      action: 'reply',
    });
    expect(noReply.status).toBe(400);
    expect(noReply.body.error.details[0].field).toBe('replyMessage');
    expect(
      (await t.call('POST', '/api/v2/access/rules', { instanceId: 'nope', type: 'deny', criteria: {} })).status,
    ).toBe(404);
    expect((await t.call('DELETE', `/api/v2/access/rules/${r.id}`)).body).toEqual({ success: true });
    expect((await t.call('GET', `/api/v2/access/rules/${r.id}`)).status).toBe(404);
    await t.close();
  });

  test('POST /access/check answers allowed, rule and reason', async () => {
    const t = await withInstance();
    const deny = await t.rule({ type: 'deny', criteria: { phone: '+1555*' } });
    const res = await t.call('POST', '/api/v2/access/check', {
      instanceId: t.id,
      platformUserId: '+1 555 123 4567',
      channel: 'whatsapp-baileys',
    });
    expect(res.status).toBe(200);
    expect(res.body.data.allowed).toBe(false);
    expect(res.body.data.rule.id).toBe(deny.id);
    expect(res.body.data.reason).toContain('deny rule');
    const ok = await t.call('POST', '/api/v2/access/check', {
      instanceId: 'wa',
      platformUserId: '4915112345',
      channel: 'whatsapp-baileys',
    });
    expect(ok.body.data).toEqual({ allowed: true, rule: null, reason: 'no rule matched (blocklist mode)' });
    await t.close();
  });

  test('v1 access-control: block, allow replaces block for the same number, list', async () => {
    const t = await withInstance();
    const b = await t.call('POST', '/api/v1/instances/wa/access-control', {
      action: 'block',
      phone_number: '+1234567890',
    });
    expect(b.status).toBe(201);
    expect(b.body).toMatchObject({ instance_name: 'wa', phone_number: '+1234567890', action: 'block' });
    expect(t.gw.access.check(t.inst(), msg({ from: '1234567890@s.whatsapp.net' })).allowed).toBe(false);
    await t.call('POST', '/api/v1/instances/wa/access-control', { action: 'allow', phone_number: '+9876543210' });
    await t.call('POST', '/api/v1/instances/wa/access-control', { action: 'allow', phone_number: '+1 234 567 890' });
    const list = await t.call('GET', '/api/v1/instances/wa/access-control');
    expect(list.status).toBe(200);
    expect(list.body.map((r: any) => [r.phone_number, r.action]).sort()).toEqual([
      ['+1 234 567 890', 'allow'],
      ['+9876543210', 'allow'],
    ]);
    expect(t.gw.access.check(t.inst(), msg({ from: '1234567890@s.whatsapp.net' })).allowed).toBe(true);
    expect((await t.call('GET', '/api/v1/instances/nope/access-control')).status).toBe(404);
    await t.close();
  });

  test("an instance-bound key sees global rules and its own, cannot touch global or other instances' rules", async () => {
    const t = await withInstance();
    const other = await t.call('POST', '/api/v2/instances', { name: 'other', channel: 'api' });
    const mine = await t.rule({ type: 'deny', criteria: { phone: '+1*' } });
    const theirs = await t.call('POST', '/api/v2/access/rules', {
      instanceId: other.body.data.id,
      type: 'deny',
      criteria: {},
    });
    const global = await t.call('POST', '/api/v2/access/rules', { type: 'deny', criteria: { phone: '+7*' } });
    const { key } = t.gw.keys.create({ name: 'bound', scopes: ['access:*'], instanceIds: [t.id] });
    const h = { 'x-api-key': key };
    const list = await t.call('GET', '/api/v2/access/rules', undefined, h);
    expect(list.body.items.map((r: any) => r.id).sort()).toEqual([mine.id, global.body.data.id].sort());
    expect((await t.call('GET', `/api/v2/access/rules/${theirs.body.data.id}`, undefined, h)).status).toBe(404);
    expect((await t.call('DELETE', `/api/v2/access/rules/${global.body.data.id}`, undefined, h)).status).toBe(403);
    expect((await t.call('POST', '/api/v2/access/rules', { type: 'deny', criteria: {} }, h)).status).toBe(403);
    expect(
      (await t.call('POST', '/api/v2/access/rules', { instanceId: 'other', type: 'deny', criteria: {} }, h)).status,
    ).toBe(404);
    expect((await t.call('POST', '/api/v2/access/check', { instanceId: 'other', platformUserId: 'x' }, h)).status).toBe(
      404,
    );
    expect(ADMIN_KEY).not.toBe(key);
    await t.close();
  });

  test('deleting an instance deletes its rules', async () => {
    const t = await withInstance();
    await t.rule({ type: 'deny', criteria: {} });
    await t.call('DELETE', `/api/v2/instances/${t.id}`);
    expect(t.gw.access.countRules()).toBe(0);
    await t.close();
  });
});

describe('pipeline', () => {
  const fakes = useFakeEvolutionAndAgent({ evolution: { apikey: 'EVO-KEY-123456' }, agent: { protocol: 'json' } });

  test('a blocked sender gets the rule reply, the trace ends blocked, and the agent is never called', async () => {
    const t = createTestGateway();
    const { post } = await evolutionInstance(t, { name: 'bot', ...fakes });
    await t.gw.start();
    await t.call('POST', '/api/v2/access/rules', {
      instanceId: 'bot',
      type: 'deny',
      criteria: { phone: '+1555*' },
      action: 'reply',
      replyMessage: 'This number is blocked',
    });
    const before = fakes.agent.requests.length;
    const hook = await post(
      evolutionUpsert({ instance: 'bot', id: 'blocked-1', text: 'hello', phone: '15551234567', name: 'X' }),
    );
    expect(hook.status).toBe(200);
    await until(() => t.gw.pipeline.traces.get(hook.body.trace_id)?.status === 'blocked');
    await fakes.evo.waitForSent(1);
    expect(fakes.evo.sent.at(-1)!.text).toBe('This number is blocked');
    expect(fakes.agent.requests.length).toBe(before);
    const trace = await t.call('GET', `/api/v1/traces/${hook.body.trace_id}`);
    const step = trace.body.steps.find((s: any) => s.step === 'access_control_checked');
    expect(step.user_allowed).toBe(false);
    await t.close();
  });
});
