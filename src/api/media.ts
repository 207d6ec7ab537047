// GET /media/{id}?exp=…&sig=…: a stored media item for whoever holds its signed URL (the agent it
// was given to). No API key: the signature is the credential, for this item and until `exp`.
// Nothing a browser could run is shown inline (src/media/index.ts mediaHeaders).
import { Elysia, t } from 'elysia';
import { Forbidden, NotFound } from '../core/errors.ts';
import { type MediaService, mediaHeaders } from '../media/index.ts';
import { ErrorSchema } from './errors.ts';

/** What the media route uses: the media store (signature check and bytes). */
export interface MediaRouteDeps {
  media: MediaService;
}

export function mediaRoutes(gw: MediaRouteDeps) {
  return new Elysia({ name: 'media' }).get(
    '/media/:id',
    async ({ params, query }) => {
      const got = await gw.media.open(params.id, query.exp, query.sig);
      if (got.status === 403) throw new Forbidden('The media URL is not valid (tampered or expired)');
      if (got.status === 404) throw new NotFound('No such media item');
      return new Response(got.bytes as Uint8Array<ArrayBuffer>, { headers: mediaHeaders(got.row) });
    },
    {
      params: t.Object({ id: t.String({ maxLength: 100 }) }),
      query: t.Object({
        exp: t.Optional(t.String({ maxLength: 20, description: 'Expiry, unix seconds' })),
        sig: t.Optional(t.String({ maxLength: 100, description: 'HMAC-SHA256 of id and exp' })),
      }),
      detail: {
        tags: ['media'],
        summary: 'A media item by its signed URL',
        description:
          'The bytes of a stored media item (inbound media given to an agent). The URL is signed for this item and expires; no API key. SVG, HTML and other types a browser could run are served as attachments with nosniff.',
        security: [],
      },
      response: {
        200: t.Any({ description: 'The bytes, with their sniffed Content-Type' }),
        403: { ...ErrorSchema, description: 'Signature missing, tampered or expired' },
        404: { ...ErrorSchema, description: 'No such item, or no longer stored' },
      },
    },
  );
}
