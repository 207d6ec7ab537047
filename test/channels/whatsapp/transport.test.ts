// The real Baileys socket under Bun, against a local WebSocket server: Baileys' first frame is
// the Noise prologue ("WA", 6, dict version 3) and a server close surfaces as
// connection.update {connection:'close'} with a status code. A full handshake is out of reach
// (Baileys verifies WhatsApp's certificate), so this covers exactly the transport.
import { afterEach, describe, expect, test } from 'bun:test';
import makeWASocket, { Browsers, BufferJSON, DisconnectReason, initAuthCreds, proto } from '@whiskeysockets/baileys';
import pino from 'pino';
import { createBaileysSocket, DEFAULT_WA_VERSION } from '../../../src/channels/whatsapp/socket.ts';

const silent = pino({ level: 'silent' });

interface ServerHandle {
  url: string;
  frames: Uint8Array[];
  requests: Request[];
  stop(): void;
}

/** Accepts the upgrade, records frames, and closes after the first binary frame. */
function startWaServer(mode: 'accept-then-close' | 'reject'): ServerHandle {
  const frames: Uint8Array[] = [];
  const requests: Request[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch(req, srv) {
      requests.push(req);
      if (mode === 'accept-then-close' && srv.upgrade(req)) return undefined;
      return new Response('forbidden', { status: 403 });
    },
    websocket: {
      message(ws, data) {
        frames.push(typeof data === 'string' ? new TextEncoder().encode(data) : new Uint8Array(data));
        ws.close(1000, 'test server closes');
      },
    },
  });
  return { url: `ws://127.0.0.1:${server.port}/ws/chat`, frames, requests, stop: () => server.stop(true) };
}

function memoryAuth() {
  return {
    creds: initAuthCreds(),
    keys: { get: async () => ({}), set: async () => {} },
  };
}

type Update = {
  connection?: string;
  lastDisconnect?: { error?: { output?: { statusCode?: number }; message?: string } };
};

function waitForClose(
  sock: { ev: { on(e: 'connection.update', l: (u: any) => void): void } },
  timeoutMs: number,
): Promise<{ update: Update; updates: Update[] }> {
  const updates: Update[] = [];
  return new Promise((resolve, reject) => {
    const t = setTimeout(
      () => reject(new Error(`no close within ${timeoutMs} ms; updates: ${JSON.stringify(updates)}`)),
      timeoutMs,
    );
    sock.ev.on('connection.update', (u: Update) => {
      updates.push(u);
      if (u.connection === 'close') {
        clearTimeout(t);
        resolve({ update: u, updates });
      }
    });
  });
}

let servers: ServerHandle[] = [];
afterEach(() => {
  for (const s of servers) s.stop();
  servers = [];
});

describe('Baileys transport under Bun', () => {
  test('exports the API the adapter relies on', () => {
    expect(typeof makeWASocket).toBe('function');
    expect(typeof BufferJSON.replacer).toBe('function');
    expect(typeof initAuthCreds).toBe('function');
    expect(DisconnectReason.loggedOut).toBe(401);
    expect(DisconnectReason.connectionReplaced).toBe(440);
    expect(typeof proto.Message.AppStateSyncKeyData.fromObject).toBe('function');
    expect(Browsers.ubuntu('X')[1]).toBe('X');
    expect(DEFAULT_WA_VERSION).toHaveLength(3);
  });

  test('first binary frame is the WA noise prologue, and a server close reports a status', async () => {
    const server = startWaServer('accept-then-close');
    servers.push(server);
    const sock = makeWASocket({
      waWebSocketUrl: server.url,
      auth: memoryAuth() as any,
      logger: silent as any,
      printQRInTerminal: false,
      version: DEFAULT_WA_VERSION, // explicit: nothing is fetched online
      markOnlineOnConnect: false,
      connectTimeoutMs: 5_000,
    });
    const { update, updates } = await waitForClose(sock, 8_000);

    expect(updates[0]?.connection).toBe('connecting');
    expect(server.requests).toHaveLength(1);
    expect(new URL(server.requests[0].url).pathname).toBe('/ws/chat');
    expect(server.frames.length).toBeGreaterThanOrEqual(1);
    const first = server.frames[0];
    expect(Array.from(first.subarray(0, 4))).toEqual([0x57, 0x41, 0x06, 0x03]);
    // After the 4-byte prologue: a 3-byte length, then the ClientHello protobuf.
    const len = (first[4] << 16) | (first[5] << 8) | first[6];
    expect(first.length).toBe(7 + len);
    const hello = proto.HandshakeMessage.decode(first.subarray(7));
    expect(hello.clientHello?.ephemeral?.length).toBe(32);

    const status = update.lastDisconnect?.error?.output?.statusCode;
    expect(typeof status).toBe('number');
    expect(status).toBe(DisconnectReason.connectionClosed); // 428
  });

  test('a rejected upgrade closes at once with a clear reason instead of a handshake timeout', async () => {
    const server = startWaServer('reject');
    servers.push(server);
    const started = performance.now();
    const sock = createBaileysSocket({
      auth: memoryAuth() as any,
      waWebSocketUrl: server.url,
      logger: silent as any,
    });
    const { update } = await waitForClose(sock as any, 10_000);
    const elapsed = performance.now() - started;

    expect(server.requests).toHaveLength(1);
    expect(update.lastDisconnect?.error?.message).toContain('HTTP 403');
    expect(update.lastDisconnect?.error?.output?.statusCode).toBe(DisconnectReason.connectionClosed);
    // Baileys' own handshake timeout is 20 s; the fix reports the rejection right away.
    expect(elapsed).toBeLessThan(3_000);
  });
});
