// The error envelope used by every route: {"error":{"code","message","details"}}.
import { t } from 'elysia';

export type ErrorCode =
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'VALIDATION_ERROR'
  | 'CONFLICT'
  | 'PAYLOAD_TOO_LARGE'
  | 'RATE_LIMITED'
  | 'CHANNEL_ERROR'
  | 'UNAVAILABLE'
  | 'INTERNAL_ERROR';

const STATUS: Record<ErrorCode, number> = {
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

/** Thrown anywhere (services, routes); rendered by the server's onError. */
export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = STATUS[code];
  }
}

export const notFound = (what: string) => new ApiError('NOT_FOUND', `${what} not found`);
export const invalid = (message: string, details?: unknown) => new ApiError('VALIDATION_ERROR', message, details);

export function errorBody(code: ErrorCode | string, message: string, details?: unknown) {
  return { error: { code, message, details: details ?? null } };
}

export function errorResponse(
  status: number,
  code: ErrorCode | string,
  message: string,
  details?: unknown,
  headers?: Record<string, string>,
): Response {
  return new Response(JSON.stringify(errorBody(code, message, details)), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
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
