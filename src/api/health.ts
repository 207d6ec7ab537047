// Liveness, readiness and metrics; no API key needed.
import { Elysia, t } from 'elysia';
import type { Gateway } from '../gateway.ts';

export function healthRoutes(gw: Gateway) {
  return new Elysia({ name: 'health' })
    .get('/health', () => ({ status: 'ok' as const }), {
      detail: { tags: ['health'], summary: 'Liveness', description: 'Answers while the process runs.', security: [] },
      response: { 200: t.Object({ status: t.Literal('ok') }, { description: 'Alive' }) },
    })
    .get(
      '/ready',
      ({ set }) => {
        let dbOk = true;
        try {
          gw.db.query('SELECT 1').get();
        } catch {
          dbOk = false;
        }
        const ready = gw.ready && dbOk;
        if (!ready) {
          set.status = 503;
          set.headers['retry-after'] = '5';
        }
        return {
          status: ready ? ('ready' as const) : ('not_ready' as const),
          checks: { database: dbOk, accepting: gw.ready },
        };
      },
      {
        detail: {
          tags: ['health'],
          summary: 'Readiness',
          description: '503 while starting or shutting down, or when the database is unavailable.',
          security: [],
        },
        response: {
          200: t.Object({ status: t.String(), checks: t.Record(t.String(), t.Boolean()) }, { description: 'Ready' }),
          503: t.Object(
            { status: t.String(), checks: t.Record(t.String(), t.Boolean()) },
            { description: 'Not ready' },
          ),
        },
      },
    )
    .get(
      '/metrics',
      () => new Response(gw.metricsText(), { headers: { 'content-type': 'text/plain; version=0.0.4' } }),
      {
        detail: {
          tags: ['health'],
          summary: 'Prometheus metrics',
          description: 'Prometheus text exposition format.',
          security: [],
        },
        response: { 200: t.String({ description: 'Metrics in the Prometheus text format' }) },
      },
    );
}
