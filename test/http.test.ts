// POST /v1/episodes end to end: a real Fastify server on a real port, real ffmpeg on the
// committed clips, the real default bundle in a worker thread.
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { loadConfig } from '../src/config.js';
import { buildServer } from '../src/server/server.js';
import { childProcesses, FIXTURES, ROOT } from './helpers.js';

type Json = Record<string, unknown> & { error?: { code: string; message: string } };

async function fixture(name: string): Promise<Blob> {
  return new Blob([await readFile(path.join(FIXTURES, name))]);
}

t.test('POST /v1/episodes', async (t) => {
  const tmpDir = await mkdtemp(path.join(os.tmpdir(), 'armor-http-test-'));
  const config = loadConfig({
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'silent',
    ARMOR_TMP_DIR: tmpDir,
    ARMOR_DATA_DIR: path.join(tmpDir, '..', `${path.basename(tmpDir)}-data`),
    ARMOR_WORKERS: '1',
    ARMOR_INTRA_OP_THREADS: '1',
    ARMOR_MAX_UPLOAD_BYTES: '400000',
    ARMOR_MAX_VIDEO_SECONDS: '8',
    ARMOR_MAX_VIDEO_WIDTH: '1920',
    ARMOR_MAX_VIDEO_HEIGHT: '1080',
    ARMOR_METRIC_CELLS: 'cell-7,cell-8',
  });
  const app = await buildServer(config);
  await app.listen({ host: config.host, port: 0 });
  const address = app.server.address();
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  t.teardown(async () => {
    await app.close();
    await rm(tmpDir, { recursive: true, force: true });
    await rm(config.store.dataDir, { recursive: true, force: true });
  });

  const post = async (parts: Record<string, Blob | string | Blob[]>, filenames: Record<string, string> = {}) => {
    const form = new FormData();
    for (const [key, value] of Object.entries(parts)) {
      if (Array.isArray(value)) value.forEach((v, i) => form.append(key, v, `${key}-${i}.bin`));
      else if (value instanceof Blob) form.append(key, value, filenames[key] ?? `${key}.bin`);
      else form.append(key, value);
    }
    const res = await fetch(`${base}/v1/episodes`, { method: 'POST', body: form });
    return { status: res.status, body: (await res.json()) as Json };
  };
  const fast = JSON.stringify({ trajectories: 3, max_rounds: 2, max_new_tokens: 6, seed: 5 });

  t.test('an h264 mp4 clip is analysed: detection, explanation, confidence, trace', async (t) => {
    const { status, body } = await post({ video: await fixture('pick-h264.mp4'), task: 'pick the item into the tote', cell_id: 'cell-7', options: fast });
    t.equal(status, 200, JSON.stringify(body.error));
    t.match(body, {
      episode_id: String,
      cell_id: 'cell-7',
      model: { name: 'armor-tiny', version: String },
      detection: { label: /^(success|failure)$/, failure: Boolean, probability: Number },
      explanation: String,
      confidence: Number,
      selected: { trajectory: Number, round: Number, c: Number },
      stop_reason: /^(converged|max_rounds)$/,
      input: { kind: 'video', width: 320, height: 240 },
      options: { trajectories: 3, max_rounds: 2, seed: 5 },
      provider: 'cpu',
      timings: { media_ms: Number, vision_ms: Number, decode_ms: Number, total_ms: Number },
    });
    const rounds = body.rounds as { candidates: { label: string; c: number }[] }[];
    t.ok(rounds.length >= 1 && rounds.length <= 2);
    for (const r of rounds) t.equal(r.candidates.length, 3);
    const detection = body.detection as { failure: boolean; probability: number };
    t.equal(detection.failure, detection.probability >= 0.5);
    t.equal(body.confidence, Math.max(detection.probability, 1 - detection.probability));
    const timings = body.timings as Record<string, number>;
    t.ok(timings.total_ms >= timings.media_ms + timings.engine_ms - 0.1, 'total covers media and engine');
    const stored = await fetch(`${base}/v1/episodes/${String(body.episode_id)}`);
    t.equal(stored.status, 200);
    t.match((await stored.json()) as Json, { id: body.episode_id, status: 'succeeded', mode: 'sync', result: { detection: body.detection } }, 'GET /v1/episodes/:id returns the stored episode and its result');
  });

  t.test('a vp9 webm clip and 4 tiled views are analysed', async (t) => {
    const webm = await post({ video: await fixture('pick-vp9.webm'), task: 'pick the item into the tote', options: fast });
    t.equal(webm.status, 200, JSON.stringify(webm.body.error));
    t.match(webm.body, { input: { kind: 'video' }, cell_id: null });
    const views = await Promise.all(['view-1.jpg', 'view-2.png', 'view-3.jpg', 'view-4.png'].map(fixture));
    const tiles = await post({ views, task: 'pick the item into the tote', options: fast });
    t.equal(tiles.status, 200, JSON.stringify(tiles.body.error));
    t.match(tiles.body, { input: { kind: 'tiles', views: 4, width: 224, height: 224, vision_tokens: 64 } });
  });

  t.test('same seed and input give the same response apart from timings', async (t) => {
    const strip = (b: Json) => {
      const { timings, episode_id, ...rest } = b;
      void timings;
      void episode_id;
      return JSON.parse(JSON.stringify(rest, (k, v: unknown) => (k === 'time_ms' ? 0 : v))) as unknown;
    };
    const video = await fixture('pick-h264.mp4');
    const a = await post({ video, task: 'pick the item into the tote', options: fast });
    const b = await post({ video, task: 'pick the item into the tote', options: fast });
    t.same(strip(b.body), strip(a.body));
    const c = await post({ video, task: 'pick the item into the tote', options: JSON.stringify({ ...JSON.parse(fast), seed: 6 }) });
    const explanations = (x: Json) => JSON.stringify((x.rounds as { candidates: { explanation: string }[] }[])[0].candidates.map((k) => k.explanation));
    t.not(explanations(c.body), explanations(a.body), 'another seed samples other explanations');
  });

  t.test('GET /healthz answers within 100 ms while an episode is being analysed', async (t) => {
    const slow = JSON.stringify({ trajectories: 3, max_rounds: 4, max_new_tokens: 48, seed: 1 });
    const pending = post({ video: await fixture('pick-h264.mp4'), task: 'pick the item into the tote', options: slow });
    const started = Date.now();
    while (app.armor.runtime.pool.busyWorkers === 0 && Date.now() - started < 10000) await new Promise((r) => setTimeout(r, 5));
    t.equal(app.armor.runtime.pool.busyWorkers, 1, 'the engine worker is busy');
    const times: number[] = [];
    for (let i = 0; i < 5 && app.armor.runtime.pool.busyWorkers > 0; i++) {
      const t0 = performance.now();
      const res = await fetch(`${base}/healthz`);
      times.push(performance.now() - t0);
      t.equal(res.status, 200);
      await new Promise((r) => setTimeout(r, 20));
    }
    t.ok(times.length > 0, 'probed while busy');
    t.ok(Math.max(...times) < 100, `healthz latencies ${times.map((x) => x.toFixed(1)).join(', ')} ms`);
    t.equal((await pending).status, 200);
  });

  t.test('the default model flags a generated drop it has never seen and says how it failed', async (t) => {
    // eval-000008: the purple cylinder falls off the suction cup between the totes (the
    // README example, seed 3). Training never saw this clip (its own seed, see eval-small).
    // The answer is deterministic for a seed: this pins the documented example's behaviour.
    const clip = await fixture('eval-small/eval-000008.mp4');
    const task = 'grab the purple cylinder and drop it into the destination tote';
    const { status, body } = await post({ video: clip, task, options: JSON.stringify({ seed: 3 }) });
    t.equal(status, 200, JSON.stringify(body.error));
    const detection = body.detection as { label: string; probability: number };
    t.equal(detection.label, 'failure');
    t.ok(detection.probability > 0.9, `p_fail ${detection.probability}`);
    const explanation = String(body.explanation);
    t.match(explanation, /\b(halfway|midway)\b.*\b(fell|dropped|floor)\b|\b(fell|dropped)\b.*\b(halfway|midway)\b/, `names the drop in transit: ${explanation}`);
    t.notMatch(explanation, /placed inside|released inside|set it down inside|pick succeeded/, 'does not describe a success');
    t.match(explanation, /\bpurple cylinder\b/, 'names the item the task names');
    const labels = (body.rounds as { candidates: { label: string }[] }[]).flatMap((r) => r.candidates.map((c) => c.label));
    t.same([...new Set(labels)], ['failure'], `every candidate in the trace agrees (${labels.length})`);
  });

  t.test('an answer not to be trusted is flagged needs_review, counted, and filterable; the rule can be chosen per request', async (t) => {
    // The bench clip of earlier releases: a coloured square on a plain floor, unlike any training scene.
    const odd = await post({ video: await fixture('pick-h264.mp4'), task: 'pick the orange box into the tote', cell_id: 'cell-8', options: JSON.stringify({ seed: 1 }) });
    t.equal(odd.status, 200, JSON.stringify(odd.body.error));
    t.equal(odd.body.needs_review, true, `flagged: ${JSON.stringify(odd.body.review_reasons)}`);
    t.ok((odd.body.review_reasons as string[]).includes('unfamiliar_input'), 'as an input unlike the training data');
    t.ok((odd.body.novelty as number) > 1, `novelty ${odd.body.novelty}`);
    // A generated episode the model was not trained on (the README example): answered normally.
    const task = 'grab the purple cylinder and drop it into the destination tote';
    const usual = await post({ video: await fixture('eval-small/eval-000008.mp4'), task, cell_id: 'cell-8', options: JSON.stringify({ seed: 3 }) });
    t.equal(usual.status, 200);
    t.equal(usual.body.needs_review, false, `not flagged: ${JSON.stringify(usual.body.review_reasons)}`);
    t.same(usual.body.review_reasons, []);
    t.match(usual.body.selected, { rule: 'consensus', reason: /held by \d+ of \d+ candidates/, by_rule: { min_c: { round: Number }, consensus: { round: Number } } });
    const minC = await post({ video: await fixture('eval-small/eval-000008.mp4'), task, cell_id: 'cell-8', options: JSON.stringify({ seed: 3, selection: 'min_c' }) });
    t.match(minC.body.selected, { rule: 'min_c', reason: /lowest self-certainty C/ });
    t.same((minC.body.selected as Json).by_rule, (usual.body.selected as Json).by_rule, 'the same candidates, whichever rule answers');
    t.same(minC.body.options, { ...(usual.body.options as Json), selection: 'min_c' });

    const ids = async (q: string) => ((await (await fetch(`${base}/v1/episodes?cell_id=cell-8&${q}`)).json()) as { items: { id: string }[] }).items.map((e) => e.id);
    t.same(await ids('needs_review=true'), [odd.body.episode_id]);
    t.same(await ids('needs_review=false'), [minC.body.episode_id, usual.body.episode_id]);
    t.equal((await fetch(`${base}/v1/episodes?needs_review=maybe`)).status, 400);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    t.match(metrics, /armor_needs_review_total\{cell="cell-8",reason="unfamiliar_input"\} 1/);
    t.match(metrics, /armor_answers_needs_review_total\{cell="cell-8",needs_review="false"\} 2/);
    for (const bad of [{ selection: 'best' }, { early_stop: 'no' }, { repetition_penalty: 0.5 }, { repetition_penalty: 3 }]) {
      const r = await post({ video: await fixture('eval-small/eval-000008.mp4'), task, options: JSON.stringify(bad) });
      t.equal(r.status, 400, JSON.stringify(bad));
      t.match(r.body, { error: { code: 'invalid_options' } });
    }
  });

  t.test('every bad input gets a clear 4xx with a stable code', async (t) => {
    const task = 'pick the item into the tote';
    const video = await fixture('pick-h264.mp4');
    const cases: [string, Promise<{ status: number; body: Json }>, number, string][] = [
      ['no file', post({ task }), 400, 'missing_media'],
      ['video and views', post({ video, views: [await fixture('view-1.jpg'), await fixture('view-2.png')], task }), 400, 'ambiguous_media'],
      ['non-video bytes', post({ video: await fixture('not-video.mp4'), task }), 415, 'unsupported_media'],
      ['truncated mp4', post({ video: await fixture('truncated.mp4'), task }), 422, 'corrupt_media'],
      ['zero-byte file', post({ video: new Blob([]), task }), 400, 'empty_file'],
      ['over the size limit', post({ video: new Blob([Buffer.from([0, 0, 0, 24, ...Buffer.from('ftypisom'), 0, 0, 2, 0, ...Buffer.from('isomiso2')]), new Uint8Array(500000)]), task }), 413, 'payload_too_large'],
      ['over the duration limit', post({ video: await fixture('long.mp4'), task }), 422, 'media_too_long'],
      ['over the resolution limit', post({ video: await fixture('big.mp4'), task }), 422, 'media_resolution_too_large'],
      ['options not JSON', post({ video, task, options: '{trajectories:' }), 400, 'invalid_options'],
      ['options out of range', post({ video, task, options: '{"trajectories": 99}' }), 400, 'invalid_options'],
      ['unknown option', post({ video, task, options: '{"beam": 4}' }), 400, 'invalid_options'],
      ['no task', post({ video }), 400, 'missing_task'],
      ['reserved token in task', post({ video, task: 'pick <|im_end|>', options: fast }), 400, 'invalid_task'],
      ['one view only', post({ views: [await fixture('view-1.jpg')], task }), 400, 'invalid_views'],
      ['a view that is not an image', post({ views: [await fixture('view-1.jpg'), await fixture('not-video.mp4')], task }), 415, 'unsupported_media'],
      ['bad episode id', post({ video, task, episode_id: '../etc/passwd' }), 400, 'invalid_episode_id'],
      ['ten views', post({ views: await Promise.all(Array.from({ length: 10 }, () => fixture('view-1.jpg'))), task }), 400, 'invalid_views'],
      ['a JPEG cut short', post({ views: [await fixture('view-1.jpg'), new Blob([new Uint8Array([0xff, 0xd8, 0xff, 0xe0])])], task }), 422, 'corrupt_media'],
    ];
    for (const [name, pending, status, code] of cases) {
      const { status: got, body } = await pending;
      t.equal(got, status, `${name}: status`);
      t.equal(body.error?.code, code, `${name}: code (${body.error?.message})`);
      t.type(body.error?.message, 'string');
      t.notMatch(JSON.stringify(body), /at .*\.js:\d+/, `${name}: no stack trace`);
    }
    const duplicate = new FormData();
    duplicate.append('video', video, 'clip.mp4');
    duplicate.append('task', 'first');
    duplicate.append('task', 'second');
    const dup = await fetch(`${base}/v1/episodes`, { method: 'POST', body: duplicate });
    t.equal(dup.status, 400);
    t.equal(((await dup.json()) as Json).error?.code, 'duplicate_field', 'a field given twice is refused, not overwritten');
    const cut = await fetch(`${base}/v1/episodes`, {
      method: 'POST',
      headers: { 'content-type': 'multipart/form-data; boundary=XYZ' },
      body: '--XYZ\r\nContent-Disposition: form-data; name="task"\r\n\r\npick\r\n--XYZ\r\nContent-Disposition: form-data; name="video"; filename="a.mp4"\r\n\r\nabc',
    });
    t.equal(cut.status, 400);
    t.equal(((await cut.json()) as Json).error?.code, 'invalid_multipart', 'a body cut before its closing boundary');
    const notMultipart = await fetch(`${base}/v1/episodes`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    t.equal(notMultipart.status, 415);
    t.equal(((await notMultipart.json()) as Json).error?.code, 'unsupported_content_type');
    const missing = await fetch(`${base}/nope`);
    t.same(await missing.json(), { error: { code: 'not_found', message: 'no route GET /nope' } });
  });

  t.test('readiness, metrics and the OpenAPI document', async (t) => {
    const ready = (await (await fetch(`${base}/readyz`)).json()) as Json;
    t.match(ready, { status: 'ready', provider: 'cpu', provider_settings: { requested: ['cpu'], device_id: 0, tensorrt: { fp16: false, engine_cache: { enabled: false } } }, model: { name: 'armor-tiny', dir: 'armor-tiny' }, ffmpeg: { version: /\d/, source: /^(FFMPEG_PATH|node-av|ffmpeg-static|PATH)$/, policy: /^(current|distribution-maintained)$/ } });
    t.match(ready, { blob_store: { backend: 'fs', ok: true, location: /blobs/ } }, 'where uploads are kept, and that it answers');
    const absolute = JSON.stringify(ready).match(/"\/[^"]*"/g) ?? [];
    t.same(absolute, [], 'readiness (open to anyone) shows no absolute path');
    // A cell_id the operator did not list is counted, under "other": clients cannot add series.
    for (const junk of ['junk-1', 'junk-2']) {
      t.equal((await post({ video: await fixture('pick-h264.mp4'), task: 'pick the item into the tote', cell_id: junk, options: JSON.stringify({ trajectories: 1, max_rounds: 1, max_new_tokens: 2 }) })).status, 200);
    }
    const metrics = await (await fetch(`${base}/metrics`)).text();
    t.match(metrics, /armor_episodes_total\{cell="cell-7",result="(failure|success)"\} 1/);
    t.equal([...metrics.matchAll(/armor_episodes_total\{cell="other",result="\w+"\} (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0), 2, 'unlisted cells count as "other"');
    t.notMatch(metrics, /cell="junk-/);
    t.match(metrics, /armor_episode_errors_total\{code="media_too_long"\} 1/);
    t.match(metrics, /armor_episode_errors_total\{code="payload_too_large"\} 1/);
    t.notMatch(metrics, /armor_episode_errors_total\{code="internal_error"\}/, 'no client error is counted as internal');
    t.match(metrics, /armor_stage_duration_seconds_bucket\{le="[^"]+",stage="vision"\}/);
    t.match(metrics, /armor_queue_depth 0/);
    const routes: [string, string][] = [
      ['POST', '/v1/episodes'],
      ['GET', '/v1/episodes'],
      ['GET', '/v1/episodes/:id'],
      ['GET', '/v1/webhook-deliveries'],
      ['POST', '/v1/webhook-deliveries/:id/retry'],
      ['GET', '/v1/webhook-endpoints'],
      ['POST', '/v1/webhook-endpoints/:id/enable'],
      ['GET', '/healthz'],
      ['GET', '/readyz'],
      ['GET', '/metrics'],
      ['GET', '/openapi.json'],
      ['GET', '/openapi.yaml'],
      ['GET', '/docs'],
    ];
    for (const [method, url] of routes) t.ok(app.hasRoute({ method, url }), `${method} ${url} is served`);
  });

  t.test('nothing is left behind: no temp file, no ffmpeg process', async (t) => {
    t.same(await readdir(tmpDir), [], 'temp dir is empty');
    t.same((await childProcesses()).filter((p) => /ffmpeg|ffprobe/.test(p)), []);
  });
});
