// Speech to text through an OpenAI-compatible endpoint: POST {url}/audio/transcriptions, multipart
// (file, model, optional language), the key as a Bearer token, answer {"text": "..."}. `url` is the
// API base (e.g. https://api.openai.com/v1). Through the outbound policy, with a timeout.
import type { MediaOptions } from '../services/instance-options.ts';

export const TRANSCRIPTION_TIMEOUT_MS = 60_000;

const EXT: Record<string, string> = {
  'audio/ogg': 'ogg',
  'audio/mpeg': 'mp3',
  'audio/mp4': 'm4a',
  'audio/x-m4a': 'm4a',
  'audio/wav': 'wav',
  'audio/x-wav': 'wav',
  'audio/webm': 'webm',
  'audio/aac': 'aac',
  'audio/flac': 'flac',
  'audio/amr': 'amr',
  'video/mp4': 'mp4',
  'video/webm': 'webm',
};

export class TranscriptionFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TranscriptionFailed';
  }
}

export async function transcribe(
  cfg: NonNullable<MediaOptions['transcription']>,
  audio: { bytes: Uint8Array; mimeType: string },
  opts: { fetch: typeof fetch; timeoutMs?: number },
): Promise<string> {
  const form = new FormData();
  const ext = EXT[audio.mimeType.split(';')[0]!.trim()] ?? 'bin';
  form.append('file', new Blob([audio.bytes as Uint8Array<ArrayBuffer>], { type: audio.mimeType }), `audio.${ext}`);
  form.append('model', cfg.model);
  if (cfg.language) form.append('language', cfg.language);
  const headers: Record<string, string> = { accept: 'application/json' };
  if (cfg.apiKey) headers.authorization = `Bearer ${cfg.apiKey}`;
  let res: Response;
  try {
    res = await opts.fetch(`${cfg.url}/audio/transcriptions`, {
      method: 'POST',
      headers,
      body: form,
      signal: AbortSignal.timeout(opts.timeoutMs ?? TRANSCRIPTION_TIMEOUT_MS),
    });
  } catch (err) {
    const name = (err as Error)?.name;
    throw new TranscriptionFailed(
      name === 'TimeoutError'
        ? 'transcription timed out'
        : `transcription service unreachable: ${(err as Error).message}`,
    );
  }
  // The answer's body is not quoted: traces are read through the API.
  if (!res.ok) {
    await res.body?.cancel().catch(() => {});
    throw new TranscriptionFailed(`transcription service answered HTTP ${res.status}`);
  }
  let body: unknown;
  try {
    body = await res.json();
  } catch {
    throw new TranscriptionFailed('transcription service answered something that is not JSON');
  }
  const text = (body as { text?: unknown })?.text;
  if (typeof text !== 'string') throw new TranscriptionFailed('transcription answer has no text');
  return text.trim();
}
