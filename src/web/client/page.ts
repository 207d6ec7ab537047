// What a page gets when it is shown: where to render, the route parameters, and a place to
// register clean-ups (timers, live listeners) that run when the user navigates away.
import { type LiveFrame, listen } from './live.ts';

export class PageContext {
  private readonly disposers: Array<() => void> = [];
  left = false;
  constructor(
    readonly main: HTMLElement,
    readonly params: string[],
    readonly query: URLSearchParams,
  ) {}
  onLeave(fn: () => void): void {
    this.disposers.push(fn);
  }
  live(fn: (frame: LiveFrame) => void): void {
    this.onLeave(listen(fn));
  }
  every(ms: number, fn: () => void): void {
    const id = setInterval(fn, ms);
    this.onLeave(() => clearInterval(id));
  }
  later(ms: number, fn: () => void): void {
    const id = setTimeout(fn, ms);
    this.onLeave(() => clearTimeout(id));
  }
  leave(): void {
    this.left = true;
    for (const d of this.disposers.splice(0)) d();
  }
}

export type Page = (ctx: PageContext) => void | Promise<void>;
