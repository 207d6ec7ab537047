// Socket-fed adapters retry an inbox write refused with Overloaded (bounded backoff on the
// injected clock) instead of dropping a message the platform already considers delivered, and a
// retrying message is not overtaken by the next one.
import { describe, expect, test } from 'bun:test';
import { VirtualClock } from '../../actors/runtime/virtual-clock.ts';
import { openDatabase } from '../../db/open.ts';
import { INGEST_RETRY_DELAYS_MS, ingestWithRetry, OrderedIngest } from '../../src/channels/ingest-retry.ts';
import type { AdapterContext } from '../../src/channels/types.ts';
import { BaileysAdapter } from '../../src/channels/whatsapp/adapter.ts';
import { Overloaded } from '../../src/core/errors.ts';
import type { Instance } from '../../src/core/instance.ts';
import type { InboundMessage, IngestResult } from '../../src/core/message.ts';
import { silentLogger } from '../../src/log.ts';
import { fakeSocketFactory } from '../fakes/baileys-socket.ts';

const msg = (id: string): InboundMessage => ({
  instanceId: 'i1',
  providerMessageId: id,
  chat: { chatId: 'c', kind: 'direct' },
  sender: { id: 'u' },
  text: id,
  contentType: 'text',
  timestamp: 0,
});

/** An inbox that refuses the first `refusals` writes with Overloaded. */
function flakyInbox(refusals: number) {
  const stored: string[] = [];
  let left = refusals;
  return {
    stored,
    attempts: 0,
    async ingest(m: InboundMessage): Promise<IngestResult> {
      this.attempts++;
      if (left-- > 0) throw new Overloaded(1);
      stored.push(m.providerMessageId);
      return { status: 'accepted', traceId: `t-${m.providerMessageId}` };
    },
  };
}

describe('ingestWithRetry', () => {
  test('retries an overloaded write on the backoff schedule and then stores it', async () => {
    const clock = new VirtualClock();
    const inbox = flakyInbox(3);
    let done: IngestResult | null = null;
    void ingestWithRetry(inbox, msg('a'), { clock }).then((r) => (done = r));
    await clock.flush();
    expect(inbox.attempts).toBe(1);
    await clock.advance(INGEST_RETRY_DELAYS_MS[0]);
    expect(inbox.attempts).toBe(2);
    await clock.advance(INGEST_RETRY_DELAYS_MS[1]);
    expect(inbox.attempts).toBe(3);
    expect(done).toBeNull();
    await clock.advance(INGEST_RETRY_DELAYS_MS[2]);
    expect(inbox.attempts).toBe(4);
    expect(done!).toEqual({ status: 'accepted', traceId: 't-a' });
    expect(inbox.stored).toEqual(['a']);
  });

  test('gives up after the bounded schedule with the overload error; other errors are not retried', async () => {
    const clock = new VirtualClock();
    const inbox = flakyInbox(100);
    let failure: unknown = null;
    void ingestWithRetry(inbox, msg('a'), { clock }).catch((e) => (failure = e));
    await clock.runAll();
    expect(inbox.attempts).toBe(INGEST_RETRY_DELAYS_MS.length + 1);
    expect(failure).toBeInstanceOf(Overloaded);

    let calls = 0;
    const broken = {
      ingest: async () => {
        calls++;
        throw new Error('disk full');
      },
    };
    await expect(ingestWithRetry(broken, msg('b'), { clock })).rejects.toThrow('disk full');
    expect(calls).toBe(1);
  });

  test('OrderedIngest keeps arrival order while the first message waits out the overload', async () => {
    const clock = new VirtualClock();
    const inbox = flakyInbox(2);
    const q = new OrderedIngest({ clock });
    const all = Promise.all([q.push(inbox, msg('m1')), q.push(inbox, msg('m2')), q.push(inbox, msg('m3'))]);
    await clock.runAll();
    await all;
    expect(inbox.stored).toEqual(['m1', 'm2', 'm3']);
  });
});

describe('Baileys adapter under an overloaded inbox', () => {
  test('messages.upsert during an overload is stored after retries, in order, none dropped', async () => {
    const db = openDatabase(':memory:');
    const now = new Date().toISOString();
    db.query(
      `INSERT INTO instances (id, seq, name, channel, webhook_secret, created_at, updated_at) VALUES ('wa-1', 1, 'wa-1', 'whatsapp-baileys', 's', ?, ?)`,
    ).run(now, now);
    const clock = new VirtualClock();
    const sockets = fakeSocketFactory();
    const inbox = flakyInbox(3);
    const instance = {
      id: 'wa-1',
      seq: 1,
      name: 'wa-1',
      channel: 'whatsapp-baileys',
      isActive: true,
      isDefault: false,
      config: {},
      settings: { replyMode: 'final', errorReply: null, accessMode: 'disabled', maxTextLength: null },
      webhookSecret: 's',
      status: 'disconnected',
      statusReason: null,
    } as unknown as Instance;
    const ctx: AdapterContext = { instance, log: silentLogger, ingest: (m) => inbox.ingest(m), setStatus() {} };
    const adapter = new BaileysAdapter({ db, clock, socketFactory: sockets.factory, random: () => 0.5 });
    await adapter.start(ctx);
    const sock = sockets.last();
    sock.emitOpen();
    const wa = (id: string) => ({
      key: { remoteJid: '5511900000001@s.whatsapp.net', id, fromMe: false },
      messageTimestamp: 1,
      message: { conversation: id },
    });
    sock.emitMessages([wa('W1'), wa('W2')]);
    sock.emitMessages([wa('W3')]);
    for (let i = 0; i < 10 && inbox.stored.length < 3; i++) await clock.advance(1000);
    expect(inbox.stored).toEqual(['W1', 'W2', 'W3']);
    expect(inbox.attempts).toBe(6);
    await adapter.stop('test end');
    db.close();
  });
});
