// Run duration per commit (bars, coloured by the cached share) and the cached share itself (line, right
// axis), from GET /api/stats/durations. uPlot draws on a canvas; React only owns the container.
import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { DurationPoint } from '../../server/api/types.js';
import { formatDuration, shortCommit } from '../format.js';

export function DurationChart({ points }: { points: DurationPoint[] }) {
  const container = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const element = container.current;
    if (!element || points.length === 0) return;
    const xs = points.map((_, i) => i);
    const seconds = points.map((p) => p.durationMs / 1000);
    const share = points.map((p) => {
      const total = p.stepsCached + p.stepsRan;
      return total === 0 ? null : Math.round((p.stepsCached / total) * 100);
    });
    const bars = uPlot.paths.bars!({ size: [0.6, 28] });
    const options: uPlot.Options = {
      width: element.clientWidth,
      height: 180,
      padding: [12, 8, 0, 4],
      cursor: { drag: { x: false, y: false } },
      legend: { show: true, live: true },
      scales: { x: { time: false, range: [-0.6, Math.max(points.length - 0.4, 0.6)] }, s: { range: (_u, _min, max) => [0, Math.max(1, max * 1.15)] }, pct: { range: [0, 100] } },
      axes: [
        {
          stroke: '#64748b',
          grid: { show: false },
          ticks: { show: false },
          splits: () => xs,
          values: (_u, splits) => splits.map((i) => (points[i] ? shortCommit(points[i].commit).slice(0, 7) : '')),
          font: '11px ui-monospace, SFMono-Regular, Menlo, monospace',
        },
        { scale: 's', stroke: '#64748b', grid: { stroke: '#eef2f7' }, values: (_u, splits) => splits.map((v) => formatDuration(v * 1000)), size: 56 },
        { scale: 'pct', side: 1, stroke: '#16a34a', grid: { show: false }, values: (_u, splits) => splits.map((v) => `${v}%`), size: 44 },
      ],
      series: [
        { label: 'commit', value: (_u, i) => (i === null || !points[i] ? '—' : `${shortCommit(points[i].commit)} ${points[i].title}`) },
        {
          label: 'duration',
          scale: 's',
          paths: bars,
          points: { show: false },
          fill: '#6366f1cc',
          stroke: '#4f46e5',
          value: (_u, v) => (v === null ? '—' : formatDuration(v * 1000)),
        },
        { label: 'cached', scale: 'pct', stroke: '#16a34a', width: 2, points: { show: true, size: 6, fill: '#16a34a' }, value: (_u, v) => (v === null ? '—' : `${v}%`) },
      ],
    };
    const plot = new uPlot(options, [xs, seconds, share], element);
    const resize = new ResizeObserver(() => plot.setSize({ width: element.clientWidth, height: 180 }));
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [points]);

  if (points.length === 0) return <div className="chart-empty muted">No finished runs yet.</div>;
  return <div ref={container} className="chart" data-testid="duration-chart" />;
}
