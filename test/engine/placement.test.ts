// The engine on its own (no gateway, no HTTP, virtual clock) with a stand-in placement: a
// conversation the placement says runs elsewhere is stored but never run here, while one it owns
// runs to its end and reaches the consumers given at construction.
import { afterEach, expect, test } from 'bun:test';
import { VirtualClock } from '../../actors/runtime/virtual-clock.ts';
import { openDatabase } from '../../db/open.ts';
import type { AgentClient, AgentEvent } from '../../src/agents/types.ts';
import type { ChatRef, InboundMessage } from '../../src/core/message.ts';
import { Pipeline } from '../../src/engine/pipeline.ts';
import { embeddedPlacement } from '../../src/engine/placement.ts';
import { silentLogger } from '../../src/log.ts';
import { conversationIdFor } from '../../src/services/inbox.ts';
import { InstanceService } from '../../src/services/instances.ts';
import { SettingsService } from '../../src/services/settings.ts';
import { StreamHub } from '../../src/stream/hub.ts';
import { testConfig } from '../helpers.ts';

const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const fn of closers.splice(0).reverse()) await fn();
});

test('a conversation the placement says is not ours is not run; one it owns is (virtual clock)', async () => {
  const clock = new VirtualClock();
  const db = openDatabase(':memory:');
  closers.push(() => db.close());
  const instances = new InstanceService(db);
  const inst = instances.create({ name: 'bot', channel: 'api', agent: { url: 'http://127.0.0.1:9/agent' } });
  const ours: ChatRef = { chatId: 'ours', kind: 'direct' };
  const elsewhere: ChatRef = { chatId: 'elsewhere', kind: 'direct' };

  const asked: string[] = [];
  const agent: AgentClient = {
    async *run(req): AsyncIterable<AgentEvent> {
      asked.push(req.message);
      yield { type: 'final', text: `reply to ${req.message}` };
    },
  };
  const finished: string[] = [];
  const pipeline: Pipeline = new Pipeline({
    db,
    config: testConfig(),
    clock,
    log: silentLogger,
    fetch: (() => Promise.reject(new Error('no network in this test'))) as unknown as typeof fetch,
    instances,
    settings: new SettingsService(db),
    hub: new StreamHub({ clock, keepaliveMs: 0 }),
    access: () => ({ allowed: true, reason: 'no access rules' }),
    onFinished: [(f) => finished.push(`${f.row.text} → ${f.status}`)],
    onInstanceStatus: [],
    // Stand-in: this process holds the instance but runs only the conversation of chat "ours".
    placement: (inbox) => ({
      ...embeddedPlacement(inbox),
      ownsConversation: (id) => id === conversationIdFor(inst.id, ours),
    }),
    agentFor: () => agent,
  });
  closers.push(() => pipeline.shutdown());
  await pipeline.start();

  const message = (id: string, chat: ChatRef): InboundMessage => ({
    instanceId: inst.id,
    providerMessageId: id,
    chat,
    sender: { id: 'user-1', name: 'Ana' },
    text: `question ${id}`,
    contentType: 'text',
    timestamp: 0,
  });
  const away = await pipeline.ingest(message('m-away', elsewhere));
  const here = await pipeline.ingest(message('m-here', ours));
  expect([away.status, here.status]).toEqual(['accepted', 'accepted']);

  // Every timer the engine sets (typing delay, the 30 s safety sweep) fires, twice over.
  for (let i = 0; i < 20 && finished.length === 0; i++) await clock.advance(1_000);
  await clock.advance(65_000);

  expect(asked).toEqual(['question m-here']);
  expect(finished).toEqual(['question m-here → completed']);
  expect(pipeline.inbox.get(here.seq)?.status).toBe('completed');
  // Stored (acknowledged) but left for the node that owns it.
  expect(pipeline.inbox.get(away.seq)?.status).toBe('pending');
  expect(pipeline.conversations.has(away.conversationId)).toBe(false);
});
