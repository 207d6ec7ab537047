// Time as a dependency: production uses the real clock; tests drive a VirtualClock.

export interface Timer {
  cancel(): void;
}

export interface Clock {
  /** Wall-clock milliseconds (for timestamps). */
  now(): number;
  /** Monotonic milliseconds (for durations, leases, deadlines). */
  monotonic(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  setTimeout(fn, ms) {
    const h = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(h) };
  },
  sleep(ms, signal) {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const h = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      const onAbort = () => {
        clearTimeout(h);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  },
};
