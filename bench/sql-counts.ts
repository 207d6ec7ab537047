// A preload for the benchmarked gateway (BENCH_PRELOAD=bench/sql-counts.ts bun bench/pipeline.ts …):
// counts every SQL statement execution and its time, by statement text, and writes the table to
// $SQL_COUNTS_DIR/sql-counts.<pid>.tsv (default the temp dir) when the gateway stops. Counts do not
// depend on the machine's load, so two checkouts can be compared statement by statement.
import { Database } from 'bun:sqlite';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const seen = new Map<string, { n: number; ns: number }>();
const wrapped = new WeakSet<object>();

function count(statement: Record<string, unknown>, sql: string) {
  if (wrapped.has(statement)) return statement;
  wrapped.add(statement);
  const text = sql.replace(/\s+/g, ' ').trim().slice(0, 160);
  for (const m of ['run', 'get', 'all', 'values']) {
    const original = statement[m] as ((...a: unknown[]) => unknown) | undefined;
    if (typeof original !== 'function') continue;
    const key = `${m} ${text}`;
    statement[m] = function (this: unknown, ...args: unknown[]) {
      const t0 = Bun.nanoseconds();
      try {
        return original.apply(this, args);
      } finally {
        const s = seen.get(key) ?? { n: 0, ns: 0 };
        s.n++;
        s.ns += Bun.nanoseconds() - t0;
        seen.set(key, s);
      }
    };
  }
  return statement;
}

const proto = Database.prototype as unknown as Record<string, (sql: string, ...a: unknown[]) => unknown>;
for (const m of ['query', 'prepare']) {
  const original = proto[m]!;
  proto[m] = function (this: Database, sql: string, ...a: unknown[]) {
    return count(original.call(this, sql, ...a) as Record<string, unknown>, sql);
  };
}

function write() {
  const rows = [...seen].sort((a, b) => b[1].n - a[1].n);
  const lines = rows.map(
    ([k, s]) => `${s.n}\t${(s.ns / 1e6).toFixed(1)} ms\t${(s.ns / 1e3 / s.n).toFixed(2)} µs\t${k}`,
  );
  writeFileSync(join(process.env.SQL_COUNTS_DIR ?? tmpdir(), `sql-counts.${process.pid}.tsv`), `${lines.join('\n')}\n`);
}
process.on('SIGTERM', write);
process.on('exit', write);
