// A small Prometheus registry: counters, gauges (sampled by callbacks) and histograms.

type Labels = Record<string, string>;

const NEEDS_ESCAPE = /[\\"\n]/;

function escapeValue(v: string): string {
  return NEEDS_ESCAPE.test(v) ? v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : v;
}

/** The series key of a label set (sorted names); built on every count, so without arrays or regex replaces. */
function labelKey(l: Labels | undefined): string {
  if (!l) return '';
  const names = Object.keys(l);
  if (names.length === 0) return '';
  if (names.length > 1) names.sort();
  let key = '{';
  for (let i = 0; i < names.length; i++) key += `${i ? ',' : ''}${names[i]}="${escapeValue(String(l[names[i]]))}"`;
  return `${key}}`;
}

class Counter {
  values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels?: Labels, by = 1) {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels?: Labels): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.values.size === 0) lines.push(`${this.name} 0`);
    for (const [k, v] of this.values) lines.push(`${this.name}${k} ${v}`);
    return lines.join('\n');
  }
}

class Gauge {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly sample: () => number | Array<[Labels, number]>,
  ) {}
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} gauge`];
    const v = this.sample();
    if (typeof v === 'number') lines.push(`${this.name} ${v}`);
    else for (const [l, n] of v) lines.push(`${this.name}${labelKey(l)} ${n}`);
    return lines.join('\n');
  }
}

const DEFAULT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

class Histogram {
  series = new Map<string, { counts: number[]; sum: number; count: number }>();
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets = DEFAULT_BUCKETS,
  ) {}
  observe(value: number, labels?: Labels) {
    const k = labelKey(labels);
    let s = this.series.get(k);
    if (!s) this.series.set(k, (s = { counts: this.buckets.map(() => 0), sum: 0, count: 0 }));
    for (let i = 0; i < this.buckets.length; i++) if (value <= this.buckets[i]) s.counts[i]++;
    s.sum += value;
    s.count++;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    for (const [k, s] of this.series) {
      const inner = k ? `${k.slice(1, -1)},` : '';
      for (const [i, b] of this.buckets.entries()) lines.push(`${this.name}_bucket{${inner}le="${b}"} ${s.counts[i]}`);
      lines.push(`${this.name}_bucket{${inner}le="+Inf"} ${s.count}`);
      lines.push(`${this.name}_sum${k} ${s.sum}`);
      lines.push(`${this.name}_count${k} ${s.count}`);
    }
    return lines.join('\n');
  }
}

export class Metrics {
  private all: Array<Counter | Gauge | Histogram> = [];

  counter(name: string, help: string): Counter {
    const c = new Counter(name, help);
    this.all.push(c);
    return c;
  }
  gauge(name: string, help: string, sample: () => number | Array<[Labels, number]>): Gauge {
    const g = new Gauge(name, help, sample);
    this.all.push(g);
    return g;
  }
  histogram(name: string, help: string, buckets?: number[]): Histogram {
    const h = new Histogram(name, help, buckets);
    this.all.push(h);
    return h;
  }
  render(): string {
    return `${this.all.map((m) => m.render()).join('\n')}\n`;
  }
}

export type { Counter, Gauge, Histogram };
