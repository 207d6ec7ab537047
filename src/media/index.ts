// Media both ways (issue 20). Inbound: before the agent call, the conversation actor asks
// prepare() to fetch each media item of the message (from the webhook's own bytes, the running
// adapter's fetchMedia, or a plain URL), store it content-addressed, transcribe voice, and describe
// it for the agent with a signed, expiring gateway URL (and the bytes, when the instance inlines
// them). Everything done is in the `media` table: a retry or a restart after a crash reuses it,
// nothing is downloaded or transcribed twice. Outbound: an agent reply's media is fetched (http(s)
// only, bounded, through the outbound policy) and stored before the reply commits, then sent from
// the store by the actor through the outbox.
import type { Database } from 'bun:sqlite';
import type { Logger } from 'pino';
import type { AgentMedia, ReplyMedia } from '../agents/types.ts';
import type { ChannelAdapter } from '../channels/types.ts';
import { ChannelError } from '../core/errors.ts';
import type { Instance } from '../core/instance.ts';
import type { InboundMedia, InboundMessage, MediaKind, OutboundMessage } from '../core/message.ts';
import { decodeBase64Bounded, MediaTooLarge, readBounded } from '../net/bounded-read.ts';
import { OutboundRefused } from '../net/outbound.ts';
import { DEFAULT_MEDIA, type MediaOptions } from '../services/instance-options.ts';
import { MediaSigner } from './signing.ts';
import { type MediaRow, MediaStore, type NewItem, refusal, sha256Hex, sniff } from './store.ts';
import { TranscriptionFailed, transcribe } from './transcribe.ts';

export type { AgentMedia, ReplyMedia as ReplyMediaInput } from '../agents/types.ts';
export { MediaSigner } from './signing.ts';
export { type MediaRow, MediaStore } from './store.ts';

/** A trace step of the message being processed (its unit of work queues it). */
export type MediaStep = (
  step: string,
  status: 'success' | 'error',
  details: Record<string, unknown>,
  durationMs?: number,
) => void;

export interface PreparedTurn {
  /** The message as access rules and the agent see it (a voice note's text is its transcript). */
  message: InboundMessage;
  media: AgentMedia[];
  /** The text is a transcript. */
  transcribed: boolean;
  /** A download failed in a way a later attempt may fix (never on the last try): why. */
  retry?: string;
}

/** A media item as trace views show it; `url` is a signed path on this gateway (null when not stored). */
export interface MediaView {
  id: string;
  direction: 'in' | 'out';
  status: string;
  type: MediaKind;
  mimeType: string | null;
  sizeBytes: number | null;
  filename: string | null;
  caption: string | null;
  transcript: string | null;
  error: string | null;
  url: string | null;
}

/** Bytes inlined for the agent up to this size per item (larger items go by URL only). */
export const INLINE_MAX_BYTES = 5 * 1024 * 1024;
export const MEDIA_FETCH_TIMEOUT_MS = 30_000;

export interface MediaServiceOptions {
  db: Database;
  /** Where the files (and the URL signing key) live. */
  dir: string;
  /** The outbound-policy fetch. */
  fetch: typeof fetch;
  log: Logger;
  now: () => number;
  /** Base of the URLs given to agents (PUBLIC_URL, else this process's own address). */
  baseUrl: string;
  /** CLUSTER_SECRET: every node signs URLs with the same key. */
  secret: string | null;
  fetchTimeoutMs?: number;
  transcriptionTimeoutMs?: number;
}

/** The instance's media options with the defaults filled in. */
export function mediaOptionsOf(inst: Instance): MediaOptions {
  const stored = inst.settings.media;
  return { ...DEFAULT_MEDIA, ...(stored && typeof stored === 'object' ? (stored as Partial<MediaOptions>) : {}) };
}

/** Inline the bytes for the agent: v2 media.inline, or the v1 flag webhook_base64. */
function inlines(inst: Instance): boolean {
  const v1 = inst.config.webhook_base64;
  return mediaOptionsOf(inst).inline || v1 === true || v1 === 'true' || v1 === 1 || v1 === '1';
}

const MEDIA_KINDS: readonly MediaKind[] = ['image', 'video', 'audio', 'document', 'sticker'];

export class MediaService {
  readonly store: MediaStore;
  readonly signer: MediaSigner;

  constructor(private o: MediaServiceOptions) {
    this.store = new MediaStore(o.db, o.dir);
    this.signer = new MediaSigner({ dir: o.dir, secret: o.secret }, o.now);
  }

  /** A signed URL for one stored item. */
  urlFor(id: string): string {
    return `${this.o.baseUrl.replace(/\/+$/, '')}${this.signer.sign(id)}`;
  }

  // ---- inbound ----

  /**
   * At ingest, before the inbox write: bytes the webhook carried (a parser's non-enumerable
   * `base64`) go to the media store now, and the message keeps only their hash (`staged`), so the
   * inbox row stays small and the bytes are durable before the webhook is answered. Never throws:
   * an item that cannot be staged keeps its other sources (`ref`).
   */
  stage(inst: Instance | null, msg: InboundMessage): void {
    const maxBytes = inst ? mediaOptionsOf(inst).maxBytes : DEFAULT_MEDIA.maxBytes;
    for (const item of msg.media ?? []) {
      const base64 = item.base64;
      if (typeof base64 !== 'string') continue;
      delete item.base64;
      try {
        item.staged = this.store.writeFile(decodeBase64Bounded(base64, maxBytes));
      } catch (err) {
        if (err instanceof MediaTooLarge) item.sizeBytes = Math.floor((base64.length * 3) / 4);
        else this.o.log.warn({ err: String(err) }, 'media: could not stage the bytes a webhook carried');
      }
    }
  }

  /**
   * Fetches, stores and transcribes the message's media (what is in the store already is reused)
   * and returns the turn as the agent sees it. Never throws for a bad item: too large, refused or
   * (on the last try) undownloadable items stay placeholders, each with a trace step.
   */
  async prepare(
    inst: Instance,
    traceId: string,
    msg: InboundMessage,
    opts: { adapter: ChannelAdapter | null; step: MediaStep; lastTry: boolean; signal?: AbortSignal },
  ): Promise<PreparedTurn> {
    const items = msg.media ?? [];
    const options = mediaOptionsOf(inst);
    const known = new Map(this.store.ofMessage(traceId, 'in').map((r) => [r.idx, r]));
    const rows: MediaRow[] = [];
    for (let idx = 0; idx < items.length; idx++) {
      let row = known.get(idx);
      if (!row) {
        const got = await this.fetchOne(inst, traceId, idx, items[idx]!, options.maxBytes, opts);
        if (typeof got === 'string') return { message: msg, media: [], transcribed: false, retry: got };
        row = got;
      }
      rows.push(row);
    }

    const transcripts: string[] = [];
    for (const row of rows) {
      if (row.status !== 'stored' || !isAudio(row)) continue;
      if (row.transcript_status === null && options.transcription) await this.transcribeOne(row, options, opts.step);
      const fresh = this.store.get(row.id) ?? row;
      Object.assign(row, fresh);
      if (row.transcript_status === 'done' && row.transcript) transcripts.push(row.transcript);
    }

    const inline = inlines(inst);
    const media: AgentMedia[] = [];
    for (const row of rows) {
      if (row.status !== 'stored') continue;
      const item: AgentMedia = {
        id: row.id,
        type: row.type,
        mimeType: row.mime_type ?? 'application/octet-stream',
        sizeBytes: row.size_bytes ?? 0,
        ...(row.filename ? { filename: row.filename } : {}),
        ...(row.caption ? { caption: row.caption } : {}),
        url: this.urlFor(row.id),
        ...(row.transcript_status === 'done' && row.transcript ? { transcript: row.transcript } : {}),
      };
      if (inline && (row.size_bytes ?? 0) <= INLINE_MAX_BYTES) {
        const bytes = await this.store.read(row);
        if (bytes) item.base64 = Buffer.from(bytes).toString('base64');
      }
      media.push(item);
    }
    const transcribed = transcripts.length > 0;
    const message = transcribed ? { ...msg, text: transcripts.join('\n') } : msg;
    return { message, media, transcribed };
  }

  /** The stored row, or (not the last try) why a retry may help. */
  private async fetchOne(
    inst: Instance,
    traceId: string,
    idx: number,
    item: InboundMedia,
    maxBytes: number,
    opts: { adapter: ChannelAdapter | null; step: MediaStep; lastTry: boolean; signal?: AbortSignal },
  ): Promise<MediaRow | string> {
    const rec: NewItem = {
      instanceId: inst.id,
      traceId,
      direction: 'in',
      idx,
      type: MEDIA_KINDS.includes(item.type) ? item.type : 'document',
      filename: item.filename,
      caption: item.caption,
      voiceNote: item.voiceNote,
    };
    const source = item.staged || item.base64 ? 'webhook' : item.ref ? 'channel' : item.url ? 'url' : null;
    const started = performance.now();
    const ms = () => Math.round(performance.now() - started);
    const reject = (why: string, size?: number, mime?: string) => {
      opts.step('media_fetched', 'error', { index: idx, source, rejected: why, placeholder: true }, ms());
      return this.store.recordUnstored(rec, 'rejected', why, size, mime);
    };
    if (item.sizeBytes !== undefined && item.sizeBytes > maxBytes)
      return reject(`declared size ${item.sizeBytes} bytes is over the limit of ${maxBytes}`, item.sizeBytes);
    if (!source) return reject('the channel gave no way to fetch it');

    let bytes: Uint8Array;
    let hintedMime: string | undefined;
    const signal = AbortSignal.any([
      AbortSignal.timeout(this.o.fetchTimeoutMs ?? MEDIA_FETCH_TIMEOUT_MS),
      ...(opts.signal ? [opts.signal] : []),
    ]);
    try {
      // Staged at ingest on this node (a cluster owner that did not receive the webhook has no file: the ref is used).
      const staged = item.staged ? await this.store.readFile(item.staged) : null;
      if (staged) {
        if (staged.byteLength > maxBytes) throw new MediaTooLarge(maxBytes);
        bytes = staged;
      } else if (item.base64) bytes = decodeBase64Bounded(item.base64, maxBytes);
      else if (item.ref) {
        const adapter = opts.adapter;
        if (!adapter?.fetchMedia) {
          if (adapter) return reject('this channel cannot fetch media');
          throw new ChannelError(`instance '${inst.name}' is not running (inactive or still starting)`, true);
        }
        const got = await adapter.fetchMedia(item, { maxBytes, signal });
        if (got.bytes.byteLength > maxBytes) throw new MediaTooLarge(maxBytes);
        bytes = got.bytes;
        hintedMime = got.mimeType;
      } else if (item.url) bytes = await this.download(item.url, maxBytes, signal);
      else return reject('the staged bytes are gone and the channel gave no other way to fetch them');
    } catch (err) {
      if (err instanceof MediaTooLarge) return reject(err.message);
      if (err instanceof OutboundRefused) return reject(`download refused: ${err.message}`);
      const timedOut = (err as Error)?.name === 'TimeoutError';
      const message = timedOut ? 'media download timed out' : ((err as Error)?.message ?? String(err));
      const permanent = err instanceof ChannelError && !err.retryable;
      if (!permanent && !opts.lastTry) {
        opts.step('media_fetched', 'error', { index: idx, source, error: message, will_retry: true }, ms());
        return message;
      }
      opts.step('media_fetched', 'error', { index: idx, source, error: message, placeholder: true }, ms());
      return this.store.recordUnstored(rec, 'failed', message);
    }
    const sniffed = await sniff(bytes);
    const refused = refusal(sniffed);
    if (refused) return reject(refused, bytes.byteLength, sniffed.mime);
    // The sniffed kind wins over the sender's word; unknown bytes keep the declared kind.
    if (sniffed.kind && !(sniffed.kind === 'image' && rec.type === 'sticker')) rec.type = sniffed.kind;
    const existed = await Bun.file(this.store.pathOf(sha256Hex(bytes))).exists();
    const row = await this.store.put(rec, bytes, sniffed);
    opts.step(
      'media_fetched',
      'success',
      {
        index: idx,
        source,
        media_id: row.id,
        type: row.type,
        mime_type: row.mime_type,
        declared_mime_type: item.mimeType ?? hintedMime ?? null,
        size_bytes: row.size_bytes,
        already_stored: existed,
      },
      ms(),
    );
    return row;
  }

  private async download(url: string, maxBytes: number, signal: AbortSignal): Promise<Uint8Array> {
    if (!/^https?:\/\//i.test(url)) throw new OutboundRefused('only http(s) URLs are fetched');
    let res: Response;
    try {
      res = await this.o.fetch(url, { signal });
    } catch (err) {
      if (err instanceof OutboundRefused) throw err;
      if ((err as Error)?.name === 'TimeoutError') throw err;
      throw new ChannelError(`media download failed: ${(err as Error)?.message ?? String(err)}`, true);
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => {});
      throw new ChannelError(
        `media download answered HTTP ${res.status}`,
        res.status >= 500 || res.status === 429 || res.status === 408,
      );
    }
    return readBounded(res, maxBytes);
  }

  private async transcribeOne(row: MediaRow, options: MediaOptions, step: MediaStep): Promise<void> {
    const started = performance.now();
    const ms = () => Math.round(performance.now() - started);
    const bytes = await this.store.read(row);
    try {
      if (!bytes) throw new TranscriptionFailed('the stored file is missing');
      const text = await transcribe(
        options.transcription!,
        { bytes, mimeType: row.mime_type ?? 'application/octet-stream' },
        { fetch: this.o.fetch, timeoutMs: this.o.transcriptionTimeoutMs },
      );
      if (!text) throw new TranscriptionFailed('the transcript is empty');
      this.store.setTranscript(row.id, text, 'done');
      step(
        'media_transcribed',
        'success',
        { media_id: row.id, model: options.transcription!.model, chars: text.length, preview: text.slice(0, 120) },
        ms(),
      );
    } catch (err) {
      const message =
        err instanceof TranscriptionFailed || err instanceof OutboundRefused
          ? err.message
          : `transcription failed: ${(err as Error)?.message ?? String(err)}`;
      // Recorded as tried: a transcription is never run twice for one item.
      this.store.setTranscript(row.id, null, 'failed');
      step(
        'media_transcribed',
        'error',
        { media_id: row.id, error: message, fallback: 'caption or placeholder' },
        ms(),
      );
    }
  }

  // ---- outbound (an agent's reply) ----

  /**
   * Fetches and stores the reply's media before the reply commits; an item that cannot be had is
   * left out with a trace step (the text still goes). Items stored before (an earlier attempt) are kept.
   */
  async storeReply(
    inst: Instance,
    traceId: string,
    items: ReplyMedia[],
    step: MediaStep,
    signal?: AbortSignal,
  ): Promise<void> {
    const maxBytes = mediaOptionsOf(inst).maxBytes;
    const known = new Set(this.store.ofMessage(traceId, 'out').map((r) => r.idx));
    for (let idx = 0; idx < items.length; idx++) {
      if (known.has(idx)) continue;
      const item = items[idx]!;
      const declared = MEDIA_KINDS.includes(item.type as MediaKind) ? (item.type as MediaKind) : null;
      const rec: NewItem = {
        instanceId: inst.id,
        traceId,
        direction: 'out',
        idx,
        type: declared ?? 'document',
        filename: item.filename,
        caption: item.caption,
        voiceNote: item.voiceNote,
      };
      const started = performance.now();
      const ms = () => Math.round(performance.now() - started);
      const fail = (why: string, status: 'rejected' | 'failed') => {
        step('reply_media_fetched', 'error', { index: idx, error: why, sent: false }, ms());
        this.store.recordUnstored(rec, status, why);
      };
      let bytes: Uint8Array;
      try {
        if (typeof item.base64 === 'string') bytes = decodeBase64Bounded(item.base64, maxBytes);
        else if (typeof item.url === 'string') {
          const signals = [AbortSignal.timeout(this.o.fetchTimeoutMs ?? MEDIA_FETCH_TIMEOUT_MS)];
          if (signal) signals.push(signal);
          bytes = await this.download(item.url, maxBytes, AbortSignal.any(signals));
        } else {
          fail('neither url nor base64', 'rejected');
          continue;
        }
      } catch (err) {
        const timedOut = (err as Error)?.name === 'TimeoutError';
        fail(timedOut ? 'media download timed out' : ((err as Error)?.message ?? String(err)), 'failed');
        continue;
      }
      const sniffed = await sniff(bytes);
      const refused = refusal(sniffed);
      if (refused) {
        fail(refused, 'rejected');
        continue;
      }
      if (sniffed.kind && sniffed.kind !== 'document') rec.type = sniffed.kind;
      else if (!declared) rec.type = 'document';
      // An OGG/Opus audio goes as a voice note unless the agent said otherwise.
      if (rec.type === 'audio' && item.voiceNote === undefined && sniffed.mime.startsWith('audio/ogg'))
        rec.voiceNote = true;
      const row = await this.store.put(rec, bytes, sniffed);
      step(
        'reply_media_fetched',
        'success',
        { index: idx, media_id: row.id, type: row.type, mime_type: row.mime_type, size_bytes: row.size_bytes },
        ms(),
      );
    }
  }

  /** The reply's stored media, as the channel adapters send it. */
  async replyMedia(traceId: string): Promise<Array<NonNullable<OutboundMessage['media']>>> {
    const out: Array<NonNullable<OutboundMessage['media']>> = [];
    for (const row of this.store.ofMessage(traceId, 'out')) {
      if (row.status !== 'stored') continue;
      const bytes = await this.store.read(row);
      if (!bytes) continue;
      out.push({
        base64: Buffer.from(bytes).toString('base64'),
        mediaType: row.type === 'sticker' ? 'image' : row.type,
        mimeType: row.mime_type ?? undefined,
        ...(row.caption ? { caption: row.caption } : {}),
        ...(row.filename ? { filename: row.filename } : {}),
        ...(row.voice_note ? { voiceNote: true } : {}),
      });
    }
    return out;
  }

  // ---- serving and retention ----

  /**
   * Adds `media` (each item with a signed URL path, its transcript, or why it was not stored) to
   * the trace views that have any (the console shows images, audio and transcripts from it).
   */
  withMedia<T extends { id: string }>(traces: T[]): Array<T & { media?: MediaView[] }> {
    const rows = this.store.ofMessages(traces.map((t) => t.id));
    if (rows.length === 0) return traces;
    const by = new Map<string, MediaView[]>();
    for (const r of rows) {
      let list = by.get(r.trace_id);
      if (!list) by.set(r.trace_id, (list = []));
      list.push({
        id: r.id,
        direction: r.direction,
        status: r.status,
        type: r.type,
        mimeType: r.mime_type,
        sizeBytes: r.size_bytes,
        filename: r.filename,
        caption: r.caption,
        transcript: r.transcript,
        error: r.error,
        url: r.status === 'stored' ? this.signer.sign(r.id) : null,
      });
    }
    return traces.map((t) => (by.has(t.id) ? { ...t, media: by.get(t.id) } : t));
  }

  /** GET /media/{id}: the item when the signature is good (403 otherwise, 404 when unknown or gone). */
  async open(
    id: string,
    exp: string | undefined,
    sig: string | undefined,
  ): Promise<{ status: 403 } | { status: 404 } | { status: 200; row: MediaRow; bytes: Uint8Array }> {
    if (!this.signer.verify(id, exp, sig)) return { status: 403 };
    const row = this.store.get(id);
    if (row?.status !== 'stored') return { status: 404 };
    const bytes = await this.store.read(row);
    return bytes ? { status: 200, row, bytes } : { status: 404 };
  }

  /** Deletes items older than the retention and files no item names. */
  prune(retentionDays: number): { items: number; files: number } {
    const cutoff = new Date(this.o.now() - retentionDays * 86_400_000).toISOString();
    return this.store.prune(cutoff);
  }
}

function isAudio(row: MediaRow): boolean {
  return row.type === 'audio' || (row.mime_type?.startsWith('audio/') ?? false);
}

/** Headers for serving an item: nothing that a browser could run is ever shown inline. */
export function mediaHeaders(row: MediaRow): Record<string, string> {
  const mime = row.mime_type ?? 'application/octet-stream';
  const safeInline = /^(image\/(png|jpeg|gif|webp|avif|bmp)|audio\/|video\/)/.test(mime);
  const name = (row.filename ?? `${row.type}-${row.id}`).replace(/[^\w.\- ]+/g, '_').slice(0, 100);
  return {
    'content-type': mime,
    'x-content-type-options': 'nosniff',
    'content-disposition': `${safeInline ? 'inline' : 'attachment'}; filename="${name}"`,
    'content-security-policy': "default-src 'none'; sandbox",
    'cache-control': 'private, max-age=3600',
  };
}
