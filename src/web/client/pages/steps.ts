// A trace's steps as a waterfall: one row per step with its status, time and duration, and a bar
// placed on the trace's one time axis, so where the time went shows at a glance.
import { badge, h, ms } from '../dom.ts';

export interface TraceStep {
  step: string;
  status: string;
  at: string;
  durationMs: number | null;
  details: Record<string, unknown> | null;
}

export interface TraceView {
  id: string;
  instanceId: string;
  instanceName: string;
  conversationId: string;
  kind: string;
  sender: { id: string; name: string | null; phone: string | null };
  text: string;
  responseText: string | null;
  status: string;
  attempts: number;
  error: string | null;
  durationMs: number | null;
  receivedAt: string;
  completedAt: string | null;
  steps: TraceStep[];
  /** The message's media (and its reply's), when it had any. */
  media?: MediaItemView[];
}

export interface MediaItemView {
  id: string;
  direction: 'in' | 'out';
  status: string;
  type: string;
  mimeType: string | null;
  filename: string | null;
  caption: string | null;
  transcript: string | null;
  error: string | null;
  /** A signed path on this gateway, null when the item was not stored. */
  url: string | null;
}

export const TERMINAL = ['completed', 'failed', 'blocked', 'dead_lettered', 'shed'];

/**
 * A step's span on the trace's time axis. A step is recorded when it ends (`at`), with its
 * duration when it has one, so it started `durationMs` earlier; one without a duration is an instant.
 */
function spans(steps: TraceStep[]): { t0: number; total: number; at: Array<{ start: number; end: number } | null> } {
  const at = steps.map((s) => {
    const end = Date.parse(s.at);
    return Number.isNaN(end) ? null : { start: end - (s.durationMs ?? 0), end };
  });
  const known = at.filter((x): x is { start: number; end: number } => x !== null);
  const t0 = known.length ? Math.min(...known.map((x) => x.start)) : 0;
  const t1 = known.length ? Math.max(...known.map((x) => x.end)) : 0;
  return { t0, total: Math.max(1, t1 - t0), at };
}

/** The steps as a waterfall: every bar placed on one time axis from the first step's start to the last step's end. */
export function stepTimeline(steps: TraceStep[], compact = false): HTMLElement {
  if (!steps.length) return h('p', { class: 'muted small' }, 'No steps yet.');
  const { t0, total, at } = spans(steps);
  const pct = (v: number) => `${Math.min(100, Math.max(0, (v / total) * 100)).toFixed(2)}%`;
  const list = h(
    'ol',
    { class: compact ? 'timeline waterfall compact' : 'timeline waterfall', 'data-total-ms': String(total) },
    steps.map((s, i) => {
      const span = at[i];
      const bar = h('span', { class: `bar bar-${s.status}${s.durationMs ? '' : ' instant'}` });
      // CSSOM writes are allowed by the page's CSP (inline style attributes are not).
      if (span) {
        bar.style.left = pct(span.start - t0);
        bar.style.width = s.durationMs ? pct(span.end - span.start) : '';
        bar.setAttribute('data-start-ms', String(span.start - t0));
      }
      const offset = span ? span.end - t0 : null;
      const details = s.details && Object.keys(s.details).length ? JSON.stringify(s.details) : null;
      return h(
        'li',
        { class: `step step-${s.status}`, 'data-step': s.step },
        h(
          'div',
          { class: 'step-head' },
          h('span', { class: 'step-name' }, s.step.replace(/_/g, ' ')),
          badge(s.status),
          h('span', { class: 'step-ms' }, ms(s.durationMs)),
        ),
        h(
          'div',
          {
            class: 'bar-track',
            role: 'img',
            'aria-label': span
              ? `${s.step.replace(/_/g, ' ')}: from ${ms(span.start - t0)} to ${ms(span.end - t0)}`
              : 'time unknown',
          },
          bar,
        ),
        compact ? null : h('div', { class: 'muted small' }, `ends at +${ms(offset)} · ${s.at}`),
        !compact && details ? h('pre', { class: 'details' }, details) : null,
      );
    }),
  );
  if (compact) return list;
  return h(
    'div',
    { class: 'waterfall-wrap' },
    h(
      'div',
      { class: 'waterfall-axis muted small', 'aria-hidden': 'true' },
      h('span', {}, '0'),
      h('span', {}, ms(total / 2)),
      h('span', {}, ms(total)),
    ),
    list,
  );
}
