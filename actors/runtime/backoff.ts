// Exponential backoff with jitter. Jitter only shortens the delay (by up to `jitter` of it), so
// the result never exceeds the cap and consecutive attempts still grow while factor·(1-jitter) > 1.

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** Fraction 0..1 of the delay that is randomised away (default 0.2). */
  jitter?: number;
}

/**
 * Delay before retry number `attempt` (0 = first retry ≈ baseMs).
 * Result lies in [(1 - jitter)·d, d] where d = min(maxMs, baseMs·factor^attempt).
 */
export function backoffDelay(attempt: number, opts: BackoffOptions, random: () => number = Math.random): number {
  const factor = opts.factor ?? 2;
  const jitter = Math.min(1, Math.max(0, opts.jitter ?? 0.2));
  const base = Math.max(0, opts.baseMs);
  const max = Math.max(0, opts.maxMs);
  const n = Math.max(0, Math.floor(Number.isFinite(attempt) ? attempt : 0));
  // factor^n overflows to Infinity for large n; min() with the cap handles that.
  const capped = Math.min(max, base * factor ** n);
  const r = Math.min(1, Math.max(0, random()));
  return capped * (1 - jitter * r);
}

/** Stateful wrapper: next() returns the delay for the current attempt and counts it. */
export class Backoff {
  private attemptCount = 0;

  constructor(
    private readonly opts: BackoffOptions,
    private readonly random: () => number = Math.random,
  ) {}

  get attempt(): number {
    return this.attemptCount;
  }

  next(): number {
    return backoffDelay(this.attemptCount++, this.opts, this.random);
  }

  reset(): void {
    this.attemptCount = 0;
  }
}
