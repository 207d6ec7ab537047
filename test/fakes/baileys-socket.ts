// A stand-in for a Baileys socket: the same event names on `ev`, and every call the adapter
// makes recorded in order. Real WhatsApp cannot be faked below this (Baileys checks
// WhatsApp's certificate), so tests drive the adapter from here.
import { EventEmitter } from 'node:events';
import type {
  SocketFactory,
  SocketFactoryOptions,
  WAMessageKeyLike,
  WASocketLike,
} from '../../src/channels/whatsapp/socket.ts';

export type FakeCall =
  | { kind: 'sendMessage'; jid: string; content: Record<string, unknown>; opts?: Record<string, unknown> }
  | { kind: 'presence'; type: string; jid?: string }
  | { kind: 'read'; keys: WAMessageKeyLike[] }
  | { kind: 'pairing'; phone: string }
  | { kind: 'logout' }
  | { kind: 'downloadMedia'; id: string }
  | { kind: 'end'; error: Error | undefined };

export class FakeBaileysSocket implements WASocketLike {
  readonly ev = new EventEmitter();
  readonly calls: FakeCall[];
  user: { id: string; lid?: string; name?: string } | null = null;
  ended = false;
  /** Make the next sendMessage calls fail with this error (once each). */
  sendErrors: Error[] = [];
  /** Numbers (JIDs) reported as not on WhatsApp by onWhatsApp. */
  notOnWhatsApp = new Set<string>();
  pairingCode = 'ABCD1234';
  /** Media served by downloadMedia, by message id (the decrypted bytes, as Baileys would give them). */
  media = new Map<string, Uint8Array>();
  /** Make the next downloadMedia calls fail with this error (once each). */
  downloadErrors: Error[] = [];
  private seq = 0;

  constructor(
    readonly options: SocketFactoryOptions,
    calls: FakeCall[] = [],
  ) {
    this.calls = calls;
  }

  // ---- what the adapter calls -----------------------------------------------------------
  async sendMessage(jid: string, content: Record<string, unknown>, opts?: Record<string, unknown>) {
    this.calls.push({ kind: 'sendMessage', jid, content, opts });
    const err = this.sendErrors.shift();
    if (err) throw err;
    const id = typeof opts?.messageId === 'string' ? opts.messageId : `FAKE${++this.seq}`;
    return { key: { remoteJid: jid, id, fromMe: true } };
  }
  async sendPresenceUpdate(type: 'composing' | 'paused' | 'available' | 'unavailable' | 'recording', jid?: string) {
    this.calls.push({ kind: 'presence', type, jid });
  }
  async readMessages(keys: WAMessageKeyLike[]) {
    this.calls.push({ kind: 'read', keys });
  }
  async requestPairingCode(phone: string) {
    this.calls.push({ kind: 'pairing', phone });
    return this.pairingCode;
  }
  async logout() {
    this.calls.push({ kind: 'logout' });
    this.emitClose(401, 'Intentional Logout');
  }
  end(error: Error | undefined) {
    if (this.ended) return;
    this.ended = true;
    this.calls.push({ kind: 'end', error });
    this.emitClose(428, error?.message ?? 'Connection Closed');
  }
  async downloadMedia(message: { key: unknown; message: unknown }) {
    const id = String((message.key as { id?: string } | null)?.id ?? '');
    this.calls.push({ kind: 'downloadMedia', id });
    const err = this.downloadErrors.shift();
    if (err) throw err;
    const bytes = this.media.get(id);
    if (!bytes) throw Object.assign(new Error('media not found'), { output: { statusCode: 404 } });
    return bytes;
  }
  async onWhatsApp(...jids: string[]) {
    return jids.map((jid) => ({ jid, exists: !this.notOnWhatsApp.has(jid) }));
  }

  // ---- helpers for tests ----------------------------------------------------------------
  emitQr(qr: string) {
    this.ev.emit('connection.update', { qr });
  }
  emitOpen(user = { id: '5511999990000:7@s.whatsapp.net', lid: '100000000000009:7@lid', name: 'Bot' }) {
    this.user = user;
    this.ev.emit('connection.update', { connection: 'open' });
  }
  /** A close as Baileys reports it: a Boom-shaped error with output.statusCode. */
  emitClose(statusCode: number, message = 'Connection Failure') {
    const error = Object.assign(new Error(message), { output: { statusCode } });
    this.ev.emit('connection.update', { connection: 'close', lastDisconnect: { error, date: new Date() } });
  }
  emitMessages(messages: unknown[], type: 'notify' | 'append' = 'notify') {
    this.ev.emit('messages.upsert', { messages, type });
  }
  emitCreds(update: Record<string, unknown>) {
    this.ev.emit('creds.update', update);
  }
  emit(event: string, arg: unknown) {
    this.ev.emit(event, arg);
  }
  sent() {
    return this.calls.filter((c): c is Extract<FakeCall, { kind: 'sendMessage' }> => c.kind === 'sendMessage');
  }
}

/** A factory that records every socket it made (one per connection attempt). */
export function fakeSocketFactory(): {
  factory: SocketFactory;
  sockets: FakeBaileysSocket[];
  calls: FakeCall[];
  last(): FakeBaileysSocket;
} {
  const sockets: FakeBaileysSocket[] = [];
  const calls: FakeCall[] = [];
  return {
    sockets,
    calls,
    factory: (opts) => {
      const s = new FakeBaileysSocket(opts, calls);
      sockets.push(s);
      return s;
    },
    last() {
      const s = sockets.at(-1);
      if (!s) throw new Error('no socket was created');
      return s;
    },
  };
}
