// One episode: the frames the model saw, its answer, every round of the refinement trace
// (the chosen candidate marked, the stop reason), and the operator labels with a form.
import { api, getJson, postJson } from './api.js';
import { h, fmt, fmtTime } from './dom.js';

const FAILURE_MODES = ['grasp_miss', 'drop_in_transit', 'placed_outside', 'multi_pick', 'collision_knockout', 'damaged_item'];
const BY_KEY = 'armor-serve.labelled-by';

const STOP_REASONS = {
  converged: 'converged: a round no longer lowered the best C by more than epsilon',
  max_rounds: 'max_rounds: every allowed round ran',
  deadline: 'deadline: the deadline came before another round could finish',
};

function answer(r) {
  return h(
    'section',
    { class: 'answer', 'data-testid': 'answer' },
    h('h2', {}, 'Answer'),
    h('p', { class: 'verdict' }, h('span', { class: `badge big ${r.detection.label}` }, r.detection.label), ` p_fail ${fmt(r.detection.probability)} · confidence ${fmt(r.confidence)}`),
    h('blockquote', { 'data-testid': 'explanation' }, r.explanation),
    r.needs_review
      ? h('p', { class: 'review', 'data-testid': 'needs-review' }, h('span', { class: 'badge review' }, 'needs review'), ` ${r.review_reasons.join(', ')}`)
      : '',
    // Results stored before selection rules existed carry no rule.
    !r.selected.rule ? '' : h('p', { class: 'muted', 'data-testid': 'selection' }, `chosen by ${r.selected.rule}: ${r.selected.reason}${r.novelty !== null ? ` · input novelty ${fmt(r.novelty, 2)}` : ''}`),
    h('p', { class: 'muted' }, `Chosen: trajectory ${r.selected.trajectory} of round ${r.selected.round} (C ${fmt(r.selected.c, 4)}). Stopped after ${r.rounds.length} round${r.rounds.length === 1 ? '' : 's'}: ${STOP_REASONS[r.stop_reason] ?? r.stop_reason}.`),
    h('p', { class: 'muted' }, `Model ${r.model.name} ${r.model.version} on ${r.provider}; ${r.input.kind}, ${r.input.frames} frame(s); seed ${r.options.seed}, T ${r.options.temperature}, top-p ${r.options.top_p}; ${Math.round(r.timings.total_ms)} ms.`),
  );
}

function trace(r) {
  const rounds = r.rounds.map((round) => {
    const rows = round.candidates.map((c) => {
      const chosen = c.round === r.selected.round && c.trajectory === r.selected.trajectory;
      return h(
        'tr',
        { class: chosen ? 'chosen' : '', 'data-testid': chosen ? 'chosen' : 'candidate' },
        h('td', { class: 'num' }, chosen ? `★ ${c.trajectory}` : String(c.trajectory)),
        h('td', {}, h('span', { class: `badge ${c.label}` }, c.label)),
        h('td', { class: 'num' }, fmt(c.p_fail)),
        h('td', { class: 'num' }, fmt(c.h_det, 4)),
        h('td', { class: 'num' }, fmt(c.h_reason, 4)),
        h('td', { class: 'num' }, fmt(c.c, 4)),
        h('td', { class: 'num' }, String(c.tokens)),
        h('td', { class: 'text' }, c.explanation),
      );
    });
    return h(
      'section',
      { class: 'round', 'data-testid': 'round', 'data-round': round.round },
      h('h3', {}, `Round ${round.round}`, h('span', { class: 'muted' }, ` · min C ${fmt(round.min_c, 4)} · ${Math.round(round.time_ms)} ms`)),
      h(
        'table',
        { class: 'candidates' },
        h('thead', {}, h('tr', {}, ['Trajectory', 'Label', 'p_fail', 'H_det', 'H_reason', 'C', 'Tokens', 'Explanation'].map((t) => h('th', {}, t)))),
        h('tbody', {}, rows),
      ),
    );
  });
  return h(
    'section',
    { class: 'trace', 'data-testid': 'trace' },
    h('h2', {}, 'Refinement trace'),
    h('p', { class: 'muted' }, 'C = H_det + 0.1 · H_reason; lower is surer. ★ marks the candidate answered.'),
    rounds,
    h('p', { 'data-testid': 'stop-reason' }, `Stop: ${STOP_REASONS[r.stop_reason] ?? r.stop_reason}`),
  );
}

/** The episode's API path: ids are unique within a cell, so the cell goes with it. */
function episodePath(episode, suffix = '') {
  return `/v1/episodes/${encodeURIComponent(episode.id)}${suffix}?cell_id=${encodeURIComponent(episode.cell_id ?? '')}`;
}

function frames(episode) {
  const box = h('section', { class: 'frames', 'data-testid': 'frames' }, h('h2', {}, 'What the model saw'));
  if (!episode.media_available) {
    box.append(h('p', { class: 'muted' }, 'The media of this episode is no longer stored (ARMOR_MEDIA_RETENTION).'));
    return box;
  }
  const caption = h('figcaption', { class: 'muted' }, 'Decoding…');
  const img = h('img', { alt: `frames of episode ${episode.id}`, 'data-testid': 'frames-image' });
  box.append(h('figure', {}, img, caption));
  api(episodePath(episode, '/frames'))
    .then(async (res) => {
      const n = res.headers.get('x-armor-frames');
      const url = URL.createObjectURL(await res.blob());
      img.addEventListener('load', () => URL.revokeObjectURL(url), { once: true }); // the decoded image stays; the blob goes
      img.src = url;
      caption.textContent = episode.result?.input.kind === 'tiles' ? `${episode.result.input.views} views, tiled as the model saw them` : `${n} frames sampled from the video, in order, as the model saw them`;
    })
    .catch((err) => (caption.textContent = `Could not load the frames: ${err.message}`));
  return box;
}

function labelItem(l) {
  return h(
    'li',
    { 'data-testid': 'label' },
    h('span', { class: `badge ${l.label}` }, l.label),
    l.failure_mode && l.failure_mode !== 'success' ? ` ${l.failure_mode}` : '',
    l.agreed === false ? h('span', { class: 'disagree' }, ' disagrees with the model') : l.agreed ? h('span', { class: 'muted' }, ' agrees with the model') : '',
    h('span', { class: 'muted' }, ` · ${l.by ?? 'anonymous'} · ${fmtTime(l.created_at)}`),
    l.explanation ? h('div', { class: 'text' }, l.explanation) : '',
  );
}

function labels(episode) {
  const list = h('ul', { class: 'labels', 'data-testid': 'labels' }, (episode.labels ?? []).map(labelItem));
  const box = h('section', { class: 'label-box' }, h('h2', {}, 'Labels'), list);
  if (episode.status !== 'succeeded') {
    box.append(h('p', { class: 'muted' }, 'Only analysed episodes can be labelled.'));
    return box;
  }
  const note = h('p', { class: 'muted', 'data-testid': 'label-status', role: 'status' });
  const modeSelect = h('select', { name: 'failure_mode' }, h('option', { value: '' }, '(failure mode)'), FAILURE_MODES.map((m) => h('option', { value: m }, m)));
  const form = h(
    'form',
    { class: 'label-form', 'data-testid': 'label-form' },
    h('fieldset', {}, h('legend', {}, 'The pick was a'),
      h('label', {}, h('input', { type: 'radio', name: 'label', value: 'failure', required: true }), ' failure'),
      h('label', {}, h('input', { type: 'radio', name: 'label', value: 'success' }), ' success')),
    h('label', {}, 'Failure mode ', modeSelect),
    h('label', { class: 'wide' }, 'What happened (optional; makes a dense training example)', h('textarea', { name: 'explanation', rows: 3, maxlength: 2000 })),
    h('label', {}, 'By ', h('input', { name: 'by', value: localStorage.getItem(BY_KEY) ?? '', maxlength: 128 })),
    h('button', { type: 'submit' }, 'Save label'),
    note,
  );
  form.addEventListener('change', () => {
    modeSelect.disabled = new FormData(form).get('label') === 'success';
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const body = { label: data.get('label') };
    for (const k of ['failure_mode', 'explanation', 'by']) {
      const v = String(data.get(k) ?? '').trim();
      if (v && !(k === 'failure_mode' && body.label === 'success')) body[k] = v;
    }
    if (body.by) localStorage.setItem(BY_KEY, body.by);
    note.textContent = 'Saving…';
    try {
      const saved = await postJson(episodePath(episode, '/labels'), body);
      list.append(labelItem(saved));
      form.reset();
      note.textContent = 'Saved.';
    } catch (err) {
      note.textContent = `Not saved: ${err.message}`;
    }
  });
  box.append(form);
  return box;
}

/** `current()`: whether this view is still the one shown (the operator may have moved on while it loaded). */
export async function renderEpisode(main, id, cell, current = () => true) {
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  let episode;
  try {
    episode = await getJson(`/v1/episodes/${encodeURIComponent(id)}${cell === null ? '' : `?cell_id=${encodeURIComponent(cell)}`}`);
  } catch (err) {
    if (current()) main.replaceChildren(h('p', { class: 'error' }, `Could not load episode ${id}: ${err.message}`));
    return;
  }
  if (!current()) return;
  const r = episode.result;
  main.replaceChildren(
    h('p', {}, h('a', { href: '#/' }, '← Episodes')),
    h('h2', { 'data-testid': 'episode-id' }, `Episode ${episode.id}`),
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'Task'), h('dd', { 'data-testid': 'task' }, episode.task),
      h('dt', {}, 'Cell'), h('dd', {}, episode.cell_id ?? '(none)'),
      h('dt', {}, 'Status'), h('dd', {}, `${episode.status} (${episode.mode}, ${episode.attempts} run${episode.attempts === 1 ? '' : 's'})`),
      h('dt', {}, 'Created'), h('dd', {}, fmtTime(episode.created_at)),
    ),
    h('div', { class: 'columns' }, frames(episode), r ? answer(r) : h('section', { class: 'answer' }, h('h2', {}, 'Answer'), episode.error ? h('p', { class: 'error' }, `${episode.error.code}: ${episode.error.message}`) : h('p', { class: 'muted' }, `Not analysed yet (${episode.status}).`))),
    r ? trace(r) : '',
    labels(episode),
  );
}
