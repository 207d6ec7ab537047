// Authentication and scope checks for /api/*: x-api-key (or ?apiKey= for browsers).
import type { KeyService, Principal } from '../services/keys.ts';
import { hasScope } from '../services/keys.ts';
import { ApiError } from './errors.ts';
import { needsUnrestrictedKey, scopeFor } from './scopes.ts';

export function presentedKey(request: Request, query?: Record<string, unknown>): string | null {
  const h = request.headers.get('x-api-key');
  if (h) return h;
  const q = query?.apiKey;
  return typeof q === 'string' ? q : null;
}

/** Resolves the caller and checks the route's scope; throws UNAUTHORIZED / FORBIDDEN. */
export function authorize(
  keys: KeyService,
  request: Request,
  route: string,
  query?: Record<string, unknown>,
): Principal {
  const key = presentedKey(request, query);
  if (!key) throw new ApiError('UNAUTHORIZED', 'Missing API key: send it in the x-api-key header');
  const principal = keys.verify(key);
  if (!principal) throw new ApiError('UNAUTHORIZED', 'Invalid, expired or revoked API key');
  const scope = scopeFor(request.method, route);
  if (!scope) throw new ApiError('FORBIDDEN', `Route ${request.method} ${route} declares no scope`);
  if (!hasScope(principal, scope)) {
    throw new ApiError('FORBIDDEN', `This key lacks the '${scope}' scope`, {
      required: scope,
      scopes: principal.scopes,
    });
  }
  if (principal.instanceIds !== null && needsUnrestrictedKey(request.method, route)) {
    throw new ApiError(
      'FORBIDDEN',
      'This route changes or shows state shared by all instances; keys restricted to instances cannot use it',
    );
  }
  return principal;
}
