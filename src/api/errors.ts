// The error envelope used by every route: {"error":{"code","message","details"}}. What a
// domain error's code means in HTTP is decided in one place, the error handler of src/server.ts.
import { t } from 'elysia';
import { DomainError, type ErrorCode } from '../core/errors.ts';

export type { ErrorCode } from '../core/errors.ts';

/** An error raised by a route; like every DomainError it is rendered by the server's error handler. */
export class ApiError extends DomainError {}

export const notFound = (what: string) => new ApiError('NOT_FOUND', `${what} not found`);
export const invalid = (message: string, details?: unknown) => new ApiError('VALIDATION_ERROR', message, details);

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
