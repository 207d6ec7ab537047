// A trace's steps as a timeline: one row per step with its status, time and duration, and a bar
// whose width is the step's share of the slowest step.
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
}

export const TERMINAL = ['completed', 'failed', 'blocked', 'dead_lettered', 'shed'];

export function stepTimeline(steps: TraceStep[], compact = false): HTMLElement {
  if (!steps.length) return h('p', { class: 'muted small' }, 'No steps yet.');
  const max = Math.max(1, ...steps.map((s) => s.durationMs ?? 0));
  const start = Date.parse(steps[0]!.at);
  return h(
    'ol',
    { class: compact ? 'timeline compact' : 'timeline' },
    steps.map((s) => {
      const bar = h('span', { class: `bar bar-${s.status}` });
      // CSSOM writes are allowed by the page's CSP (inline style attributes are not).
      bar.style.width = `${Math.max(2, Math.round(((s.durationMs ?? 0) / max) * 100))}%`;
      const offset = Date.parse(s.at) - start;
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
        h('div', { class: 'bar-track', 'aria-hidden': 'true' }, bar),
        compact ? null : h('div', { class: 'muted small' }, `+${ms(Number.isNaN(offset) ? null : offset)} · ${s.at}`),
        !compact && details ? h('pre', { class: 'details' }, details) : null,
      );
    }),
  );
}
