// The instance actor's status: a report without a reason clears the previous reason (a channel
// that reconnects must not keep showing the old failure).
import { expect, test } from 'bun:test';
import { InstanceActor } from '../../actors/instance.ts';
import { VirtualClock } from '../../actors/runtime/virtual-clock.ts';
import type { AdapterContext, ChannelAdapter } from '../../src/channels/types.ts';
import type { Instance, InstanceStatus } from '../../src/core/instance.ts';
import { silentLogger } from '../../src/log.ts';

test('setStatus without a reason clears the reason, in the actor and in what it reports', async () => {
  let ctx: AdapterContext | null = null;
  const adapter = {
    kind: 'discord',
    capabilities: {
      maxText: 2000,
      edit: false,
      typing: false,
      threads: false,
      reactions: false,
      media: [],
      pairing: 'token',
    },
    async start(c: AdapterContext) {
      ctx = c;
    },
    async stop() {},
    async send() {
      return { platformMessageId: 'x' };
    },
  } as unknown as ChannelAdapter;
  const reported: Array<{ status: InstanceStatus; reason: string | null }> = [];
  const actor = new InstanceActor({ id: 'i1', name: 'i1' } as Instance, {
    clock: new VirtualClock(),
    log: silentLogger,
    createAdapter: () => adapter,
    ingest: async () => ({ status: 'accepted', traceId: 't' }),
    onStatus: (_i, status, detail) => reported.push({ status, reason: detail.reason ?? null }),
  });
  await actor.start();
  ctx!.setStatus('error', { reason: 'gateway closed (4000)' });
  expect([actor.status, actor.reason]).toEqual(['error', 'gateway closed (4000)']);
  ctx!.setStatus('connected');
  expect([actor.status, actor.reason]).toEqual(['connected', null]);
  ctx!.setStatus('connecting', { reason: 'reconnecting' });
  ctx!.setStatus('connecting');
  expect(actor.reason).toBeNull();
  expect(reported.slice(-4)).toEqual([
    { status: 'error', reason: 'gateway closed (4000)' },
    { status: 'connected', reason: null },
    { status: 'connecting', reason: 'reconnecting' },
    { status: 'connecting', reason: null },
  ]);
  await actor.stop('test end');
});

test('overlapping restarts and starts never leave two live channel connections', async () => {
  let live = 0;
  let maxLive = 0;
  const make = () =>
    ({
      kind: 'discord',
      capabilities: {
        maxText: 2000,
        edit: false,
        typing: false,
        threads: false,
        reactions: false,
        media: [],
        pairing: 'token',
      },
      async start() {
        await Bun.sleep(5);
        live++;
        maxLive = Math.max(maxLive, live);
      },
      async stop() {
        await Bun.sleep(5); // a slow close: the window in which a second restart used to slip in
        live--;
      },
      async send() {
        return { platformMessageId: 'x' };
      },
    }) as unknown as ChannelAdapter;
  const actor = new InstanceActor({ id: 'i2', name: 'i2' } as Instance, {
    clock: new VirtualClock(),
    log: silentLogger,
    createAdapter: make,
    ingest: async () => ({ status: 'accepted', traceId: 't' }),
    onStatus: () => {},
  });
  await actor.start();
  await Promise.all([actor.restart(), actor.restart(), actor.start(), actor.restart()]);
  expect(live).toBe(1);
  expect(maxLive).toBe(1);
  await actor.stop('test end');
  expect(live).toBe(0);
});
