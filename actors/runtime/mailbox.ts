// Bounded FIFO queue. offer() refuses when full so the caller sees backpressure instead of
// memory growing without bound.

export class MailboxClosedError extends Error {
  constructor() {
    super('mailbox closed');
    this.name = 'MailboxClosedError';
  }
}

interface Waiter<T> {
  resolve(x: T): void;
  reject(e: unknown): void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

export class Mailbox<T> {
  // Array with a moving head: shift() is O(n) on large arrays, this is O(1) amortised.
  private items: T[] = [];
  private head = 0;
  // Allocated only when someone waits: the supervisor polls, so idle mailboxes stay small.
  private waiters: Waiter<T>[] | null = null;
  private isClosed = false;

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError('mailbox capacity must be at least 1');
  }

  get size(): number {
    return this.items.length - this.head;
  }

  get closed(): boolean {
    return this.isClosed;
  }

  /** Enqueues x; false when the mailbox is full or closed. */
  offer(x: T): boolean {
    if (this.isClosed) return false;
    const waiter = this.waiters?.shift();
    if (waiter) {
      this.detach(waiter);
      waiter.resolve(x);
      return true;
    }
    if (this.size >= this.capacity) return false;
    this.items.push(x);
    return true;
  }

  /** Removes and returns the oldest item, or undefined when empty. */
  poll(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const x = this.items[this.head];
    this.items[this.head] = undefined as T; // let it be collected
    this.head++;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 64 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return x;
  }

  /** Waits for the next item. Rejects with MailboxClosedError once closed and empty, or with the abort reason. */
  take(signal?: AbortSignal): Promise<T> {
    if (this.size > 0) return Promise.resolve(this.poll() as T);
    if (this.isClosed) return Promise.reject(new MailboxClosedError());
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = { resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          const i = this.waiters?.indexOf(waiter) ?? -1;
          if (i >= 0) this.waiters!.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      (this.waiters ??= []).push(waiter);
    });
  }

  /** Removes and returns everything queued. */
  drain(): T[] {
    const out = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return out;
  }

  /** Refuses further offers; queued items can still be taken; waiting takers are rejected. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    const waiters = this.waiters ?? [];
    this.waiters = null;
    for (const w of waiters) {
      this.detach(w);
      w.reject(new MailboxClosedError());
    }
  }

  private detach(w: Waiter<T>): void {
    if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
  }
}
