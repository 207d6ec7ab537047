// The media store, signed URLs and retention, without a channel: content-addressed files (one per
// content), the type sniffed from the bytes, GET /media/{id} only with a good signature for that
// very item and before its expiry, nothing a browser could run served inline, retention removing
// old items and the files no item names.
import { afterEach, describe, expect, test } from 'bun:test';
import { existsSync, readdirSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { createTestGateway } from '../helpers.ts';
import { elf, oggOpus, png } from './fixtures.ts';

let t: ReturnType<typeof createTestGateway> | null = null;
afterEach(async () => {
  await t?.close();
  t = null;
});

async function setup() {
  t = createTestGateway();
  const res = await t.call('POST', '/api/v2/instances', {
    name: 'media-box',
    channel: 'webchat',
    agent: { type: 'echo' },
  });
  expect(res.status).toBe(201);
  return { t, instanceId: res.body.data.id as string };
}

function filesIn(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) => readdirSync(join(dir, d.name)));
}

async function put(instanceId: string, traceId: string, idx: number, bytes: Uint8Array, filename?: string) {
  const { sniff } = await import('../../src/media/store.ts');
  return t!.gw.media.store.put(
    { instanceId, traceId, direction: 'in', idx, type: 'document', filename },
    bytes,
    await sniff(bytes),
  );
}

async function get(path: string) {
  const res = await t!.app.handle(new Request(`http://localhost${path}`));
  return { status: res.status, headers: res.headers, bytes: new Uint8Array(await res.arrayBuffer()) };
}

describe('media store', () => {
  test('the type comes from the bytes; the same content is one file for any number of items', async () => {
    const { instanceId } = await setup();
    const a = await put(instanceId, 'trace-a', 0, png(7));
    const b = await put(instanceId, 'trace-b', 0, png(7));
    const voice = await put(instanceId, 'trace-b', 1, oggOpus());
    expect(a.mime_type).toBe('image/png');
    expect(voice.mime_type).toStartWith('audio/ogg');
    expect(a.sha256).toBe(b.sha256!);
    expect(a.id).not.toBe(b.id);
    expect(filesIn(t!.gw.config.mediaDir).sort()).toEqual([a.sha256!, voice.sha256!].sort());
    // A second put for the same (message, idx) keeps the first row.
    const again = await put(instanceId, 'trace-a', 0, png(8));
    expect(again.id).toBe(a.id);
  });
});

describe('signed URLs: GET /media/{id}', () => {
  test('a good signature reads the item, with its sniffed type, nosniff and inline for an image', async () => {
    const { instanceId } = await setup();
    const row = await put(instanceId, 'trace-1', 0, png(1));
    const url = new URL(t!.gw.media.urlFor(row.id));
    const res = await get(url.pathname + url.search);
    expect(res.status).toBe(200);
    expect([...res.bytes]).toEqual([...png(1)]);
    expect(res.headers.get('content-type')).toBe('image/png');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    expect(res.headers.get('content-disposition')).toStartWith('inline');
  });

  test('tampered, missing, expired, or another item’s signature → 403; unknown item → 404', async () => {
    const { instanceId } = await setup();
    const one = await put(instanceId, 'trace-1', 0, png(1));
    const two = await put(instanceId, 'trace-2', 0, png(2));
    const signed = new URL(t!.gw.media.urlFor(one.id));
    const exp = signed.searchParams.get('exp')!;
    const sig = signed.searchParams.get('sig')!;

    const tampered = `${sig.slice(0, -2)}${sig.endsWith('AA') ? 'BB' : 'AA'}`;
    for (const path of [
      `/media/${one.id}?exp=${exp}&sig=${tampered}`,
      `/media/${one.id}`,
      `/media/${one.id}?exp=${Number(exp) + 60}&sig=${sig}`, // a later expiry is not what was signed
      `/media/${two.id}?exp=${exp}&sig=${sig}`, // the signature of another item
    ]) {
      const res = await get(path);
      expect(res.status).toBe(403);
      const body = JSON.parse(new TextDecoder().decode(res.bytes));
      expect(body.error.code).toBe('FORBIDDEN');
    }
    const expired = t!.gw.media.signer.sign(one.id, -1);
    expect((await get(expired)).status).toBe(403);
    const unknown = t!.gw.media.signer.sign('no-such-item');
    expect((await get(unknown)).status).toBe(404);
  });

  test('SVG, HTML and unknown bytes are never inline: octet-stream, attachment, nosniff', async () => {
    const { instanceId } = await setup();
    const svg = new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>');
    const html = new TextEncoder().encode('<!doctype html><script>alert(1)</script>');
    for (const [i, bytes] of [svg, html].entries()) {
      const row = await put(instanceId, `trace-x${i}`, 0, bytes, i === 0 ? 'x.svg' : 'x.html');
      expect(row.mime_type).toBe('application/octet-stream');
      const res = await get(t!.gw.media.signer.sign(row.id));
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/octet-stream');
      expect(res.headers.get('content-disposition')).toStartWith('attachment');
      expect(res.headers.get('x-content-type-options')).toBe('nosniff');
      expect(res.headers.get('content-security-policy')).toContain('sandbox');
    }
  });

  test('executables are refused by the store', async () => {
    const { refusal, sniff } = await import('../../src/media/store.ts');
    expect(refusal(await sniff(elf()))).toContain('not accepted');
    expect(refusal(await sniff(png()))).toBeNull();
  });
});

describe('retention', () => {
  test('old items go, and so do their files once no item names them; a young unnamed (staged) file stays', async () => {
    const { instanceId } = await setup();
    const old = await put(instanceId, 'trace-old', 0, png(1));
    const shared = await put(instanceId, 'trace-old', 1, png(2));
    const keep = await put(instanceId, 'trace-new', 0, png(2)); // same content as `shared`
    const staged = t!.gw.media.store.writeFile(png(3)); // staged at ingest, no item yet
    const long = new Date(Date.now() - 40 * 86_400_000);
    t!.gw.db.query("UPDATE media SET created_at = ? WHERE trace_id = 'trace-old'").run(long.toISOString());
    utimesSync(t!.gw.media.store.pathOf(old.sha256!), long, long);
    utimesSync(t!.gw.media.store.pathOf(shared.sha256!), long, long);

    const pruned = t!.gw.media.prune(30);
    expect(pruned).toEqual({ items: 2, files: 1 });
    expect(existsSync(t!.gw.media.store.pathOf(old.sha256!))).toBe(false);
    expect(existsSync(t!.gw.media.store.pathOf(keep.sha256!))).toBe(true);
    expect(existsSync(t!.gw.media.store.pathOf(staged))).toBe(true);
    expect(t!.gw.media.store.get(old.id)).toBeNull();
    expect(t!.gw.media.store.get(keep.id)).not.toBeNull();
    // Its URL now answers 404.
    expect((await get(t!.gw.media.signer.sign(old.id))).status).toBe(404);
  });
});
