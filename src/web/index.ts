// The web console: one HTML page, one script, one stylesheet, served by the gateway itself.
//
// The script is bundled from src/web/client/ with Bun.build once, on the first request, and kept
// in memory. A failed build must not take the API down: the server still starts and the console
// routes answer 500 with the build error so an operator sees why.
//
// The routes carry `detail.hide` (not API surface, kept out of OpenAPI) and sit outside /api, so
// the auth hook does not ask for a key; the page asks the user for one and the API checks it.

import { dirname, join } from 'node:path';
import { Elysia } from 'elysia';
import type { Logger } from 'pino';

export interface WebConsoleOptions {
  /** Client entry point (tests point it at a broken file to check the failure page). */
  entry?: string;
}

interface Built {
  js: string;
  css: string;
}

const CLIENT_DIR = join(import.meta.dir, 'client');

// Everything is same-origin: no fonts, CDNs or trackers can load even by accident. QR images
// arrive as data: URLs; the live feed is a same-origin WebSocket.
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self'; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Switchboard console</title>
<link rel="stylesheet" href="/app.css">
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<div id="app"><p class="boot">Loading the console…</p></div>
<noscript><p>The Switchboard console needs JavaScript.</p></noscript>
<script src="/app.js" defer></script>
</body>
</html>
`;

async function buildClient(entry: string): Promise<Built> {
  let result: Awaited<ReturnType<typeof Bun.build>>;
  try {
    result = await Bun.build({
      entrypoints: [entry],
      target: 'browser',
      format: 'iife',
      minify: true,
      sourcemap: 'none',
    });
  } catch (err) {
    // Bun.build throws an AggregateError of build messages on failure.
    const errors = (err as { errors?: unknown[] }).errors;
    throw new Error(errors?.length ? errors.map(String).join('\n') : String(err));
  }
  if (!result.success) throw new Error(result.logs.map(String).join('\n') || 'build failed');
  const js = result.outputs.find((o) => o.kind === 'entry-point');
  if (!js) throw new Error('build produced no script');
  // uPlot's stylesheet (the overview's charts), then the console's own.
  const uplotCss = join(dirname(Bun.resolveSync('uplot', CLIENT_DIR)), 'uPlot.min.css');
  const sheets = [uplotCss, join(CLIENT_DIR, 'app.css'), join(CLIENT_DIR, 'overview.css')];
  const css = (await Promise.all(sheets.map((f) => Bun.file(f).text()))).join('\n');
  return { js: await js.text(), css };
}

function failurePage(message: string): Response {
  const escaped = message.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Console unavailable</title></head><body><h1>The web console could not be built</h1><p>The API is unaffected. Build error:</p><pre>${escaped}</pre></body></html>`;
  return new Response(body, {
    status: 500,
    headers: { 'content-type': 'text/html; charset=utf-8', 'content-security-policy': CSP },
  });
}

export function webConsole(gw: { log: Logger }, opts: WebConsoleOptions = {}) {
  const entry = opts.entry ?? join(CLIENT_DIR, 'app.ts');
  let building: Promise<Built> | null = null;
  const built = async (): Promise<Built | Error> => {
    building ??= buildClient(entry).catch((err: Error) => {
      gw.log.error({ err: err.message, entry }, 'web console build failed');
      throw err;
    });
    try {
      return await building;
    } catch (err) {
      return err as Error;
    }
  };
  const hide = { detail: { hide: true } };
  const headers = (type: string) => ({
    'content-type': type,
    'cache-control': 'no-cache',
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
  });

  return new Elysia({ name: 'web-console' })
    .get(
      '/',
      async () => {
        const b = await built();
        if (b instanceof Error) return failurePage(b.message);
        return new Response(HTML, { headers: headers('text/html; charset=utf-8') });
      },
      hide,
    )
    .get(
      '/app.js',
      async () => {
        const b = await built();
        if (b instanceof Error) return failurePage(b.message);
        return new Response(b.js, { headers: headers('text/javascript; charset=utf-8') });
      },
      hide,
    )
    .get(
      '/app.css',
      async () => {
        const b = await built();
        if (b instanceof Error) return failurePage(b.message);
        return new Response(b.css, { headers: headers('text/css; charset=utf-8') });
      },
      hide,
    );
}
