// Liveness, readiness and metrics; no API key needed.
import type { Database } from 'bun:sqlite';
import { Elysia, t } from 'elysia';

/** What the health routes use: the database (probed), readiness, the metrics text. */
export interface HealthDeps {
  db: Database;
  /** Read on each request: false while shutting down (or after a node stepped down). */
  readonly ready: boolean;
  metricsText(): string;
}

export function healthRoutes(gw: HealthDeps) {
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
