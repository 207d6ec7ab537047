// The slice of a Baileys socket the adapter uses, and the default factory that builds the real
// one. Tests pass a stand-in with the same event names (test/fakes/baileys-socket.ts).
import makeWASocket, {
  type AuthenticationState,
  Browsers,
  DEFAULT_CONNECTION_CONFIG,
  DisconnectReason,
  downloadMediaMessage,
  makeCacheableSignalKeyStore,
  type WAMessage,
  type WAVersion,
} from '@whiskeysockets/baileys';
import type { Logger } from 'pino';

export type Listener = (arg: any) => void;

export interface WAMessageKeyLike {
  remoteJid?: string | null;
  id?: string | null;
  fromMe?: boolean | null;
  participant?: string | null;
}

export interface WASocketLike {
  ev: {
    on(event: string, listener: Listener): unknown;
    off(event: string, listener: Listener): unknown;
  };
  user?: { id: string; lid?: string; name?: string } | null | undefined;
  sendMessage(
    jid: string,
    content: Record<string, unknown>,
    opts?: Record<string, unknown>,
  ): Promise<{ key?: WAMessageKeyLike } | undefined>;
  sendPresenceUpdate(
    type: 'composing' | 'paused' | 'available' | 'unavailable' | 'recording',
    jid?: string,
  ): Promise<void>;
  readMessages(keys: WAMessageKeyLike[]): Promise<void>;
  requestPairingCode(phoneNumber: string): Promise<string>;
  logout(msg?: string): Promise<void>;
  end(error: Error | undefined): void;
  /** Checks numbers before a first contact (optional in stand-ins). */
  onWhatsApp?(...jids: string[]): Promise<Array<{ jid: string; exists: boolean }> | undefined>;
  /** Downloads and decrypts a received message's media (the real socket: Baileys' downloadMediaMessage). */
  downloadMedia?(message: { key: unknown; message: unknown }): Promise<Uint8Array>;
}

export interface SocketFactoryOptions {
  auth: AuthenticationState;
  /** ws:// or wss:// endpoint; undefined = WhatsApp's own. */
  waWebSocketUrl?: string;
  logger: Logger;
  /** WhatsApp Web version to announce; undefined = the one this Baileys release ships with. */
  version?: WAVersion;
}

export type SocketFactory = (opts: SocketFactoryOptions) => WASocketLike;

/** The version Baileys ships with, passed explicitly so Baileys never fetches one online. */
export const DEFAULT_WA_VERSION: WAVersion = DEFAULT_CONNECTION_CONFIG.version;

/** An HTTP answer other than 101 to the WebSocket upgrade (proxy, wrong endpoint, block). */
export class UpgradeRejectedError extends Error {
  // Boom-compatible shape: the adapter and Baileys read output.statusCode.
  readonly output: { statusCode: number };
  constructor(readonly httpStatus: number | undefined) {
    super(`WebSocket upgrade rejected by the server (HTTP ${httpStatus ?? 'unknown'})`);
    this.name = 'UpgradeRejectedError';
    this.output = { statusCode: DisconnectReason.connectionClosed };
  }
}

export const createBaileysSocket: SocketFactory = (opts) => {
  const sock = makeWASocket({
    auth: { creds: opts.auth.creds, keys: makeCacheableSignalKeyStore(opts.auth.keys, opts.logger as any) },
    ...(opts.waWebSocketUrl ? { waWebSocketUrl: opts.waWebSocketUrl } : {}),
    logger: opts.logger as any,
    version: opts.version ?? DEFAULT_WA_VERSION,
    browser: Browsers.ubuntu('Switchboard'),
    printQRInTerminal: false,
    // Keep the phone receiving notifications; the gateway is not a human reading chats.
    markOnlineOnConnect: false,
    syncFullHistory: false,
    // No link-preview fetching: send() also passes linkPreview: null on every text.
    generateHighQualityLinkPreview: false,
    getMessage: async () => undefined,
  });
  // Baileys listens to ws's 'unexpected-response' (re-emitting it) but never acts on it, and a
  // listener there stops `ws` from failing the handshake itself. So a rejected upgrade (HTTP
  // 4xx/5xx instead of 101) would wait for the 20 s handshake timeout (408) — under Node and
  // under Bun's `ws` alike. End the socket at once with a clear reason instead.
  const client = (sock as unknown as { ws?: { on?(e: string, l: (...a: any[]) => void): unknown } }).ws;
  client?.on?.('unexpected-response', (_req: unknown, res: { statusCode?: number } | undefined) => {
    void sock.end(new UpgradeRejectedError(res?.statusCode) as any);
  });
  const like = sock as unknown as WASocketLike;
  // From WhatsApp's media servers (Baileys' own HTTP client, not the outbound policy: the host is
  // WhatsApp's CDN, never a user's URL). An expired link is re-requested from the phone.
  like.downloadMedia = async (message) =>
    downloadMediaMessage(
      message as WAMessage,
      'buffer',
      {},
      { logger: opts.logger as any, reuploadRequest: (m) => sock.updateMediaMessage(m) },
    );
  return like;
};
