// Serves the Swagger UI assets from the swagger-ui-dist package, so /docs works offline.

import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Elysia } from 'elysia';

const require = createRequire(import.meta.url);
const DIST = dirname(require.resolve('swagger-ui-dist/package.json'));
const FILES: Record<string, string> = {
  'swagger-ui-bundle.js': 'application/javascript; charset=utf-8',
  'swagger-ui.css': 'text/css; charset=utf-8',
};

export function docsAssets() {
  return new Elysia({ name: 'docs-assets' }).get(
    '/docs/assets/:file',
    ({ params, set }) => {
      const type = FILES[params.file];
      if (!type) {
        set.status = 404;
        return { error: { code: 'NOT_FOUND', message: 'No such asset', details: null } };
      }
      return new Response(Bun.file(join(DIST, params.file)), {
        headers: { 'content-type': type, 'cache-control': 'public, max-age=86400' },
      });
    },
    { detail: { hide: true } },
  );
}
