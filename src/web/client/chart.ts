// Time-series charts for the overview, drawn with uPlot (bundled into the console script: ~50 KB
// minified, no dependencies, canvas-based and fast with thousands of points; its stylesheet is
// served with the console's). Each chart is a <figure> whose `data-points` attribute holds the
// exact arrays the chart was given (x first), so tests and curious operators can read the data
// rather than the pixels; the caption and a screen-reader summary say what it shows in words.
import uPlot from 'uplot';
import { h } from './dom.ts';

export interface ChartLine {
  label: string;
  values: Array<number | null>;
  color: string;
  /** Draw each value as a dot (sparse values such as latency percentiles). */
  points?: boolean;
  dash?: number[];
}

export interface ChartSpec {
  id: string;
  title: string;
  /** Bucket starts, Unix seconds. */
  t: number[];
  lines: ChartLine[];
  format: (v: number) => string;
  /** One sentence for screen readers (the chart itself is a picture). */
  summary: string;
}

export interface Chart {
  el: HTMLElement;
  update(spec: ChartSpec): void;
  destroy(): void;
}

const css = (name: string, fallback: string) =>
  getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;

export function chart(initial: ChartSpec): Chart {
  const plotArea = h('div', { class: 'chart-plot', 'aria-hidden': 'true' });
  const summary = h('p', { class: 'sr-only' });
  const caption = h('figcaption', {}, initial.title);
  const el = h('figure', { class: 'chart card', 'data-chart': initial.id }, caption, summary, plotArea);
  let spec = initial;
  let plot: uPlot | null = null;

  const size = () => ({ width: Math.max(200, plotArea.clientWidth || 300), height: 170 });
  const options = (s: ChartSpec): uPlot.Options => {
    const axis = css('--muted', '#5b6470');
    const grid = css('--line', '#d8dde3');
    return {
      ...size(),
      scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
      series: [
        {},
        ...s.lines.map((l) => ({
          label: l.label,
          stroke: l.color,
          width: 2,
          dash: l.dash,
          points: { show: l.points ?? false, size: 5, fill: l.color },
          spanGaps: false,
          value: (_u: uPlot, v: number | null) => (v === null || v === undefined ? '—' : s.format(v)),
        })),
      ],
      axes: [
        { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } },
        {
          stroke: axis,
          grid: { stroke: grid, width: 1 },
          ticks: { stroke: grid },
          size: 56,
          values: (_u: uPlot, vals: number[]) => vals.map((v) => s.format(v)),
        },
      ],
      cursor: { drag: { x: false, y: false } },
      legend: { live: true },
    };
  };
  const data = (s: ChartSpec): uPlot.AlignedData => [s.t, ...s.lines.map((l) => l.values)] as uPlot.AlignedData;
  const publish = () => {
    // What the chart holds, read back from uPlot itself.
    el.setAttribute('data-points', JSON.stringify(plot ? plot.data : data(spec)));
    el.setAttribute('data-labels', JSON.stringify(spec.lines.map((l) => l.label)));
    summary.textContent = spec.summary;
  };
  const build = () => {
    plot?.destroy();
    plot = new uPlot(options(spec), data(spec), plotArea);
    publish();
  };

  // uPlot needs a width: draw once the figure is in the page and has one; follow its size after.
  const resize = new ResizeObserver(() => {
    if (!plotArea.isConnected) return;
    if (!plot) build();
    else plot.setSize(size());
  });
  resize.observe(plotArea);
  publish();

  return {
    el,
    update(next) {
      const sameShape =
        next.lines.length === spec.lines.length && next.lines.every((l, i) => l.label === spec.lines[i]!.label);
      spec = next;
      caption.textContent = next.title;
      if (!plot) return publish();
      if (sameShape) {
        plot.setData(data(next));
        publish();
      } else build();
    },
    destroy() {
      resize.disconnect();
      plot?.destroy();
      plot = null;
    },
  };
}
