#!/usr/bin/env bun
// switchboard: the gateway from a terminal, as a client of its HTTP API (cli/client.ts).
//
// Exit codes (scripts rely on them):
//   0  done
//   1  the gateway refused the request (its error code and message are printed)
//   2  usage: unknown command or option, missing argument, no API key configured
//   3  cannot reach the gateway (connection refused, DNS, timeout)
//   4  gave up waiting (pair --timeout)
import { Command, CommanderError } from 'commander';
import {
  type Conversation,
  GatewayError,
  type Instance,
  SwitchboardClient,
  type Trace,
  UnreachableError,
} from './client.ts';
import { configPath, resolveConnection, writeConfigFile } from './config.ts';
import { qrMatrixFromDataUrl, renderQr } from './qr.ts';

export const EXIT = { ok: 0, api: 1, usage: 2, unreachable: 3, timeout: 4 } as const;

class UsageError extends Error {}
class GaveUpError extends Error {}

interface Globals {
  url?: string;
  key?: string;
  json?: boolean;
}

const out = (s: string) => process.stdout.write(`${s}\n`);
const note = (s: string) => process.stderr.write(`${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function setup(cmd: Command) {
  const g = cmd.optsWithGlobals<Globals>();
  const conn = resolveConnection(g);
  if (!conn.key)
    throw new UsageError('no API key: pass --key, set SWITCHBOARD_API_KEY, or run `switchboard login --url … --key …`');
  return { client: new SwitchboardClient(conn.url, conn.key), json: Boolean(g.json), url: conn.url };
}

/** --json: the API's data as JSON; otherwise the human form. */
function show(json: boolean, data: unknown, human: () => string) {
  out(json ? JSON.stringify(data, null, 2) : human());
}

type Cell = string | number | boolean | null | undefined;
function table(head: string[], rows: Cell[][]): string {
  if (!rows.length) return '(none)';
  const cells = rows.map((r) => r.map((v) => (v === null || v === undefined || v === '' ? '-' : String(v))));
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((r) => r[i].length)));
  return [head, ...cells]
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  '))
    .join('\n');
}

const clip = (s: string | null | undefined, n = 48) => {
  const one = (s ?? '').replace(/\s+/g, ' ');
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
};
const int = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`expected a positive integer, got '${v}'`);
  return n;
};
const seconds = (v: string) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`expected a number of seconds, got '${v}'`);
  return n;
};
const collect = (v: string, prev: string[] = []) => [...prev, v];

function traceLine(t: Trace): Cell[] {
  const from = t.kind === 'send' ? 'api' : (t.sender.name ?? t.sender.phone ?? t.sender.id);
  return [t.id, t.instanceName, t.status, from, clip(t.text), t.receivedAt];
}
const TRACE_HEAD = ['ID', 'INSTANCE', 'STATUS', 'FROM', 'TEXT', 'RECEIVED'];

function instanceSummary(i: Instance): string {
  return table(
    ['FIELD', 'VALUE'],
    [
      ['id', i.id],
      ['name', i.name],
      ['channel', i.channel],
      ['status', i.statusReason ? `${i.status} (${i.statusReason})` : i.status],
      ['active', i.isActive],
      ['agent', (i.agent.url as string | null) ?? null],
      ['webhook', i.webhookUrl],
    ],
  );
}

function program(): Command {
  const p = new Command('switchboard')
    .description('Command-line client of a Switchboard gateway')
    .version('0.1.0')
    .option('--url <url>', 'gateway URL (env SWITCHBOARD_URL; default http://localhost:8882)')
    .option('--key <key>', 'API key (env SWITCHBOARD_API_KEY)')
    .option('--json', 'print JSON (the API data) instead of tables')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Configuration: flags, then SWITCHBOARD_URL / SWITCHBOARD_API_KEY, then ${configPath()} (switchboard login).
Exit codes: 0 ok · 1 the gateway refused (error code printed) · 2 usage · 3 cannot reach the gateway · 4 gave up waiting`,
    );

  p.command('login')
    .description('check --url and --key against the gateway and save them (file mode 0600)')
    .action(async (_o, cmd: Command) => {
      const { client, url } = setup(cmd);
      const key = cmd.optsWithGlobals<Globals>().key ?? process.env.SWITCHBOARD_API_KEY;
      if (!key) throw new UsageError('login needs --key (or SWITCHBOARD_API_KEY)');
      try {
        await client.listInstances({ limit: 1 });
      } catch (err) {
        // A valid key without instances:read is still a valid key.
        if (!(err instanceof GatewayError && err.code === 'FORBIDDEN')) throw err;
      }
      const path = writeConfigFile({ url, key });
      show(Boolean(cmd.optsWithGlobals<Globals>().json), { url, path }, () => `Saved ${url} and the key to ${path}`);
    });

  const instances = p.command('instances').description('channel instances');
  instances
    .command('list')
    .description('list instances with their status')
    .option('--channel <kinds>', 'comma list of channel kinds')
    .option('--status <statuses>', 'comma list of statuses')
    .option('--limit <n>', 'page size', int)
    .action(async (o, cmd: Command) => {
      const { client, json } = setup(cmd);
      const page = await client.listInstances({ channel: o.channel, status: o.status, limit: o.limit });
      show(json, page.items, () =>
        table(
          ['NAME', 'ID', 'CHANNEL', 'STATUS', 'ACTIVE'],
          page.items.map((i) => [i.name, i.id, i.channel, i.status, i.isActive]),
        ),
      );
    });
  instances
    .command('create <name>')
    .description('create an instance')
    .requiredOption('--channel <kind>', 'whatsapp-evolution, whatsapp-baileys, discord, slack, api, …')
    .option('--set <field=value>', 'a channelConfig field (camelCase), repeatable', collect)
    .option('--agent-url <url>', 'agent endpoint')
    .option('--agent-type <type>', 'auto, json, agui, openai, leo')
    .option('--agent-key <key>', 'agent API key')
    .option('--data <json>', 'more fields of the v2 create body, as JSON')
    .action(async (name: string, o, cmd: Command) => {
      const { client, json } = setup(cmd);
      let extra: Record<string, unknown> = {};
      if (o.data) {
        try {
          extra = JSON.parse(o.data);
        } catch {
          throw new UsageError('--data is not valid JSON');
        }
      }
      const channelConfig: Record<string, unknown> = { ...(extra.channelConfig as object) };
      for (const kv of (o.set as string[] | undefined) ?? []) {
        const eq = kv.indexOf('=');
        if (eq < 1) throw new UsageError(`--set expects field=value, got '${kv}'`);
        channelConfig[kv.slice(0, eq)] = kv.slice(eq + 1);
      }
      const agent: Record<string, unknown> = { ...(extra.agent as object) };
      if (o.agentUrl) agent.url = o.agentUrl;
      if (o.agentType) agent.type = o.agentType;
      if (o.agentKey) agent.apiKey = o.agentKey;
      const body: Record<string, unknown> = { ...extra, name, channel: o.channel };
      if (Object.keys(channelConfig).length) body.channelConfig = channelConfig;
      if (Object.keys(agent).length) body.agent = agent;
      const inst = await client.createInstance(body);
      show(json, inst, () => instanceSummary(inst));
    });
  instances
    .command('show <instance>')
    .description('one instance (id or name) with its live connection status')
    .action(async (id: string, _o, cmd: Command) => {
      const { client, json } = setup(cmd);
      const inst = await client.getInstance(id);
      const status = await client.instanceStatus(inst.id);
      show(
        json,
        { ...inst, live: status },
        () => `${instanceSummary(inst)}\nlive        ${status.status}${status.reason ? ` (${status.reason})` : ''}`,
      );
    });
  instances
    .command('delete <instance>')
    .description('stop and delete an instance')
    .action(async (id: string, _o, cmd: Command) => {
      const { client, json } = setup(cmd);
      const r = await client.deleteInstance(id);
      show(json, r, () => `Deleted ${id}`);
    });

  p.command('pair <instance>')
    .description('link WhatsApp: draw the QR (refreshed until connected), or show a pairing code with --phone')
    .option('--phone <number>', 'pair by phone number instead (WhatsApp Baileys): prints the code to enter')
    .option('--interval <seconds>', 'how often to poll', seconds, 2)
    .option('--timeout <seconds>', 'give up after', seconds, 180)
    .action(async (id: string, o, cmd: Command) => {
      const { client, json } = setup(cmd);
      const inst = await client.getInstance(id);
      const deadline = Date.now() + o.timeout * 1000;
      const tty = Boolean(process.stdout.isTTY) && !json;
      let lastQr: string | null = null;
      let waiting = false;
      if (o.phone) {
        const code = await client.pairingCode(inst.id, o.phone);
        show(
          json,
          { event: 'code', code },
          () => `Pairing code: ${code}\nOn the phone: Linked devices → Link a device → Link with phone number.`,
        );
      }
      for (;;) {
        const status = await client.instanceStatus(inst.id);
        if (status.status === 'connected') {
          show(json, { event: 'connected', instance: inst.name }, () => `✔ ${inst.name} is connected`);
          return;
        }
        if (!o.phone) {
          try {
            const qr = await client.instanceQr(inst.id);
            if (qr.qr !== lastQr) {
              lastQr = qr.qr;
              if (json) out(JSON.stringify({ event: 'qr', qr: qr.qr, expiresAt: qr.expiresAt }));
              else {
                const drawing = renderQr(await qrMatrixFromDataUrl(qr.qr), tty);
                out(`${tty ? '\x1b[2J\x1b[H' : ''}${drawing}`);
                out(`Scan with WhatsApp: Linked devices → Link a device (${inst.name}, expires ${qr.expiresAt})`);
              }
            }
          } catch (err) {
            // 404: no QR yet; 409: connected meanwhile (the next status says so) or stopped.
            if (!(err instanceof GatewayError) || (err.code !== 'NOT_FOUND' && err.code !== 'CONFLICT')) throw err;
            if (err.code === 'CONFLICT' && (await client.instanceStatus(inst.id)).status !== 'connected') throw err;
            if (err.code === 'NOT_FOUND' && !waiting && !json) note('Waiting for a QR code…');
            waiting = true;
          }
        }
        if (Date.now() + o.interval * 1000 > deadline)
          throw new GaveUpError(`${inst.name} did not connect within ${o.timeout}s`);
        await sleep(o.interval * 1000);
      }
    });

  p.command('send <instance> <to> <text...>')
    .description('send a text message (to: phone number, JID or channel id)')
    .option('--idempotency-key <key>', 'a retry with the same key sends nothing again')
    .option('--reply-to <id>', 'platform id of a message to reply to')
    .action(async (instance: string, to: string, words: string[], o, cmd: Command) => {
      const { client, json } = setup(cmd);
      const r = await client.sendText(
        { instanceId: instance, to, text: words.join(' '), ...(o.replyTo ? { replyTo: o.replyTo } : {}) },
        o.idempotencyKey,
      );
      show(json, r, () =>
        r.status === 'sent'
          ? `Sent ${r.messageId}${r.externalMessageId ? ` (platform id ${r.externalMessageId})` : ''}`
          : `Queued ${r.messageId} (${r.status})`,
      );
    });

  p.command('conversations [id]')
    .description('list conversations, or show one with its recent messages')
    .option('--instance <instance>', 'only this instance (id or name)')
    .option('--limit <n>', 'page size', int)
    .action(async (id: string | undefined, o, cmd: Command) => {
      const { client, json } = setup(cmd);
      if (!id) {
        const page = await client.listConversations({ instanceId: o.instance, limit: o.limit });
        show(json, page.items, () =>
          table(
            ['ID', 'INSTANCE', 'CHAT', 'LAST ACTIVITY', 'PENDING'],
            page.items.map((c: Conversation) => [
              c.id,
              c.instanceId,
              c.title ?? c.chat.chatId,
              c.lastActivityAt,
              c.pending,
            ]),
          ),
        );
        return;
      }
      const conv = await client.getConversation(id);
      const traces = (await client.listTraces({ conversationId: conv.id, limit: o.limit ?? 20 })).items.reverse();
      show(json, { ...conv, messages: traces }, () => {
        const lines = [`${conv.title ?? conv.chat.chatId} (${conv.id})`];
        for (const t of traces) {
          const who = t.kind === 'send' ? 'api' : (t.sender.name ?? t.sender.phone ?? t.sender.id);
          lines.push(`${t.receivedAt}  ${who}: ${t.text}`);
          if (t.responseText) lines.push(`${t.completedAt ?? ''}  agent: ${t.responseText}`);
          if (t.error) lines.push(`  ! ${t.status}: ${t.error}`);
        }
        return lines.join('\n');
      });
    });

  p.command('traces [id]')
    .description('list message traces, show one with its steps, or --follow new ones live')
    .option('--instance <instance>', 'only this instance (id or name)')
    .option('--status <statuses>', 'comma list of statuses')
    .option('--limit <n>', 'page size', int)
    .option('-f, --follow', 'then print traces as messages finish (live, over /ws)')
    .action(async (id: string | undefined, o, cmd: Command) => {
      const { client, json } = setup(cmd);
      if (id) {
        const t = await client.getTrace(id);
        show(json, t, () =>
          [
            table(TRACE_HEAD, [traceLine(t)]),
            '',
            table(
              ['STEP', 'STATUS', 'AT', 'MS'],
              t.steps.map((s) => [s.step, s.status, s.at, s.durationMs]),
            ),
            ...(t.error ? [`error: ${t.error}`] : []),
          ].join('\n'),
        );
        return;
      }
      const instanceId = o.instance ? (await client.getInstance(o.instance)).id : undefined;
      const page = await client.listTraces({
        instanceId,
        status: o.status,
        limit: o.limit ?? (o.follow ? 10 : undefined),
      });
      if (!o.follow) {
        show(json, page.items, () => table(TRACE_HEAD, page.items.map(traceLine)));
        return;
      }
      const seen = new Set(page.items.map((t) => t.id));
      const printTrace = (t: Trace) => out(json ? JSON.stringify(t) : table(TRACE_HEAD, [traceLine(t)]).split('\n')[1]);
      if (!json) out(table(TRACE_HEAD, [...page.items].reverse().map(traceLine)));
      else for (const t of [...page.items].reverse()) printTrace(t);
      await followTraces(client, instanceId, seen, printTrace);
    });

  const dead = p.command('dead-letters').description('messages that failed every attempt');
  dead
    .command('list')
    .description('list dead letters')
    .option('--instance <instance>', 'only this instance (id or name)')
    .option('--limit <n>', 'page size', int)
    .action(async (o, cmd: Command) => {
      const { client, json } = setup(cmd);
      const page = await client.listDeadLetters({ instanceId: o.instance, limit: o.limit });
      show(json, page.items, () =>
        table(
          ['ID', 'TRACE', 'INSTANCE', 'ATTEMPTS', 'REASON', 'AT'],
          page.items.map((d) => [d.id, d.traceId, d.instanceId, d.attempts, clip(d.reason, 40), d.createdAt]),
        ),
      );
    });
  dead
    .command('replay <id>')
    .description('put a dead letter back into its conversation')
    .action(async (id: string, _o, cmd: Command) => {
      const { client, json } = setup(cmd);
      const r = await client.replayDeadLetter(id);
      show(json, r, () => `Replayed: trace ${r.traceId} is ${r.status}`);
    });

  const keys = p.command('keys').description('API keys (needs an admin key)');
  keys
    .command('list')
    .description('list keys (prefix and last 4 characters only)')
    .action(async (_o, cmd: Command) => {
      const { client, json } = setup(cmd);
      const page = await client.listKeys();
      show(json, page.items, () =>
        table(
          ['ID', 'NAME', 'KEY', 'SCOPES', 'INSTANCES', 'LAST USED'],
          page.items.map((k) => [
            k.id,
            k.name,
            `${k.keyPrefix}…${k.keySuffix}`,
            k.scopes.join(','),
            k.instanceIds ? k.instanceIds.join(',') : 'all',
            k.lastUsedAt,
          ]),
        ),
      );
    });
  keys
    .command('create <name>')
    .description('create a key; the full key is printed once')
    .requiredOption('--scope <scope>', 'a scope (repeatable), e.g. messages:send', collect)
    .option('--instance <instance>', 'restrict to this instance (repeatable)', collect)
    .option('--expires <iso>', 'expiry (ISO 8601)')
    .action(async (name: string, o, cmd: Command) => {
      const { client, json } = setup(cmd);
      const k = await client.createKey({
        name,
        scopes: o.scope,
        ...(o.instance ? { instanceIds: o.instance } : {}),
        ...(o.expires ? { expiresAt: o.expires } : {}),
      });
      show(json, k, () => `Created key ${k.id} (${k.name}). Store it now, it is not shown again:\n${k.key}`);
    });
  keys
    .command('revoke <id>')
    .description('revoke a key')
    .action(async (id: string, _o, cmd: Command) => {
      const { client, json } = setup(cmd);
      const k = await client.revokeKey(id);
      show(json, k, () => `Revoked ${k.id} (${k.name})`);
    });

  return p;
}

/** Live: each message that finishes (its event arrives on /ws) is printed once, as its trace. */
function followTraces(
  client: SwitchboardClient,
  instanceId: string | undefined,
  seen: Set<string>,
  print: (t: Trace) => void,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(client.streamUrl());
    ws.onopen = () =>
      ws.send(JSON.stringify({ type: 'subscribe', channels: ['events'], filters: instanceId ? { instanceId } : {} }));
    ws.onmessage = async (e) => {
      const frame = JSON.parse(String(e.data));
      if (frame.type === 'subscribed') note('Following traces (Ctrl-C to stop)…');
      else if (frame.type === 'error') reject(new GatewayError(400, frame.error.code, frame.error.message));
      else if (frame.type === 'event' && frame.payload?.type === 'event.created') {
        const traceId = frame.payload.event?.traceId as string | null;
        if (!traceId || seen.has(traceId)) return;
        seen.add(traceId);
        try {
          print(await client.getTrace(traceId));
        } catch (err) {
          if (!(err instanceof GatewayError && err.code === 'NOT_FOUND')) reject(err);
        }
      }
    };
    ws.onerror = () => reject(new UnreachableError(client.baseUrl, new Error('WebSocket error')));
    ws.onclose = (e) => {
      if (e.code === 4401) reject(new GatewayError(401, 'UNAUTHORIZED', e.reason || 'the stream refused the key'));
      else if (e.code === 4429) reject(new GatewayError(429, 'RATE_LIMITED', e.reason || 'rate limited'));
      else resolve();
    };
    process.once('SIGINT', () => {
      ws.close();
      resolve();
    });
  });
}

/** Runs the CLI; resolves to the exit code. */
export async function run(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  try {
    await program().parseAsync(argv, { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError)
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0
        ? EXIT.ok
        : EXIT.usage;
    if (err instanceof UsageError) {
      note(`switchboard: ${err.message}`);
      return EXIT.usage;
    }
    if (err instanceof GatewayError) {
      if (json) note(JSON.stringify({ error: { code: err.code, message: err.message, details: err.details } }));
      else {
        note(`switchboard: ${err.code}: ${err.message}`);
        if (Array.isArray(err.details))
          for (const d of err.details as Array<{ field?: string; problem?: string }>)
            if (d?.field) note(`  ${d.field}: ${d.problem}`);
      }
      return EXIT.api;
    }
    if (err instanceof UnreachableError) {
      note(`switchboard: ${err.message}`);
      return EXIT.unreachable;
    }
    if (err instanceof GaveUpError) {
      note(`switchboard: ${err.message}`);
      return EXIT.timeout;
    }
    note(`switchboard: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT.api;
  }
}

if (import.meta.main) process.exitCode = await run(process.argv.slice(2));
