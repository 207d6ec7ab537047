// Domain errors: what went wrong, in terms the caller can act on. Services and actors throw them;
// the server's error handler (src/server.ts) is the one place that turns them into HTTP answers
// (the envelope {"error":{code,message,details}}, a status per code, Retry-After).

/** Stable error codes, as the error envelope shows them. */
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

/**
 * When the same request may succeed again: seconds, or the header form `{ 'retry-after': '2' }`
 * that call sites written against the former ApiError still pass.
 */
export type RetryAfter = number | { 'retry-after': string };

/** An error with a stable code, a message for people and structured details (offending fields, limits). */
export class DomainError extends Error {
  /** Seconds until a retry may succeed (the Retry-After header); undefined when retrying soon is pointless. */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
    retryAfter?: RetryAfter,
  ) {
    super(message);
    this.name = new.target.name;
    this.retryAfterSeconds = typeof retryAfter === 'object' ? Number(retryAfter['retry-after']) : retryAfter;
  }
}

export class NotFound extends DomainError {
  constructor(message: string, details?: unknown, retryAfterSeconds?: number) {
    super('NOT_FOUND', message, details, retryAfterSeconds);
  }
}

export class Conflict extends DomainError {
  constructor(message: string, details?: unknown) {
    super('CONFLICT', message, details);
  }
}

/** The input breaks a rule; `details` names the offending fields. */
export class Validation extends DomainError {
  constructor(message: string, details?: unknown) {
    super('VALIDATION_ERROR', message, details);
  }
}

export class Unauthorized extends DomainError {
  constructor(message: string, details?: unknown) {
    super('UNAUTHORIZED', message, details);
  }
}

export class Forbidden extends DomainError {
  constructor(message: string, details?: unknown) {
    super('FORBIDDEN', message, details);
  }
}

/** The caller (key, conversation) sends faster than allowed. */
export class RateLimited extends DomainError {
  constructor(message: string, details: unknown, retryAfterSeconds: number) {
    super('RATE_LIMITED', message, details, retryAfterSeconds);
  }
}

/** Something this request needs (a node, the cluster store, a running instance) is not there now. */
export class Unavailable extends DomainError {
  constructor(message: string, details?: unknown, retryAfterSeconds?: number) {
    super('UNAVAILABLE', message, details, retryAfterSeconds);
  }
}

/** Ingress refused because the global backlog bound is reached (503 + Retry-After). */
export class Overloaded extends Unavailable {
  constructor(retryAfterSeconds: number) {
    super('Gateway overloaded: too many messages waiting; retry later', { retryAfterSeconds }, retryAfterSeconds);
  }
}

/** A channel operation the caller asked for failed on the platform's side (502), e.g. provisioning. */
export class ChannelFailure extends DomainError {
  constructor(message: string, details?: unknown) {
    super('CHANNEL_ERROR', message, details);
  }
}

/**
 * A call to a channel (send, edit, connect) failed. `retryable` false for permanent errors (4xx
 * other than 429); `status` is the platform's HTTP status when there was one. Not a DomainError on
 * purpose: a service decides what the failure means for its caller (see ChannelFailure).
 */
export class ChannelError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    readonly retryAfterMs?: number,
    readonly status?: number,
  ) {
    super(message);
    this.name = 'ChannelError';
  }
}
