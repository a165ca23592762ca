// The CLI: `analyze` prints the API's JSON without HTTP; `serve` starts, answers and shuts
// down gracefully on SIGTERM.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { FIXTURES, ROOT } from './helpers.js';

const CLI = path.join(ROOT, 'dist', 'src', 'cli.js');

function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ARMOR_INTRA_OP_THREADS: '1', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

t.test('analyze prints the result JSON for a video and for views', async (t) => {
  const video = await run(['analyze', path.join(FIXTURES, 'pick-h264.mp4'), '--task', 'pick the item into the tote', '--seed', '3', '--options', '{"max_new_tokens":6,"max_rounds":2}', '--cell', 'cell-2', '--compact', '--quiet']);
  t.equal(video.code, 0, video.stderr);
  const result = JSON.parse(video.stdout) as Record<string, unknown>;
  t.match(result, { cell_id: 'cell-2', model: { name: 'armor-tiny' }, detection: { label: String }, options: { seed: 3, max_rounds: 2 }, input: { kind: 'video' } });
  const views = await run(['analyze', '--views', path.join(FIXTURES, 'view-1.jpg'), path.join(FIXTURES, 'view-2.png'), '--task', 'pick the item', '--options', '{"max_new_tokens":4,"max_rounds":1}', '--quiet']);
  t.equal(views.code, 0, views.stderr);
  t.match(JSON.parse(views.stdout), { input: { kind: 'tiles', views: 2 } });
});

t.test('analyze reports bad input with its error code and a non-zero exit', async (t) => {
  const bad = await run(['analyze', path.join(FIXTURES, 'truncated.mp4'), '--task', 'pick', '--quiet']);
  t.equal(bad.code, 1);
  t.match(bad.stderr, /corrupt_media/);
  const usage = await run(['analyze']);
  t.equal(usage.code, 2);
  t.match(usage.stderr, /Usage:/);
  const config = await run(['analyze', path.join(FIXTURES, 'pick-h264.mp4'), '--task', 'x'], { ARMOR_WORKERS: 'many' });
  t.equal(config.code, 78);
  t.match(config.stderr, /invalid_config: ARMOR_WORKERS=many/);
});

t.test('check verifies the bundle and lists the graphs it opened', async (t) => {
  const r = await run(['check']);
  t.equal(r.code, 0, r.stderr);
  t.match(JSON.parse(r.stdout), {
    ok: true,
    name: 'armor-tiny',
    provider: 'cpu',
    graphs: ['decode_round', 'decoder_model_merged', 'detection_head', 'embed_tokens', 'vision_encoder'],
  });
});

t.test('every subcommand answers --help', async (t) => {
  for (const command of ['serve', 'analyze', 'eval', 'check']) {
    const r = await run([command, '--help']);
    t.equal(r.code, 0, `${command} --help exits 0`);
    t.match(r.stdout, /Usage:/);
  }
});

t.test('serve answers /healthz and exits cleanly on SIGTERM', async (t) => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'armor-cli-serve-'));
  t.teardown(() => rm(dataDir, { recursive: true, force: true }));
  const child = spawn(process.execPath, [CLI, 'serve'], { env: { ...process.env, PORT: '0', HOST: '127.0.0.1', ARMOR_INTRA_OP_THREADS: '1', ARMOR_DATA_DIR: dataDir } });
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no listen line in ${out}`)), 30000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"msg":"Server listening at http:\/\/127\.0\.0\.1:(\d+)"/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  const health = await fetch(`http://127.0.0.1:${port}/healthz`);
  t.equal(health.status, 200);
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'graceful exit');
  t.match(out, /"msg":"draining"/);
  t.match(out, /"msg":"stopped"/);
});
