// The channel registry is the one place that knows the channels: no channel kind is named outside
// src/channels/, every definition is complete, and every declared secret stays masked in the views.
import { describe, expect, test } from 'bun:test';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { CHANNEL_KINDS, CHANNELS, inferChannel, SECRET_FIELDS } from '../../src/channels/registry.ts';
import type { ChannelDefinition, ChannelField } from '../../src/channels/types.ts';
import { maskSecret } from '../../src/services/ids.ts';
import { offlineGatewaysClosedAfterEach } from '../api/instance-fixtures.ts';

const ROOT = join(import.meta.dir, '..', '..');
const SEARCHED = ['src', 'actors', 'db'];
const CHANNELS_DIR = join('src', 'channels');

/**
 * Lines where a kind string is not a channel kind. Each entry is the file and the exact code on the
 * line, with the reason; keep it short.
 */
const NOT_A_KIND: Array<{ file: string; code: string; why: string }> = [
  {
    file: 'src/services/events.ts',
    code: "source: 'api',",
    why: 'message.sent/failed payload: the message was sent through the send API (the other source is "agent")',
  },
];

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...filesUnder(path));
    else out.push(path);
  }
  return out;
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('channel kinds outside src/channels/', () => {
  test('no file in src, actors or db names a registered channel kind', () => {
    const files = SEARCHED.flatMap((d) => filesUnder(join(ROOT, d)))
      .map((f) => relative(ROOT, f))
      .filter((f) => !f.startsWith(`${CHANNELS_DIR}/`) && /\.(ts|sql|js|html|css)$/.test(f));
    expect(files.length).toBeGreaterThan(50);
    const quoted = CHANNEL_KINDS.map((k) => ({ kind: k, re: new RegExp(`(['"\`])${escapeRegExp(k)}\\1`) }));
    const found: string[] = [];
    for (const file of files) {
      const lines = readFileSync(join(ROOT, file), 'utf8').split('\n');
      lines.forEach((line, i) => {
        for (const { kind, re } of quoted) {
          if (!re.test(line)) continue;
          if (NOT_A_KIND.some((a) => a.file === file && line.trim() === a.code)) continue;
          found.push(`${file}:${i + 1}: '${kind}' in: ${line.trim()}`);
        }
      });
    }
    expect(found).toEqual([]);
  });

  test('every allowed exception still exists (a stale entry would hide nothing and mislead)', () => {
    for (const a of NOT_A_KIND) {
      const lines = readFileSync(join(ROOT, a.file), 'utf8').split('\n');
      expect(lines.some((l) => l.trim() === a.code)).toBe(true);
    }
  });
});

describe('definitions', () => {
  test('kinds are unique; fields are well formed; one channel is the v1 fallback', () => {
    expect(new Set(CHANNEL_KINDS).size).toBe(CHANNELS.length);
    expect(CHANNELS.filter((d) => d.inferredFrom === 'otherwise')).toHaveLength(1);
    for (const d of CHANNELS) {
      const names = d.fields.map((f) => f.v1);
      expect(new Set(names).size).toBe(names.length);
      for (const f of d.fields) {
        expect(f.v1).toMatch(/^[a-z][a-z0-9_]*$/);
        expect(f.v2).toBe(f.v1.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()));
        expect(f.secret).toBe(f.type === 'secret');
        // An endpoint's secrets are fields of the same channel, and secrets.
        for (const s of f.receives ?? []) expect(d.fields.find((x) => x.v1 === s)?.secret).toBe(true);
      }
      for (const f of Array.isArray(d.inferredFrom) ? d.inferredFrom : []) expect(names).toContain(f);
      expect(d.traceSteps.sent).toMatch(/^[a-z_]+$/);
    }
  });

  test('a v1 create without channel picks the channel whose fields it names', () => {
    for (const d of CHANNELS) {
      if (!Array.isArray(d.inferredFrom)) continue;
      for (const f of d.inferredFrom) expect(inferChannel({ [f]: 'x' })).toBe(d.kind);
    }
    const fallback = CHANNELS.find((d) => d.inferredFrom === 'otherwise')!;
    expect(inferChannel({})).toBe(fallback.kind);
  });
});

/** Fields whose channel accepts only some strings (its validate()), with one it accepts. */
const SAMPLE_VALUES: Record<string, unknown> = { telegram_mode: 'webhook' };

/** A valid value of each field type (booleans off: nothing starts in the background). */
function sample(f: ChannelField, d: ChannelDefinition): unknown {
  if (f.v1 in SAMPLE_VALUES) return SAMPLE_VALUES[f.v1];
  switch (f.type) {
    case 'secret':
      return `${d.kind}-${f.v1}-s3cret-value`;
    case 'bool':
      return false;
    case 'int':
    case 'number':
      return 7;
    case 'intOrString':
      return '8';
    case 'strings':
      return ['123'];
    case 'http':
      return 'http://127.0.0.1:9/endpoint';
    case 'ws':
      return 'ws://127.0.0.1:9/ws';
    default:
      return 'plain-value';
  }
}

describe('secrets', () => {
  const gateway = offlineGatewaysClosedAfterEach();
  const withSecrets = CHANNELS.filter((d) => d.fields.some((f) => f.secret));

  test('the registry knows every declared secret', () => {
    expect(withSecrets.length).toBeGreaterThan(0);
    for (const d of withSecrets) for (const f of d.fields) if (f.secret) expect(SECRET_FIELDS.has(f.v1)).toBe(true);
  });

  for (const d of withSecrets) {
    test(`${d.kind}: every secret field is masked in the v1 and v2 views`, async () => {
      const t = gateway();
      const secrets = d.fields.filter((f) => f.secret);
      const expectMasked = (config: Record<string, unknown>, key: (f: ChannelField) => string, where: string) => {
        for (const f of secrets) {
          const value = sample(f, d) as string;
          expect({ where, field: key(f), value: config[key(f)] }).toEqual({
            where,
            field: key(f),
            value: maskSecret(value),
          });
        }
      };
      const leaks = (body: unknown) => secrets.filter((f) => JSON.stringify(body).includes(sample(f, d) as string));

      // v1: flat snake_case.
      const v1Body: Record<string, unknown> = { name: `v1-${d.platform}`, channel: d.kind };
      for (const f of d.fields) v1Body[f.v1] = sample(f, d);
      const created1 = await t.call('POST', '/api/v1/instances', v1Body);
      expect(created1.status).toBe(201);
      expectMasked(created1.body, (f) => f.v1, 'v1 create');
      const got1 = await t.call('GET', `/api/v1/instances/${v1Body.name}`);
      expectMasked(got1.body, (f) => f.v1, 'v1 get');
      const list1 = await t.call('GET', '/api/v1/instances');
      expect(leaks([created1.body, got1.body, list1.body])).toEqual([]);

      // v2: camelCase under channelConfig.
      const channelConfig: Record<string, unknown> = {};
      for (const f of d.fields) channelConfig[f.v2] = sample(f, d);
      const created2 = await t.call('POST', '/api/v2/instances', {
        name: `v2-${d.platform}`,
        channel: d.kind,
        channelConfig,
      });
      expect(created2.status).toBe(201);
      expectMasked(created2.body.data.channelConfig, (f) => f.v2, 'v2 create');
      const got2 = await t.call('GET', `/api/v2/instances/${created2.body.data.id}`);
      expectMasked(got2.body.data.channelConfig, (f) => f.v2, 'v2 get');
      const list2 = await t.call('GET', '/api/v2/instances');
      // The v1 instance seen through v2, too.
      const v1InV2 = list2.body.items.find((i: { name: string }) => i.name === v1Body.name);
      expectMasked(v1InV2.channelConfig, (f) => f.v2, 'v2 list');
      expect(leaks([created2.body, got2.body, list2.body])).toEqual([]);

      // The stored values are the real ones (masking is a view, not a loss).
      const stored = t.gw.instances.getByName(`v2-${d.platform}`)!;
      for (const f of secrets) expect(stored.config[f.v1]).toBe(sample(f, d));
    });
  }
});

describe('client libraries load with the first instance that needs them', () => {
  test('building the server loads no channel client library; creating an adapter loads its own', async () => {
    // A separate process: this one has loaded the libraries already (other suites).
    const script = `
      const loaded = (lib) => Object.keys(require.cache).some((k) => k.includes('/node_modules/' + lib + '/'));
      const libs = ['@whiskeysockets/baileys', 'discord.js', '@slack/bolt', 'grammy', 'qrcode'];
      await import(${JSON.stringify(join(ROOT, 'src/server.ts'))});
      const atStart = libs.filter(loaded);
      const { channelOf } = await import(${JSON.stringify(join(ROOT, 'src/channels/registry.ts'))});
      const { realClock } = await import(${JSON.stringify(join(ROOT, 'actors/runtime/clock.ts'))});
      channelOf('discord').createAdapter({ id: 'i', name: 'n', channel: 'discord', config: {}, settings: {} },
        { clock: realClock, config: { discordApiUrl: 'http://127.0.0.1:9' } });
      console.log(JSON.stringify({ atStart, afterDiscord: libs.filter(loaded) }));`;
    const probe = Bun.spawn([process.execPath, '-e', script], { stdout: 'pipe', stderr: 'pipe' });
    const [out, err, code] = [
      await new Response(probe.stdout).text(),
      await new Response(probe.stderr).text(),
      await probe.exited,
    ];
    expect({ code, err: code === 0 ? '' : err }).toEqual({ code: 0, err: '' });
    expect(JSON.parse(out.trim().split('\n').at(-1)!)).toEqual({ atStart: [], afterDiscord: ['discord.js'] });
  });
});
