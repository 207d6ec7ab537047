// /metrics after real traffic: the families the operator needs exist and moved.
import { afterEach, expect, test } from 'bun:test';
import { until } from './harness.ts';
import { inProcess } from './inprocess.ts';

let env: Awaited<ReturnType<typeof inProcess>> | null = null;
afterEach(async () => {
  await env?.dispose();
  env = null;
});

/** name{labels} → value, for every sample line. */
function samples(text: string): Map<string, number> {
  const m = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    m.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return m;
}
const sum = (s: Map<string, number>, prefix: string) =>
  [...s].filter(([k]) => k === prefix || k.startsWith(`${prefix}{`)).reduce((a, [, v]) => a + v, 0);

test('/metrics exposes inbox, backlog, actors, agent, send, retries, dead letters, sheds, dedupe, reconnects, WebSocket families, and they move', async () => {
  env = await inProcess({}, { CONVERSATION_BACKLOG_LIMIT: '3', PIPELINE_MAX_ATTEMPTS: '2' });
  const e = env;
  e.gw.settings.setMany({ 'pipeline.maxAttempts': 2 });
  const before = await e.call('GET', '/metrics', undefined, { 'x-api-key': '' });
  expect(before.status).toBe(200);
  const s0 = samples(before.body);

  // Slow agent so a burst to one chat builds a backlog (and sheds beyond 3).
  e.agent.setBehaviour({ latencyMs: 150 });
  const burst = Promise.all(Array.from({ length: 6 }, (_, i) => e.post(`B-${i}`, '15550001', `burst ${i}`)));
  await burst;
  const mid = samples((await e.call('GET', '/metrics')).body);
  expect(mid.get('switchboard_inbox_depth')).toBeGreaterThanOrEqual(1);
  expect(sum(mid, 'switchboard_conversation_backlog_count')).toBe(1); // one conversation has a backlog
  expect(mid.get('switchboard_conversation_backlog_bucket{le="+Inf"}')).toBe(1);
  expect(mid.get('switchboard_conversation_backlog_sum')).toBeGreaterThanOrEqual(1);
  expect(mid.get('switchboard_shed_total')).toBe(3);
  await e.post('B-0', '15550001', 'burst 0'); // redelivery
  await until(() => e.open() === 0, 10_000);

  // One message fails twice (503) and is dead-lettered; one fails once and is retried.
  e.agent.setBehaviour({ latencyMs: 0 });
  e.agent.plan((req) =>
    req.message === 'dead'
      ? { status: 503 }
      : req.message === 'flaky' && e.agent.requests.filter((r) => r.message === 'flaky').length === 1
        ? { status: 503 }
        : undefined,
  );
  await e.post('D-1', '15550002', 'dead');
  await e.post('R-1', '15550003', 'flaky');
  await until(() => e.open() === 0, 10_000);
  e.evo.fail('sendText', 500, 1);
  await e.post('X-1', '15550004', 'send fails once');
  await until(() => e.open() === 0, 10_000);

  // A connection restart counts as a reconnect.
  const inst = e.gw.instances.getByName('bot')!;
  await e.gw.pipeline.instanceActor(inst.id)!.restart();

  const s1 = samples((await e.call('GET', '/metrics')).body);
  const moved = (name: string) => expect(sum(s1, name)).toBeGreaterThan(sum(s0, name));
  moved('switchboard_messages_total');
  moved('switchboard_agent_duration_seconds_count');
  moved('switchboard_agent_time_to_first_token_seconds_count');
  moved('switchboard_send_duration_seconds_count');
  moved('switchboard_send_failures_total');
  moved('switchboard_retries_total');
  moved('switchboard_dead_letters_total');
  moved('switchboard_dedupe_hits_total');
  moved('switchboard_channel_reconnects_total');
  expect(s1.get('switchboard_messages_total{status="dead_lettered"}')).toBe(1);
  expect(s1.get('switchboard_send_failures_total{channel="whatsapp-evolution"}')).toBe(1);
  expect(s1.get('switchboard_dedupe_hits_total')).toBe(1);
  expect(s1.get('switchboard_inbox_depth')).toBe(0);
  expect(s1.get('switchboard_inbox_oldest_age_seconds')).toBe(0);
  expect(sum(s1, 'switchboard_conversation_backlog_count')).toBe(0);
  // Families present even when idle.
  for (const f of [
    'switchboard_actors',
    'switchboard_ws_clients',
    'switchboard_ws_resyncs_total',
    'switchboard_overloaded_total',
    'switchboard_agent_permits_in_use',
  ]) {
    expect(before.body).toContain(`# TYPE ${f} `);
  }
  expect(sum(s1, 'switchboard_actors{state="active"}')).toBeGreaterThanOrEqual(1);
}, 30_000);
