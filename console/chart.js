// The model's failure rate per cell over time, as an SVG line chart drawn from
// GET /v1/stats/failure-rate (one line per cell, a point per bucket with episodes).
import { h, svg, fmtTime } from './dom.js';

const W = 720;
const H = 200;
const PAD = { left: 40, right: 12, top: 10, bottom: 24 };
const COLOURS = ['#d9480f', '#1971c2', '#2b8a3e', '#862e9c', '#e67700', '#0b7285', '#c2255c', '#5c940d'];

export function failureRateChart(data) {
  const since = Date.parse(data.since);
  const until = Date.parse(data.until);
  const x = (t) => PAD.left + ((t - since) / (until - since)) * (W - PAD.left - PAD.right);
  const y = (r) => PAD.top + (1 - r) * (H - PAD.top - PAD.bottom);
  const chart = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-label': 'failure rate per cell' });
  for (const r of [0, 0.25, 0.5, 0.75, 1]) {
    chart.append(svg('line', { x1: PAD.left, x2: W - PAD.right, y1: y(r), y2: y(r), class: 'grid' }));
    chart.append(svg('text', { x: PAD.left - 6, y: y(r) + 4, class: 'axis', 'text-anchor': 'end' }, `${Math.round(r * 100)}%`));
  }
  chart.append(svg('text', { x: PAD.left, y: H - 6, class: 'axis' }, fmtTime(data.since)));
  chart.append(svg('text', { x: W - PAD.right, y: H - 6, class: 'axis', 'text-anchor': 'end' }, fmtTime(data.until)));
  const legend = h('ul', { class: 'legend' });
  const half = (data.bucket_s * 1000) / 2;
  data.series.forEach((s, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const cell = s.cell_id ?? '(no cell)';
    const pts = s.points.map((p) => [x(Date.parse(p.t) + half), y(p.rate), p]);
    chart.append(svg('polyline', { points: pts.map(([px, py]) => `${px},${py}`).join(' '), stroke: colour, class: 'line', 'data-cell': cell }));
    for (const [px, py, p] of pts) {
      chart.append(svg('circle', { cx: px, cy: py, r: 3, fill: colour }, svg('title', {}, `${cell}: ${p.failures}/${p.episodes} failed, from ${fmtTime(p.t)}`)));
    }
    const total = s.points.reduce((a, p) => a + p.episodes, 0);
    const failed = s.points.reduce((a, p) => a + p.failures, 0);
    const swatch = h('span', { class: 'swatch' });
    swatch.style.background = colour; // CSSOM, not a style attribute: the CSP allows no inline styles
    legend.append(h('li', {}, swatch, `${cell}: ${failed}/${total} failed`));
  });
  if (data.series.length === 0) legend.append(h('li', { class: 'muted' }, 'No analysed episodes in this range.'));
  return h('figure', { class: 'chart-box', 'data-testid': 'failure-chart' }, chart, legend);
}
