// Sparse fieldsets (v2 design principle 5): a GET list or get route takes `fields=a,b,c` and
// answers only those fields of each item (`items[]`) or of the resource (`data`). The field names
// a route knows come from its own 200 response schema, so an unknown one is a 400 naming it even
// when the list is empty. The projection is answered as a finished Response, which response
// validation does not check again (the schema describes the full object).
import { Elysia } from 'elysia';
import { invalid } from './errors.ts';

interface Schema {
  type?: string;
  properties?: Record<string, Schema>;
  items?: Schema;
  anyOf?: Schema[];
}

/** The projectable part of a 200 answer: `data` (object or array of objects) or `items`. */
function projectableFields(response: unknown): Set<string> | null {
  const ok = (response as Record<number, Schema> | undefined)?.[200];
  const props = ok?.properties;
  if (!props) return null;
  const target = props.data ?? props.items;
  const objectOf = (s: Schema | undefined): Schema | undefined =>
    s?.type === 'array' ? objectOf(s.items) : (s?.anyOf?.find((m) => m.properties) ?? s);
  const fields = objectOf(target)?.properties;
  return fields ? new Set(Object.keys(fields)) : null;
}

function pick(value: unknown, fields: string[]): unknown {
  if (Array.isArray(value)) return value.map((v) => pick(v, fields));
  if (typeof value !== 'object' || value === null) return value;
  const src = value as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const f of fields) if (f in src) out[f] = src[f];
  return out;
}

type RouteLookup = (method: string, path: string) => unknown;

export function sparseFieldsets(responseSchemaOf: RouteLookup) {
  const requested = new WeakMap<Request, string[]>();
  const known = new Map<string, Set<string> | null>();
  const fieldsOf = (path: string) => {
    if (!known.has(path)) known.set(path, projectableFields(responseSchemaOf('GET', path)));
    return known.get(path)!;
  };
  return (
    new Elysia({ name: 'sparse-fieldsets' })
      // Before validation, like the browser's apiKey: `fields` is not a query parameter of any route.
      .onTransform({ as: 'global' }, ({ request, route, query }) => {
        const q = query as Record<string, unknown> | undefined;
        if (request.method !== 'GET' || !q || !('fields' in q) || !route.startsWith('/api/')) return;
        const raw = q.fields;
        delete q.fields;
        const names = String(Array.isArray(raw) ? raw.join(',') : raw)
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
        const allowed = fieldsOf(route);
        if (!allowed)
          throw invalid('fields: this route does not take a field list', [
            { field: 'fields', problem: 'not supported here' },
          ]);
        if (!names.length) throw invalid('fields: name at least one field', [{ field: 'fields', problem: 'is empty' }]);
        const unknown = names.filter((n) => !allowed.has(n));
        if (unknown.length)
          throw invalid(`fields: unknown field ${unknown.join(', ')} (known: ${[...allowed].join(', ')})`, [
            { field: 'fields', problem: `unknown field ${unknown.join(', ')}` },
          ]);
        requested.set(request, names);
      })
      .onAfterHandle({ as: 'global' }, ({ request, response, set }) => {
        const names = requested.get(request);
        if (!names || typeof response !== 'object' || response === null || response instanceof Response) return;
        const body = { ...(response as Record<string, unknown>) };
        if ('data' in body) body.data = pick(body.data, names);
        if (Array.isArray(body.items)) body.items = pick(body.items, names);
        return new Response(JSON.stringify(body), {
          status: typeof set.status === 'number' ? set.status : 200,
          headers: { ...(set.headers as Record<string, string>), 'content-type': 'application/json' },
        });
      })
  );
}
