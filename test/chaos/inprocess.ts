// In-process chaos setup (no crash needed): a test gateway with the Evolution and agent stand-ins,
// a webhook poster that records into a History, and collection of the gateway's view.
import { type FakeAgent, type FakeBehaviour, startFakeAgent } from '../fakes/agents.ts';
import { type FakeEvolution, startFakeEvolution } from '../fakes/evolution.ts';
import { createTestGateway } from '../helpers.ts';
import { replyFor, upsert } from './harness.ts';
import { History } from './history.ts';

export async function inProcess(agentBehaviour: Partial<FakeBehaviour> = {}, env: Record<string, string> = {}) {
  const evo: FakeEvolution = await startFakeEvolution({ apikey: 'EVO-CHAOS-KEY' });
  const agent: FakeAgent = startFakeAgent({
    protocol: 'agui',
    reply: (m) => replyFor(m),
    deltaChars: 4,
    ...agentBehaviour,
  });
  const t = createTestGateway({ PIPELINE_RETRY_BASE_MS: '5', PIPELINE_RETRY_MAX_MS: '20', ...env });
  const res = await t.call('POST', '/api/v1/instances', {
    name: 'bot',
    evolution_url: evo.url,
    evolution_key: evo.apikey,
    agent_api_url: agent.url,
    agent_type: 'agui',
    agent_timeout: 5,
  });
  if (res.status !== 201) throw new Error(`create: ${res.status} ${JSON.stringify(res.body)}`);
  await t.gw.start();
  const token = new URL(res.body.webhook_url).searchParams.get('token')!;
  const history = new History();
  history.add({ src: 'harness', type: 'start', epoch: 0, crashAt: null, at: Date.now() });
  return {
    ...t,
    evo,
    agent,
    history,
    async post(id: string, chat: string, text: string) {
      history.add({ src: 'load', type: 'post', id, chat, text, at: Date.now() });
      const r = await t.call('POST', `/webhook/evolution/bot?token=${token}`, upsert(id, chat, text), {
        'x-api-key': '',
      });
      history.add({
        src: 'load',
        type: 'ack',
        id,
        http: r.status,
        status: r.body?.status ?? 'error',
        traceId: r.body?.trace_id ?? null,
        at: Date.now(),
      });
      return r;
    },
    /** Unfinished inbox rows. */
    open(): number {
      return t.gw.db
        .query<{ n: number }, []>("SELECT COUNT(*) AS n FROM inbox WHERE status IN ('pending','processing')")
        .get()!.n;
    },
    collect() {
      for (const r of agent.requests)
        history.add({ src: 'agent', type: 'call', key: r.idempotencyKey, message: r.message, at: r.at });
      for (const s of evo.sent) history.add({ src: 'channel', type: 'send', number: s.number, text: s.text, at: s.at });
      const rows = t.gw.db
        .query<any, []>(
          `SELECT i.*, (SELECT COUNT(*) FROM trace_steps s WHERE s.trace_id = i.id AND s.step = 'agent_called' AND s.status = 'success') AS runs FROM inbox i ORDER BY seq`,
        )
        .all();
      for (const r of rows) {
        history.add({
          src: 'gateway',
          type: 'trace',
          traceId: r.id,
          providerId: r.provider_message_id,
          conversationId: r.conversation_id,
          seq: r.seq,
          status: r.status,
          responseText: r.response_text,
          possibleDuplicate: r.possible_duplicate,
          agentRuns: r.runs,
          attempts: r.attempts,
        });
      }
      const one = (sql: string) => t.gw.db.query<{ n: number }, []>(sql).get()!.n;
      history.add({
        src: 'gateway',
        type: 'summary',
        inboxUnfinished: one("SELECT COUNT(*) AS n FROM inbox WHERE status IN ('pending','processing')"),
        outboxSending: one("SELECT COUNT(*) AS n FROM outbox WHERE status = 'sending'"),
        deadLetters: one('SELECT COUNT(*) AS n FROM dead_letters'),
      });
    },
    async dispose() {
      await t.close();
      await evo.stop();
      await agent.stop();
    },
  };
}
