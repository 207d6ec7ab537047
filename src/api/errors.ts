// The error envelope used by every route: {"error":{"code","message","details"}}, and what a
// domain error's code means in HTTP (one table; the server's error handler and the MCP endpoint
// render errors with it).
import { t } from 'elysia';
import { DomainError, type ErrorCode } from '../core/errors.ts';

export type { ErrorCode } from '../core/errors.ts';

/** An error raised by a route; like every DomainError it is rendered by the server's error handler. */
export class ApiError extends DomainError {}

export const notFound = (what: string) => new ApiError('NOT_FOUND', `${what} not found`);
export const invalid = (message: string, details?: unknown) => new ApiError('VALIDATION_ERROR', message, details);

/** The HTTP status of each error code. */
const HTTP_STATUS: Record<ErrorCode, number> = {
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  VALIDATION_ERROR: 400,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  RATE_LIMITED: 429,
  CHANNEL_ERROR: 502,
  UNAVAILABLE: 503,
  INTERNAL_ERROR: 500,
};

export function httpStatus(err: DomainError): number {
  return HTTP_STATUS[err.code];
}

/** A domain error as a finished response (status, envelope, Retry-After), for handlers outside Elysia's error hook. */
export function errorResponse(err: DomainError, headers: Record<string, string> = {}): Response {
  const h: Record<string, string> = { 'content-type': 'application/json', ...headers };
  if (err.retryAfterSeconds !== undefined) h['retry-after'] = String(err.retryAfterSeconds);
  return new Response(JSON.stringify(errorBody(err.code, err.message, err.details)), {
    status: httpStatus(err),
    headers: h,
  });
}

export function errorBody(code: ErrorCode | string, message: string, details?: unknown) {
  return { error: { code, message, details: details ?? null } };
}

/** OpenAPI schema of the envelope, referenced by every route's error responses. */
export const ErrorSchema = t.Object(
  {
    error: t.Object({
      code: t.String({ description: 'Stable error code, e.g. VALIDATION_ERROR' }),
      message: t.String({ description: 'Human-readable message' }),
      details: t.Any({ description: 'Structured details (offending fields, limits) or null' }),
    }),
  },
  { description: 'Error envelope' },
);

export const errorResponses = {
  400: ErrorSchema,
  401: ErrorSchema,
  403: ErrorSchema,
  404: ErrorSchema,
  429: ErrorSchema,
  500: ErrorSchema,
};
