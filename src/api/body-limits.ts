// Request-body bounds checked before a route sees the body: the byte limit for bodies sent without
// Content-Length (chunked), and the nesting depth of JSON (deep nesting overflowed the stack in
// validation: a 500 instead of a 400).

/** Deepest JSON nesting accepted (objects and arrays); real payloads stay far below it. */
export const MAX_JSON_DEPTH = 64;

/**
 * True when a body streamed without Content-Length is longer than `limit` bytes. Reads a clone (so
 * the route's own parser still gets the body) and stops reading as soon as the limit is passed.
 */
export async function streamedBodyExceeds(request: Request, limit: number): Promise<boolean> {
  const body = request.clone().body;
  if (!body) return false;
  const reader = body.getReader();
  let total = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      total += value.byteLength;
      if (total > limit) return true;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** True when a parsed value nests objects/arrays deeper than `max`. Iterative: it never recurses. */
export function nestedDeeperThan(value: unknown, max = MAX_JSON_DEPTH): boolean {
  if (value === null || typeof value !== 'object') return false;
  const stack: Array<[object, number]> = [[value, 1]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (depth > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v))
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1]);
  }
  return false;
}
