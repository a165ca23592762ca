// The operator console in a real browser (Debian's chromium driven by playwright-core) against
// the real server: a posted episode shows up in the list, its page shows the frames the model
// saw and every round of its trace, a label sent through the form is stored, exported and
// evaluated; strings from clients and the model are shown as text; 10,000 stored episodes page.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, SqliteDialect } from 'kysely';
import { chromium, type Browser, type Page } from 'playwright-core';
import t from 'tap';
import { hashKey } from '../src/server/api-keys.js';
import { episodeListQuery, type EpisodeFilter } from '../src/store/index.js';
import type { Database } from '../src/store/schema.js';
import { FIXTURES, ROOT } from './helpers.js';
import { startTestServer } from './support/test-server.js';

// What the functions run in the page use (the tests compile without the DOM's types).
declare const document: { querySelector(selector: string): { complete: boolean; naturalWidth: number; naturalHeight: number } | null };
declare const window: { __xss?: number };

const run = promisify(execFile);
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const KEYS = { robot: 'robot-key-0123456789abcdef', operator: 'operator-key-0123456789abcdef' };
const HOSTILE_TASK = 'pick the purple cylinder <script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">';
const HOSTILE_NOTE = 'It fell off the cup. <script>window.__xss = 3</script><b>bold?</b>';
const OPTIONS = JSON.stringify({ trajectories: 3, max_rounds: 4, seed: 3 });

async function launch(t: { teardown: (fn: () => Promise<void>) => void }): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`no chromium at ${CHROMIUM}: install Debian's chromium (.ci/run does) or set CHROMIUM_PATH`);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  t.teardown(() => browser.close());
  return browser;
}

/** A page that records script errors, and the API key entered as an operator would. */
async function consolePage(browser: Browser, base: string, key: string | null): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(`${base}/console/`);
  if (key) {
    await page.fill('#api-key', key);
    await page.click('#key-form button');
  }
  return { page, errors };
}

async function postEpisode(base: string, fields: Record<string, string>, file: string): Promise<Record<string, unknown>> {
  const form = new FormData();
  form.append('video', new Blob([await readFile(path.join(FIXTURES, file))]), file);
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  const res = await fetch(`${base}/v1/episodes`, { method: 'POST', body: form, headers: { authorization: `Bearer ${KEYS.robot}` } });
  const body = (await res.json()) as Record<string, unknown>;
  if (res.status !== 200) throw new Error(`POST /v1/episodes: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

t.test('an episode in the console: list, frames, full trace, a label through the form, export, eval', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-console-test-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const keysFile = path.join(dir, 'keys.json');
  await writeFile(
    keysFile,
    JSON.stringify([
      { id: 'robot', sha256: hashKey(KEYS.robot), scopes: ['submit', 'read'] },
      { id: 'operator', sha256: hashKey(KEYS.operator), scopes: ['read', 'label'] },
    ]),
  );
  const server = await startTestServer({ ARMOR_API_KEYS_FILE: keysFile });
  t.teardown(server.close);
  const browser = await launch(t);

  const anonymous = await consolePage(browser, server.base, null);
  await anonymous.page.waitForSelector('[data-testid=list-status]:has-text("unauthorized")');
  t.pass('without a key the console says the API refused it');
  await anonymous.page.close();

  const { page, errors } = await consolePage(browser, server.base, KEYS.operator);
  await page.waitForSelector('[data-testid=list-status]:has-text("No episodes")');

  const result = await postEpisode(server.base, { task: HOSTILE_TASK, cell_id: 'cell-7', episode_id: 'ep-console-1', options: OPTIONS }, 'eval-small/eval-000008.mp4');
  const posted = Date.now();
  // (A synchronous episode is listed as running while it is analysed; this waits for its answer.)
  const row = await page.waitForSelector('[data-episode="ep-console-1"]:has-text("succeeded")', { timeout: 3000 });
  const appearedMs = Date.now() - posted;
  t.comment(`the analysed episode was in the list ${appearedMs} ms after its POST returned`);
  t.ok(appearedMs <= 2000, `the list follows new episodes (${appearedMs} ms; it polls every 500 ms)`);
  t.match(await row.textContent(), /failure/);

  await page.click('[data-episode="ep-console-1"] a');
  await page.waitForSelector('[data-testid=trace]');
  t.equal(await page.textContent('[data-testid=task]'), HOSTILE_TASK, 'the task is shown as text, markup and all');
  const rounds = result.rounds as { candidates: unknown[] }[];
  t.equal(await page.locator('[data-testid=round]').count(), rounds.length, 'every round of the trace');
  t.equal(
    await page.locator('[data-testid=round] tbody tr').count(),
    rounds.reduce((n, r) => n + r.candidates.length, 0),
    'every trajectory of every round',
  );
  const selected = result.selected as { round: number; trajectory: number };
  const chosen = page.locator('tr.chosen');
  t.equal(await chosen.count(), 1, 'one candidate marked as chosen');
  t.equal(await chosen.locator('xpath=ancestor::section[@data-testid="round"]').getAttribute('data-round'), String(selected.round), 'in the selected round');
  t.match(await page.textContent('[data-testid=stop-reason]'), String(result.stop_reason));
  t.equal(await page.textContent('[data-testid=explanation]'), result.explanation, 'the answer');

  await page.waitForFunction(() => {
    const img = document.querySelector('[data-testid=frames-image]');
    return img !== null && img.complete && img.naturalWidth > 0;
  });
  const size = await page.evaluate(() => {
    const img = document.querySelector('[data-testid=frames-image]');
    return [img?.naturalWidth ?? 0, img?.naturalHeight ?? 0];
  });
  const frames = (result.input as { frames: number }).frames;
  t.ok(size[0] > size[1], `the ${frames} sampled frames side by side (${size[0]}x${size[1]})`);
  t.match(await page.textContent('[data-testid=frames] figcaption'), `${frames} frames`);

  await page.check('input[name=label][value=failure]');
  await page.selectOption('select[name=failure_mode]', 'collision_knockout');
  await page.fill('textarea[name=explanation]', HOSTILE_NOTE);
  await page.fill('input[name=by]', 'ana');
  await page.click('[data-testid=label-form] button[type=submit]');
  await page.waitForSelector('[data-testid=label-status]:has-text("Saved.")');
  t.match(await page.textContent('[data-testid=labels]'), HOSTILE_NOTE, 'the label is listed, its note as text');
  // The README's picture of the console: ARMOR_CONSOLE_SCREENSHOT=docs/console-episode.png npm test
  if (process.env.ARMOR_CONSOLE_SCREENSHOT) await page.screenshot({ path: process.env.ARMOR_CONSOLE_SCREENSHOT, fullPage: true });
  const labels = (await (await fetch(`${server.base}/v1/episodes/ep-console-1/labels`, { headers: { authorization: `Bearer ${KEYS.operator}` } })).json()) as { items: unknown[] };
  t.match(labels.items, [{ label: 'failure', failure_mode: 'collision_knockout', explanation: HOSTILE_NOTE, by: 'ana', agreed: true }], 'stored');

  t.equal(await page.evaluate(() => window.__xss), undefined, 'no client or model string ran as script');
  t.equal(await page.locator('main script, main img:not([data-testid=frames-image])').count(), 0, 'no markup from data in the page');
  t.same(errors, [], 'no script errors');
  const metrics = await (await fetch(`${server.base}/metrics`)).text();
  t.match(metrics, /armor_labels_total\{agreed="true"\} 1/);

  // The label, through export, into an eval.
  const env = { ...process.env, ARMOR_DATA_DIR: server.config.store.dataDir, ARMOR_INTRA_OP_THREADS: '1', LOG_LEVEL: 'silent' };
  const out = path.join(dir, 'export');
  const cli = path.join(ROOT, 'dist', 'src', 'cli.js');
  const exported = await run(process.execPath, [cli, 'export', '--out', out, '--labelled-only'], { env });
  t.match(exported.stdout, /exported 1 episodes .* 1 labelled by operators \(1 with an explanation\)/);
  const manifest = (await readFile(path.join(out, 'manifest.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(manifest, [
    { id: 'ep-console-1', kind: 'video', file: 'ep-console-1.mp4', task: HOSTILE_TASK, label: 'failure', failure_mode: 'collision_knockout', explanation: HOSTILE_NOTE, dense: true, label_source: 'operator', cell_id: 'cell-7' },
  ]);
  t.same(await readFile(path.join(out, 'ep-console-1.mp4')), await readFile(path.join(FIXTURES, 'eval-small/eval-000008.mp4')), 'the upload, byte for byte');
  const evalOut = path.join(dir, 'eval');
  const evaluated = await run(process.execPath, [cli, 'eval', '--data', out, '--out', evalOut], { env });
  t.match(evaluated.stdout, /detection accuracy 1\.000/);
  const report = JSON.parse(await readFile(path.join(evalOut, 'eval-report.json'), 'utf8')) as Record<string, unknown>;
  t.match(report, { episodes: 1, analysed: 1, operator_labelled: 1, skipped_model_labelled: 0 });
  t.match(await readFile(path.join(evalOut, 'eval-report.md'), 'utf8'), /1 labelled by operators/);
});

const CELLS = 10;
const STORED = 10_000;

/** Copies of one real stored episode, spread over a week and ten cells, written straight into the SQLite file. */
function seedEpisodes(file: string, templateId: string, now: number): void {
  const db = new BetterSqlite3(file);
  db.pragma('busy_timeout = 5000');
  try {
    const template = db.prepare('SELECT * FROM episodes WHERE episode_id = ?').get(templateId) as Record<string, unknown>;
    const result = JSON.parse(String(template.result)) as Record<string, unknown>;
    const columns = Object.keys(template);
    const insert = db.prepare(`INSERT INTO episodes (${columns.join(', ')}) VALUES (${columns.map((c) => `@${c}`).join(', ')})`);
    db.transaction(() => {
      for (let i = 1; i < STORED; i++) {
        const id = `seed-${String(i).padStart(5, '0')}`;
        const label = i % 3 === 0 ? 'failure' : 'success';
        const flagged = i % 7 === 0;
        const at = now - 60_000 - i * 60_000;
        insert.run({
          ...template,
          id: `cell-${i % CELLS}/${id}`,
          episode_id: id,
          cell_id: `cell-${i % CELLS}`,
          cell_key: `cell-${i % CELLS}`,
          label,
          needs_review: flagged ? 1 : 0,
          result: JSON.stringify({
            ...result,
            episode_id: id,
            cell_id: `cell-${i % CELLS}`,
            detection: { ...(result.detection as object), label, failure: label === 'failure' },
            needs_review: flagged,
            review_reasons: flagged ? ['unfamiliar_input'] : [],
          }),
          created_at: at,
          updated_at: at,
          started_at: at,
          finished_at: at,
        });
      }
    })();
  } finally {
    db.close();
  }
}

t.test('the console pages through 10,000 stored episodes on indexed queries', async (t) => {
  const server = await startTestServer();
  t.teardown(server.close);
  await postEpisode(server.base, { task: 'pick the red box', cell_id: 'cell-0', episode_id: 'seed-00000', options: OPTIONS }, 'eval-small/eval-000003.mp4');
  const file = path.join(server.config.store.dataDir, 'armor.sqlite');
  seedEpisodes(file, 'seed-00000', Date.now());

  const browser = await launch(t);
  const { page, errors } = await consolePage(browser, server.base, null);
  await page.waitForSelector('[data-testid=list-status]:has-text("50 episodes")');
  t.equal(await page.locator('[data-testid=episode-list] tbody tr').count(), 50, 'one page of 50');
  const firstPage = await page.locator('[data-testid=episode-list] tbody tr').first().getAttribute('data-episode');
  t.equal(firstPage, 'seed-00000', 'newest first');
  await page.click('[data-testid=older]');
  await page.waitForSelector('[data-testid=list-status]:has-text("older page")');
  t.equal(await page.locator('[data-testid=episode-list] tbody tr').first().getAttribute('data-episode'), 'seed-00050', 'the next 50');
  await page.click('[data-testid=newer]');
  await page.waitForSelector('[data-episode="seed-00000"]');

  await page.goto(`${server.base}/console/#/?cell_id=cell-3&label=failure&range=7d`);
  await page.waitForSelector('[data-testid=list-status]:has-text("50 episodes")');
  const cells = await page.locator('[data-testid=episode-list] tbody tr td:nth-child(3)').allTextContents();
  t.same([...new Set(cells)], ['cell-3'], 'filtered by cell');
  await page.waitForSelector('[data-testid=failure-chart] polyline');
  t.equal(await page.locator('[data-testid=failure-chart] polyline').count(), 1, "one line: the filtered cell's");
  t.match(await page.textContent('[data-testid=failure-chart] .legend'), /cell-3: \d+\/\d+ failed/);

  await page.goto(`${server.base}/console/#/?needs_review=true`);
  await page.waitForSelector('[data-testid=list-status]:has-text("50 episodes")');
  const reviews = await page.locator('[data-testid=episode-list] tbody tr td[data-testid=review]').allTextContents();
  t.same([...new Set(reviews)], ['unfamiliar_input'], 'filtered to answers flagged needs_review, their reasons shown');
  t.equal(await page.inputValue('select[name=needs_review]'), 'true', 'the filter shows in the form');
  t.same(errors, [], 'no script errors');

  // The list's queries read an index in the list's order, whatever the filter: no table scan, no sort.
  const conn = new BetterSqlite3(file, { readonly: true });
  t.teardown(() => conn.close());
  const kysely = new Kysely<Database>({ dialect: new SqliteDialect({ database: new BetterSqlite3(file, { readonly: true }) }) });
  t.teardown(() => kysely.destroy());
  const filters: EpisodeFilter[] = [
    { limit: 50 },
    { limit: 50, cellIds: ['cell-3'] },
    { limit: 50, label: 'failure' },
    { limit: 50, humanLabel: 'any' },
    { limit: 50, needsReview: true },
    { limit: 50, status: 'succeeded', since: Date.now() - 86_400_000 },
  ];
  for (const filter of filters) {
    const { sql, parameters } = episodeListQuery(kysely, filter).compile();
    const plan = (conn.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...(parameters as unknown[])) as { detail: string }[]).map((r) => r.detail);
    const indexed = plan.some((d) => /USING (COVERING )?INDEX/.test(d)) && !plan.some((d) => /^SCAN episodes$/.test(d) || /TEMP B-TREE/.test(d));
    t.ok(indexed, `${JSON.stringify(filter)}: ${plan.join('; ')}`);
  }
});
