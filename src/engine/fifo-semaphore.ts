// A FIFO counting semaphore. Each conversation holds at most one permit at a time, so FIFO
// order hands permits round-robin across conversations: a flooded one cannot starve the others.

export class FifoSemaphore {
  private waiters: Array<() => void> = [];
  private inUse = 0;

  constructor(private readonly permits: number) {}

  get active(): number {
    return this.inUse;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  async acquire(signal?: AbortSignal): Promise<() => void> {
    if (this.inUse < this.permits) {
      this.inUse++;
      return this.releaser();
    }
    await new Promise<void>((resolve, reject) => {
      const w = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(w);
    });
    return this.releaser();
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const next = this.waiters.shift();
      if (next)
        next(); // the permit passes straight to the next waiter
      else this.inUse--;
    };
  }
}
