// Configuration is validated once at start-up and every bad value names its variable.
import t from 'tap';
import os from 'node:os';
import { ConfigError, loadConfig } from '../src/config.js';

t.test('defaults serve the committed bundle on 8080 with the CPU provider', async (t) => {
  const c = loadConfig({});
  t.equal(c.port, 8080);
  t.same(c.providers, ['cpu']);
  t.match(c.bundleDir, /models\/armor-tiny$/);
  t.equal(c.workers, 1);
});

t.test('provider lists, limits and caps parse', async (t) => {
  const c = loadConfig({ ARMOR_PROVIDERS: 'tensorrt, cuda ,cpu', ARMOR_MAX_VIDEO_SECONDS: '5', ARMOR_MAX_TRAJECTORIES: '4' });
  t.same(c.providers, ['tensorrt', 'cuda', 'cpu']);
  t.equal(c.media.maxDurationSec, 5);
  t.equal(c.caps.maxTrajectories, 4);
});

t.test('bad values stop start-up with the variable named', async (t) => {
  t.throws(() => loadConfig({ PORT: 'eighty' }), new ConfigError('PORT=eighty is invalid: expected an integer from 0 to 65535'));
  t.throws(() => loadConfig({ ARMOR_PROVIDERS: 'cuda,tpu' }), { message: /ARMOR_PROVIDERS names tpu/ });
  t.throws(() => loadConfig({ ARMOR_WORKERS: '0' }), { message: /ARMOR_WORKERS=0/ });
  t.throws(() => loadConfig({ LOG_LEVEL: 'loud' }), { message: /LOG_LEVEL=loud/ });
  t.throws(() => loadConfig({ ARMOR_ROUND_GRAPH: 'yes' }), { message: /ARMOR_ROUND_GRAPH=yes is invalid: expected one of auto, on, off/ });
  t.throws(() => loadConfig({ ARMOR_MAX_TRAJECTORIES: '9' }), { message: /ARMOR_MAX_TRAJECTORIES/ });
  // A budget under one frame of the largest video accepted could never decode it.
  t.throws(() => loadConfig({ ARMOR_MEDIA_SOURCE_DECODE_BYTES: '1000000' }), { message: /ARMOR_MEDIA_SOURCE_DECODE_BYTES=1000000 is less than one frame .*24883200 bytes/ });
  t.equal(loadConfig({ ARMOR_MEDIA_SOURCE_DECODE_BYTES: '1000000', ARMOR_MAX_VIDEO_WIDTH: '640', ARMOR_MAX_VIDEO_HEIGHT: '480' }).media.maxSourceDecodeBytes, 1000000);
});

t.test('media retention: days, hours or minutes; 0 keeps nothing; nonsense stops start-up', async (t) => {
  t.equal(loadConfig({}).store.mediaRetentionMs, 7 * 86_400_000, 'a week by default');
  t.equal(loadConfig({ ARMOR_MEDIA_RETENTION: '36h' }).store.mediaRetentionMs, 36 * 3_600_000);
  t.equal(loadConfig({ ARMOR_MEDIA_RETENTION: '90m' }).store.mediaRetentionMs, 90 * 60_000);
  t.equal(loadConfig({ ARMOR_MEDIA_RETENTION: '0' }).store.mediaRetentionMs, 0);
  for (const bad of ['7', '1w', '-1d', '400d', '0d', '1.5d']) {
    t.throws(() => loadConfig({ ARMOR_MEDIA_RETENTION: bad }), { message: /ARMOR_MEDIA_RETENTION must be 0 or a duration/ }, bad);
  }
});

t.test('TensorRT settings come from ORT_TENSORRT_* and are checked at start-up', async (t) => {
  const none = loadConfig({}).tensorrt;
  t.match(none, { fp16: false, engineCache: { enabled: false, path: null }, timingCache: { enabled: false, path: null }, maxWorkspaceBytes: null });
  const dir = os.tmpdir();
  const gpu = loadConfig({
    ARMOR_PROVIDERS: 'tensorrt,cuda,cpu',
    ORT_TENSORRT_FP16_ENABLE: '1',
    ORT_TENSORRT_ENGINE_CACHE_ENABLE: '1',
    ORT_TENSORRT_CACHE_PATH: dir,
    ORT_TENSORRT_TIMING_CACHE_ENABLE: '1',
    ORT_TENSORRT_MAX_WORKSPACE_SIZE: '4294967296',
    ORT_TENSORRT_LAYER_NORM_FP32_FALLBACK: '1',
  });
  t.same(gpu.providers, ['tensorrt', 'cuda', 'cpu']);
  t.match(gpu.tensorrt, {
    fp16: true,
    engineCache: { enabled: true, path: dir, writable: true },
    timingCache: { enabled: true, path: dir, writable: true }, // the timing cache follows the engine cache without its own path
    maxWorkspaceBytes: 4294967296,
    layerNormFp32Fallback: true,
  });
  t.equal(loadConfig({ ORT_TENSORRT_ENGINE_CACHE_ENABLE: '1', ORT_TENSORRT_CACHE_PATH: '/proc/nope' }).tensorrt.engineCache.writable, false);
  // onnxruntime parses these with std::stoi: "true" would throw inside session creation.
  t.throws(() => loadConfig({ ORT_TENSORRT_FP16_ENABLE: 'true' }), { message: /ORT_TENSORRT_FP16_ENABLE=true is invalid/ });
  t.throws(() => loadConfig({ ORT_TENSORRT_MAX_WORKSPACE_SIZE: '4G' }), { message: /ORT_TENSORRT_MAX_WORKSPACE_SIZE=4G/ });
});

t.test('metric cells: the operator lists them (ARMOR_METRIC_CELLS), plus the cells of API keys', async (t) => {
  t.same(loadConfig({}).metricCells, []);
  t.same(loadConfig({ ARMOR_METRIC_CELLS: 'cell-2, cell-1,cell-2' }).metricCells, ['cell-1', 'cell-2']);
  t.throws(() => loadConfig({ ARMOR_METRIC_CELLS: 'cell 1' }), { message: /ARMOR_METRIC_CELLS names "cell 1"/ });
  t.throws(() => loadConfig({ ARMOR_METRIC_CELLS: 'cell-1,other' }), { message: /ARMOR_METRIC_CELLS names "other"/ });
});
