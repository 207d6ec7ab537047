// Shared pieces of the pipeline-level tests: a polling wait, the Evolution and agent stand-ins
// started once per file (or describe block), an Evolution messages.upsert webhook body, an
// Evolution instance created through the v1 API with its webhook poster, and a QR PNG decoder.
import { afterAll, afterEach, beforeAll, expect } from 'bun:test';
import jsQR from 'jsqr';
import { PNG } from 'pngjs';
import { type FakeAgent, type FakeBehaviour, type FakeProtocol, startFakeAgent } from './fakes/agents.ts';
import { type FakeEvolution, type FakeEvolutionOptions, startFakeEvolution } from './fakes/evolution.ts';
import type { createTestGateway } from './helpers.ts';

type TestGateway = Pick<ReturnType<typeof createTestGateway>, 'call'>;

/** Polls `cond` until it holds; throws after `ms`. For waiting on work other components do in the background. */
export async function until(cond: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

export interface UpsertFields {
  id: string;
  text: string;
  /** Sender's phone digits; the chat is `<phone>@s.whatsapp.net` unless `key` says otherwise. */
  phone?: string;
  /** pushName; left out of the body when not given. */
  name?: string;
  /** The body's `instance` field; left out when not given. */
  instance?: string;
  /** Overrides the message key (e.g. LID addressing: remoteJid, remoteJidAlt). */
  key?: Record<string, unknown>;
}

/** An Evolution `messages.upsert` webhook body carrying one text message. */
export function evolutionUpsert({ id, text, phone = '15551234567', name, instance, key }: UpsertFields) {
  return {
    event: 'messages.upsert',
    ...(instance !== undefined ? { instance } : {}),
    data: {
      key: { remoteJid: `${phone}@s.whatsapp.net`, fromMe: false, id, ...key },
      ...(name !== undefined ? { pushName: name } : {}),
      messageTimestamp: 1765375800,
      message: { conversation: text },
    },
  };
}

/** The stand-ins as the tests see them; reading one before beforeAll has run throws. */
export interface EvolutionAndAgent {
  readonly evo: FakeEvolution;
  readonly agent: FakeAgent;
}

/** What `resetAfterEach` puts back: an instant echo agent that never fails. */
const ECHO_BEHAVIOUR: Partial<FakeBehaviour> = { reply: (m) => `echo: ${m}`, latencyMs: 0, failTimes: 0, status: null };

/**
 * Starts a fake Evolution server and a fake agent before the tests of the current file or describe
 * block and stops them after. With `resetAfterEach`, each test starts with no recorded sends and
 * an instant echo agent.
 */
export function useFakeEvolutionAndAgent(opts: {
  evolution: FakeEvolutionOptions;
  agent: { protocol: FakeProtocol } & Partial<FakeBehaviour>;
  resetAfterEach?: boolean;
}): EvolutionAndAgent {
  let evo: FakeEvolution | undefined;
  let agent: FakeAgent | undefined;
  beforeAll(async () => {
    evo = await startFakeEvolution(opts.evolution);
    agent = startFakeAgent(opts.agent);
  });
  afterAll(async () => {
    await evo?.stop();
    await agent?.stop();
  });
  const fakes: EvolutionAndAgent = {
    get evo() {
      if (!evo) throw new Error('fake Evolution is not started yet (read it inside a test)');
      return evo;
    },
    get agent() {
      if (!agent) throw new Error('fake agent is not started yet (read it inside a test)');
      return agent;
    },
  };
  if (opts.resetAfterEach) {
    afterEach(() => {
      fakes.evo.reset();
      fakes.agent.setBehaviour(ECHO_BEHAVIOUR);
    });
  }
  return fakes;
}

/**
 * Creates an Evolution instance through POST /api/v1/instances (expecting 201) pointing at the
 * stand-ins, and returns its v2 id, its webhook token and a poster for its webhook. Does not
 * start the gateway.
 */
export async function evolutionInstance(
  t: TestGateway,
  {
    name,
    evo,
    agent,
    extra = {},
  }: { name: string; evo: FakeEvolution; agent: FakeAgent; extra?: Record<string, unknown> },
) {
  const res = await t.call('POST', '/api/v1/instances', {
    name,
    evolution_url: evo.url,
    evolution_key: evo.apikey,
    agent_api_url: agent.url,
    agent_timeout: 5,
    ...extra,
  });
  expect(res.status).toBe(201);
  const token = new URL(res.body.webhook_url).searchParams.get('token')!;
  const id = (await t.call('GET', `/api/v2/instances/${name}`)).body.data.id as string;
  /** Posts a webhook body the way Evolution does: with the token, without an API key. */
  const post = (body: unknown) =>
    t.call('POST', `/webhook/evolution/${name}?token=${token}`, body, { 'x-api-key': '' });
  return { id, token, post };
}

/** Decodes the QR code in a `data:image/png;base64,...` URL (null when the PNG holds none). */
export function decodeQrDataUrl(dataUrl: string): string | null {
  expect(dataUrl.startsWith('data:image/png;base64,')).toBe(true);
  const png = PNG.sync.read(Buffer.from(dataUrl.slice('data:image/png;base64,'.length), 'base64'));
  return jsQR(new Uint8ClampedArray(png.data), png.width, png.height)?.data ?? null;
}
