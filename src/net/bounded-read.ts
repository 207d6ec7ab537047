// Reading a response body with a byte limit: media downloads (inbound media, agents' reply media)
// must not let a remote server fill the memory or the disk. The declared Content-Length is checked
// first; a body without one (or lying about it) is counted as it streams and cut at the limit.

/** A body over the limit. Not worth retrying: the same item is as large next time. */
export class MediaTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`media is larger than ${limit} bytes`);
    this.name = 'MediaTooLarge';
  }
}

/** The whole body, or MediaTooLarge as soon as it passes `maxBytes`. */
export async function readBounded(res: Response, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get('content-length') ?? Number.NaN);
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw new MediaTooLarge(maxBytes);
  }
  if (!res.body) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel().catch(() => {});
      throw new MediaTooLarge(maxBytes);
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** Bytes of a base64 string, or MediaTooLarge when they would pass `maxBytes` (checked before decoding). */
export function decodeBase64Bounded(base64: string, maxBytes: number): Uint8Array {
  const body = base64.replace(/^data:[^,]*,/, '').replace(/\s+/g, '');
  if (Math.floor((body.length * 3) / 4) - 2 > maxBytes) throw new MediaTooLarge(maxBytes);
  const bytes = new Uint8Array(Buffer.from(body, 'base64'));
  if (bytes.byteLength > maxBytes) throw new MediaTooLarge(maxBytes);
  return bytes;
}
