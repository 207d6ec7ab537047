// The outbound-request policy. Every refusal here is checked WITHOUT traffic: the underlying fetch
// is a recorder and names resolve through an injected resolver, so no test sends anything to a
// metadata or private address.
import { describe, expect, test } from 'bun:test';
import { createAgentClient, runAgent } from '../../src/agents/index.ts';
import { AgentError } from '../../src/agents/types.ts';
import { sendText } from '../../src/channels/evolution/client.ts';
import { ChannelError } from '../../src/core/errors.ts';
import type { AgentConfig } from '../../src/core/instance.ts';
import {
  addressClass,
  createOutboundFetch,
  literalProblem,
  maskUrl,
  type OutboundPolicy,
  OutboundRefused,
  type Resolver,
} from '../../src/net/outbound.ts';
import { createTestGateway } from '../helpers.ts';

const NAMES: Record<string, string[]> = {
  'meta.rebind.test': ['169.254.169.254'],
  'v6meta.rebind.test': ['fd00:ec2::254'],
  'mapped.rebind.test': ['::ffff:169.254.169.254'],
  'internal.rebind.test': ['10.0.0.5'],
  'mixed.rebind.test': ['93.184.216.34', '192.168.1.9'],
  'public.example.test': ['93.184.216.34'],
  'other.example.test': ['93.184.216.35'],
};
const resolve: Resolver = async (host) => {
  const a = NAMES[host];
  if (!a) throw new Error(`ENOTFOUND ${host}`);
  return a;
};

interface Recorded {
  url: string;
  init: RequestInit;
}

/** A fetch that answers from a table and records every call; it never opens a socket. */
function recorder(answers: Record<string, () => Response> = {}) {
  const calls: Recorded[] = [];
  const f = (async (input: string | URL | Request, init: RequestInit = {}) => {
    const url = String(input);
    calls.push({ url, init });
    return answers[url]?.() ?? new Response('{"text":"ok"}', { status: 200 });
  }) as typeof fetch;
  return { f, calls };
}

function policy(over: Partial<OutboundPolicy> = {}): OutboundPolicy {
  return { allowPrivate: true, allowedHosts: [], resolve, ...over };
}

async function refusal(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a refusal');
}

describe('addressClass', () => {
  const cases: Array<[string, string | null]> = [
    ['169.254.169.254', 'link-local'],
    ['169.254.0.1', 'link-local'],
    ['fe80::1', 'link-local'],
    ['[fe80::1%eth0]', 'link-local'],
    ['febf::1', 'link-local'],
    ['fd00:ec2::254', 'metadata'],
    ['100.100.100.200', 'metadata'],
    ['::ffff:169.254.169.254', 'link-local'],
    ['::ffff:a9fe:a9fe', 'link-local'],
    ['64:ff9b::a9fe:a9fe', 'link-local'],
    ['127.0.0.1', 'loopback'],
    ['0.0.0.0', 'loopback'],
    ['::1', 'loopback'],
    ['::', 'loopback'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['10.1.2.3', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.0.1', 'private'],
    ['100.64.0.1', 'private'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['172.32.0.1', 'public'],
    ['8.8.8.8', 'public'],
    ['2001:4860:4860::8888', 'public'],
    ['example.com', null],
  ];
  for (const [ip, cls] of cases) test(`${ip} → ${cls}`, () => expect(addressClass(ip)).toBe(cls as never));
});

describe('literalProblem (checked when a URL is saved)', () => {
  test('link-local and metadata literals and names are refused, whatever their spelling', () => {
    for (const url of [
      'http://169.254.169.254/latest/meta-data/',
      'http://2852039166/', // 169.254.169.254 as one number: URL parsing normalises it
      'http://0xa9fea9fe/',
      'http://[fe80::1]:8080/',
      'http://[fd00:ec2::254]/',
      'http://[::ffff:169.254.169.254]/',
      'http://metadata.google.internal/computeMetadata/v1/',
      'http://METADATA.GOOGLE.INTERNAL./',
      'ws://169.254.1.1/ws',
    ])
      expect(literalProblem(url)).not.toBeNull();
  });

  test('public, private and loopback literals and ordinary names pass (they are checked at request time)', () => {
    for (const url of ['https://agent.example.com/', 'http://127.0.0.1:8000/', 'http://10.0.0.5/', 'http://[::1]/'])
      expect(literalProblem(url)).toBeNull();
  });
});

describe('createOutboundFetch', () => {
  test('a name resolving to a link-local, metadata or mapped address is refused with no traffic', async () => {
    const { f, calls } = recorder();
    const out = createOutboundFetch(f, policy());
    for (const host of ['meta.rebind.test', 'v6meta.rebind.test', 'mapped.rebind.test']) {
      const err = await refusal(out(`http://${host}/latest/meta-data/`));
      expect(err).toBeInstanceOf(OutboundRefused);
      expect(err.message).toContain('link-local or cloud metadata');
    }
    expect(await refusal(out('http://metadata.google.internal/'))).toBeInstanceOf(OutboundRefused);
    expect(await refusal(out('http://169.254.169.254/'))).toBeInstanceOf(OutboundRefused);
    expect(await refusal(out('file:///etc/passwd'))).toBeInstanceOf(OutboundRefused);
    expect(calls).toHaveLength(0);
  });

  test('private and loopback addresses: allowed by default, refused with allowPrivate false', async () => {
    const { f, calls } = recorder();
    const open = createOutboundFetch(f, policy());
    expect((await open('http://internal.rebind.test/')).status).toBe(200);
    expect((await open('http://127.0.0.1:9/')).status).toBe(200);
    expect(calls.map((c) => c.url)).toEqual(['http://internal.rebind.test/', 'http://127.0.0.1:9/']);

    calls.length = 0;
    const closed = createOutboundFetch(f, policy({ allowPrivate: false }));
    for (const url of [
      'http://internal.rebind.test/',
      'http://127.0.0.1:9/',
      'http://[::1]/',
      'http://mixed.rebind.test/',
    ]) {
      const err = await refusal(closed(url));
      expect(err).toBeInstanceOf(OutboundRefused);
      expect(err.message).toContain('OUTBOUND_ALLOW_PRIVATE=false');
    }
    expect(calls).toHaveLength(0);
    expect((await closed('http://public.example.test/')).status).toBe(200);
  });

  test('an allowlist admits only its hosts; a listed host may be private, never link-local', async () => {
    const { f, calls } = recorder();
    const out = createOutboundFetch(
      f,
      policy({ allowPrivate: false, allowedHosts: ['internal.rebind.test', '*.example.test', 'meta.rebind.test'] }),
    );
    expect((await out('http://internal.rebind.test/')).status).toBe(200);
    expect((await out('http://public.example.test/')).status).toBe(200);
    expect(await refusal(out('http://127.0.0.1:9/'))).toBeInstanceOf(OutboundRefused);
    expect((await refusal(out('http://meta.rebind.test/'))).message).toContain('link-local');
    expect(calls.map((c) => c.url)).toEqual(['http://internal.rebind.test/', 'http://public.example.test/']);
  });

  test('every redirect hop is checked: a redirect to a metadata or private address is refused before it is followed', async () => {
    const { f, calls } = recorder({
      'http://public.example.test/a': () =>
        new Response(null, { status: 302, headers: { location: 'http://meta.rebind.test/latest' } }),
      'http://public.example.test/b': () =>
        new Response(null, { status: 307, headers: { location: 'http://169.254.169.254/' } }),
      'http://public.example.test/c': () =>
        new Response(null, { status: 301, headers: { location: 'http://internal.rebind.test/' } }),
    });
    const out = createOutboundFetch(f, policy({ allowPrivate: false }));
    for (const path of ['a', 'b', 'c'])
      expect(await refusal(out(`http://public.example.test/${path}`))).toBeInstanceOf(OutboundRefused);
    expect(calls.map((c) => c.url)).toEqual([
      'http://public.example.test/a',
      'http://public.example.test/b',
      'http://public.example.test/c',
    ]);
    expect(calls.every((c) => c.init.redirect === 'manual')).toBe(true);
  });

  test('a literal address let through once is not checked again, but every redirect from it is; refusals are never remembered', async () => {
    let redirect = false;
    const { f, calls } = recorder({
      'http://203.0.113.7/hook': () =>
        redirect
          ? new Response(null, { status: 302, headers: { location: 'http://169.254.169.254/' } })
          : new Response('ok', { status: 200 }),
    });
    const out = createOutboundFetch(f, policy({ allowPrivate: false }));
    expect((await out('http://203.0.113.7/hook')).status).toBe(200);
    redirect = true;
    expect(await refusal(out('http://203.0.113.7/hook'))).toBeInstanceOf(OutboundRefused);
    for (let i = 0; i < 2; i++) expect(await refusal(out('http://10.0.0.5/x'))).toBeInstanceOf(OutboundRefused);
    expect(calls.map((c) => c.url)).toEqual(['http://203.0.113.7/hook', 'http://203.0.113.7/hook']);
  });

  test('allowed redirects are followed (bounded); credentials do not follow to another origin; 303 turns a POST into a GET', async () => {
    const { f, calls } = recorder({
      'http://public.example.test/post': () =>
        new Response(null, { status: 303, headers: { location: 'http://other.example.test/done' } }),
      'http://public.example.test/loop': () => new Response(null, { status: 302, headers: { location: '/loop' } }),
    });
    const out = createOutboundFetch(f, policy({ maxRedirects: 3 }));
    const res = await out('http://public.example.test/post', {
      method: 'POST',
      body: '{}',
      headers: { authorization: 'Bearer s3cret', apikey: 'k', 'content-type': 'application/json', 'x-trace': '1' },
    });
    expect(res.status).toBe(200);
    expect(calls.map((c) => [c.url, c.init.method])).toEqual([
      ['http://public.example.test/post', 'POST'],
      ['http://other.example.test/done', 'GET'],
    ]);
    const second = new Headers(calls[1].init.headers);
    expect(second.get('authorization')).toBeNull();
    expect(second.get('apikey')).toBeNull();
    expect(second.get('x-trace')).toBe('1');
    expect(calls[1].init.body).toBeUndefined();

    calls.length = 0;
    expect((await refusal(out('http://public.example.test/loop'))).message).toContain('more than 3 redirects');
    expect(calls).toHaveLength(4);
  });
});

describe('clients under the policy', () => {
  const agent = (url: string): AgentConfig => ({
    url,
    apiKey: null,
    type: 'json',
    timeoutSeconds: 5,
    idleTimeoutSeconds: 5,
    defaultAgent: null,
    model: null,
    headers: {},
  });
  const req = {
    userId: 'u',
    sessionId: 's',
    message: 'hi',
    context: { channel: 'api', instance: 'i', source: 'api' },
    sessionOrigin: 'api',
    idempotencyKey: 'k',
    messageId: 'm',
  };

  test('an agent URL whose name resolves to the metadata address fails for good, without a request', async () => {
    const { f, calls } = recorder();
    const client = createAgentClient(agent('http://meta.rebind.test/agent'), {
      leo: { bearerToken: null, subscriptionKey: null, workflowId: null, apiBaseUrl: null },
      fetch: createOutboundFetch(f, policy()),
    });
    const err = await refusal(runAgent(client, req, new AbortController().signal));
    expect(err).toBeInstanceOf(AgentError);
    expect((err as AgentError).retryable).toBe(false);
    expect(err.message).toContain('refused');
    expect(calls).toHaveLength(0);
  });

  test('an Evolution URL whose name resolves to a private address is refused (allowPrivate false), without a request', async () => {
    const { f, calls } = recorder();
    const err = await refusal(
      sendText(
        { url: 'http://internal.rebind.test', apiKey: 'k', instanceName: 'i' },
        '1',
        'x',
        {},
        {
          fetch: createOutboundFetch(f, policy({ allowPrivate: false })),
        },
      ),
    );
    expect(err).toBeInstanceOf(ChannelError);
    expect((err as ChannelError).retryable).toBe(false);
    expect(err.message).toContain('refused');
    expect(calls).toHaveLength(0);
  });

  test("the gateway's fetch is the policy's: OUTBOUND_ALLOW_PRIVATE=false and a resolver keep the Evolution status route off a private address", async () => {
    const { f, calls } = recorder();
    const t = createTestGateway({ OUTBOUND_ALLOW_PRIVATE: 'false' }, { fetch: f, resolve });
    try {
      const created = await t.call('POST', '/api/v2/instances', {
        name: 'evo-rebind',
        channel: 'whatsapp-evolution',
        isActive: false,
        channelConfig: { evolutionUrl: 'http://internal.rebind.test', evolutionKey: 'evo-key' },
      });
      expect(created.status).toBe(201);
      const status = await t.call('GET', `/api/v2/instances/${created.body.data.id}/status`);
      expect(status.body.data.status).toBe('error');
      expect(status.body.data.reason).toContain('outbound request refused');
      expect(calls).toHaveLength(0);
    } finally {
      await t.close();
    }
  });
});

describe('URLs saved on instances', () => {
  test('a literal link-local or metadata URL is refused with 400 naming the field; nothing is created', async () => {
    const t = createTestGateway();
    try {
      const cases: Array<[Record<string, unknown>, string]> = [
        [{ agent: { url: 'http://169.254.169.254/latest/meta-data/' } }, 'agent.url'],
        [{ agent: { url: 'http://metadata.google.internal/' } }, 'agent.url'],
        [
          { channel: 'whatsapp-evolution', channelConfig: { evolutionUrl: 'http://[fe80::1]/', evolutionKey: 'k' } },
          'evolution_url',
        ],
        [
          {
            channel: 'whatsapp-evolution',
            channelConfig: { evolutionUrl: 'http://[fd00:ec2::254]/', evolutionKey: 'k' },
          },
          'evolution_url',
        ],
        [
          {
            channel: 'whatsapp-evolution',
            channelConfig: { evolutionUrl: 'http://evo.example.com/x#', evolutionKey: 'k' },
          },
          'evolution_url',
        ],
      ];
      for (const [body, field] of cases) {
        const res = await t.call('POST', '/api/v2/instances', { name: 'ssrf', channel: 'api', ...body });
        expect(res.status).toBe(400);
        expect(res.body.error.code).toBe('VALIDATION_ERROR');
        expect(res.body.error.details.map((d: { field: string }) => d.field)).toContain(field);
      }
      const v1 = await t.call('POST', '/api/v1/instances', {
        name: 'ssrf-v1',
        evolution_url: 'http://169.254.169.254',
        evolution_key: 'k',
        agent_api_url: 'http://127.0.0.1:9/agent',
      });
      expect(v1.status).toBe(400);
      expect((await t.call('GET', '/api/v2/instances')).body.items).toEqual([]);
    } finally {
      await t.close();
    }
  });
});

describe('maskUrl', () => {
  test('passwords and credential query values are masked; the rest stays', () => {
    expect(maskUrl('http://u:pass@host.example/p?key=abc&x=1')).toBe('http://u:****@host.example/p?key=****&x=1');
    expect(maskUrl('https://h.example/a?access_token=t&api_key=k&sig=s')).toBe(
      'https://h.example/a?access_token=****&api_key=****&sig=****',
    );
    expect(maskUrl('https://agent.example.com/run')).toBe('https://agent.example.com/run');
    expect(maskUrl(null)).toBeNull();
  });
});
