// The console talks only to the public API. The key is entered once per browser tab session and
// kept in sessionStorage (gone when the tab closes); every request carries it as x-api-key.
import { h } from './dom.ts';

const KEY_STORAGE = 'switchboard.apiKey';

export function apiKey(): string | null {
  return sessionStorage.getItem(KEY_STORAGE);
}
export function setApiKey(key: string | null): void {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

export interface FieldProblem {
  field: string;
  problem: string;
}

/** An API error envelope {"error":{code,message,details}} (or a network failure). */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details: unknown,
  ) {
    super(message);
  }
  /** Per-field problems when details is the validation list. */
  fieldProblems(): FieldProblem[] {
    const d = this.details;
    if (!Array.isArray(d)) return [];
    return d.filter((p): p is FieldProblem => typeof p?.field === 'string' && typeof p?.problem === 'string');
  }
}

let onUnauthorized: () => void = () => {};
export function whenUnauthorized(fn: () => void): void {
  onUnauthorized = fn;
}

export async function api<T = any>(method: string, path: string, body?: unknown, key = apiKey()): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (key) headers['x-api-key'] = key;
  if (body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiFailure(0, 'NETWORK', `Could not reach the gateway (${(err as Error).message})`, null);
  }
  const text = await res.text();
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    const e = json?.error;
    const failure =
      e && typeof e.message === 'string'
        ? new ApiFailure(res.status, String(e.code ?? res.status), e.message, e.details ?? null)
        : new ApiFailure(res.status, String(res.status), `${method} ${path} failed with HTTP ${res.status}`, null);
    if (res.status === 401 && key === apiKey()) onUnauthorized();
    throw failure;
  }
  return json as T;
}

/** An alert box for an API error: the envelope's message, its code, and per-field details. */
export function errorBox(err: unknown): HTMLElement {
  if (!(err instanceof ApiFailure))
    return h('div', { class: 'alert error', role: 'alert' }, String((err as Error)?.message ?? err));
  const problems = err.fieldProblems();
  const other =
    problems.length === 0 && err.details && typeof err.details === 'object' ? JSON.stringify(err.details) : null;
  return h(
    'div',
    { class: 'alert error', role: 'alert' },
    h('strong', {}, err.message),
    err.status ? h('span', { class: 'code' }, ` (${err.code}, HTTP ${err.status})`) : null,
    problems.length
      ? h(
          'ul',
          {},
          problems.map((p) => h('li', {}, h('code', {}, p.field), ' ', p.problem)),
        )
      : null,
    other ? h('pre', { class: 'details' }, other) : null,
  );
}
