// The list of recent episodes (newest first, filtered, paginated by the API's cursor) and
// the failure-rate chart above it. The first page refreshes itself.
import { getJson, query } from './api.js';
import { failureRateChart } from './chart.js';
import { h, fmt, fmtTime } from './dom.js';

const RANGES = { '1h': 300, '24h': 3600, '7d': 21600, '30d': 86400 };
const RANGE_MS = { '1h': 3_600_000, '24h': 86_400_000, '7d': 604_800_000, '30d': 2_592_000_000 };
const REFRESH_MS = 500;

function select(name, value, options) {
  return h('select', { name }, options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
}

function row(e) {
  const r = e.result;
  return h(
    'tr',
    { 'data-episode': e.id, class: e.label === 'failure' ? 'failure' : '' },
    h('td', {}, fmtTime(e.created_at)),
    h('td', {}, h('a', { href: `#/episodes/${encodeURIComponent(e.id)}?cell_id=${encodeURIComponent(e.cell_id ?? '')}` }, e.id)),
    h('td', {}, e.cell_id ?? ''),
    h('td', {}, e.status),
    h('td', {}, e.label ? h('span', { class: `badge ${e.label}` }, e.label) : e.error?.code ?? ''),
    h('td', { class: 'num' }, r ? fmt(r.detection.probability, 2) : ''),
    h('td', {}, e.human_label ? h('span', { class: `badge ${e.human_label}` }, e.human_label) : ''),
    h('td', { 'data-testid': 'review' }, r?.needs_review ? h('span', { class: 'badge review', title: r.review_reasons.join(', ') }, r.review_reasons.join(', ')) : ''),
    h('td', { class: 'num' }, r ? `${r.rounds_run} · ${r.stop_reason}` : ''),
    h('td', { class: 'text' }, e.task),
    h('td', { class: 'text' }, r ? r.explanation : ''),
  );
}

export function renderList(main, params, onNavigate) {
  const filters = {
    cell_id: params.get('cell_id') ?? '',
    label: params.get('label') ?? '',
    human_label: params.get('human_label') ?? '',
    needs_review: params.get('needs_review') ?? '',
    status: params.get('status') ?? '',
    since: params.get('since') ?? '',
  };
  const range = RANGES[params.get('range')] ? params.get('range') : '24h';
  const cursor = params.get('cursor') ?? '';

  const form = h(
    'form',
    { class: 'filters', 'data-testid': 'filters' },
    h('label', {}, 'Cell ', h('input', { name: 'cell_id', value: filters.cell_id, size: 12 })),
    h('label', {}, 'Model ', select('label', filters.label, [['', 'any'], ['failure', 'failure'], ['success', 'success']])),
    h('label', {}, 'Operator ', select('human_label', filters.human_label, [['', 'any'], ['any', 'labelled'], ['none', 'not labelled'], ['failure', 'failure'], ['success', 'success']])),
    h('label', {}, 'Review ', select('needs_review', filters.needs_review, [['', 'any'], ['true', 'needs review'], ['false', 'trusted']])),
    h('label', {}, 'Status ', select('status', filters.status, [['', 'any'], ['queued', 'queued'], ['running', 'running'], ['succeeded', 'succeeded'], ['failed', 'failed']])),
    h('label', {}, 'Since ', h('input', { name: 'since', type: 'datetime-local', value: filters.since })),
    h('label', {}, 'Chart ', select('range', range, Object.keys(RANGES).map((r) => [r, r]))),
    h('button', { type: 'submit' }, 'Apply'),
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const next = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) next.set(k, String(v));
    onNavigate(`#/?${next}`);
  });

  const chartBox = h('section', { class: 'chart-section' }, h('p', { class: 'muted' }, 'Loading chart…'));
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'episodes', 'data-testid': 'episode-list' },
    h('thead', {}, h('tr', {}, ['Created', 'Episode', 'Cell', 'Status', 'Model', 'p_fail', 'Operator', 'Review', 'Rounds', 'Task', 'Explanation'].map((t) => h('th', {}, t)))),
    tbody,
  );
  const pager = h('nav', { class: 'pager' });
  const status = h('p', { class: 'muted', 'data-testid': 'list-status' });
  main.replaceChildren(h('h2', {}, 'Failure rate per cell'), chartBox, h('h2', {}, 'Episodes'), form, status, table, pager);

  const since = filters.since ? String(Date.parse(filters.since)) : undefined;
  const listQuery = query({ ...filters, since, limit: 50, cursor });
  let lastShown = '';
  let timer;
  let stopped = false;

  async function loadList() {
    // A hidden tab does not poll (an operator's open tabs would eat the key's rate limit).
    if (document.hidden && lastShown !== '') {
      if (!cursor && !stopped) timer = setTimeout(loadList, REFRESH_MS);
      return;
    }
    try {
      const page = await getJson(`/v1/episodes${listQuery}`);
      const key = JSON.stringify(page.items.map((e) => [e.id, e.updated_at, e.human_label]));
      if (key !== lastShown) {
        lastShown = key;
        tbody.replaceChildren(...page.items.map(row));
        status.textContent = page.items.length === 0 ? 'No episodes match.' : `${page.items.length} episodes${cursor ? ' (older page)' : ''}`;
        const links = [];
        if (cursor) links.push(h('a', { href: '#', 'data-testid': 'newer', onclick: (ev) => { ev.preventDefault(); history.back(); } }, '← Newer'));
        if (page.next_cursor) {
          const next = new URLSearchParams(params);
          next.set('cursor', page.next_cursor);
          links.push(h('a', { href: `#/?${next}`, 'data-testid': 'older' }, 'Older →'));
        }
        pager.replaceChildren(...links);
      }
    } catch (err) {
      status.textContent = `Could not list episodes: ${err.message} (${err.code})`;
    }
    // Only the first page follows new episodes; an older page stays still while it is read.
    if (!cursor && !stopped) timer = setTimeout(loadList, REFRESH_MS);
  }

  async function loadChart() {
    const until = Date.now();
    const q = query({ cell_id: filters.cell_id, since: until - RANGE_MS[range], until, bucket_s: RANGES[range] });
    try {
      chartBox.replaceChildren(failureRateChart(await getJson(`/v1/stats/failure-rate${q}`)));
    } catch (err) {
      chartBox.replaceChildren(h('p', { class: 'muted' }, `Could not load the chart: ${err.message}`));
    }
  }

  void loadList();
  void loadChart();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
