// Starting and stopping everything below HTTP: ffmpeg, the bundle (verified once), the pool.
import path from 'node:path';
import type { Config } from '../config.js';
import { ArmorTokenizer } from '../runtime/tokenizer.js';
import { MIN_FFMPEG_MAJOR, resolveFfmpeg, type FfmpegTools } from '../media/index.js';
import { verifyBundle, type VerifiedBundle } from '../runtime/bundle.js';
import type { EngineSwitches } from '../engine/armor-engine.js';
import { EnginePool, type PoolOptions } from './engine-pool.js';
import { EpisodePipeline } from './episode-pipeline.js';

export { EpisodePipeline } from './episode-pipeline.js';
export type { EpisodeMedia, EpisodeRequest } from './episode-pipeline.js';
export { PipelineError } from './errors.js';
export { sniffFile, sniffMedia, SNIFF_BYTES } from '../media/index.js';
export { parseRequestOptions, seedForEpisode, type RequestOptions } from './options.js';
export type { EpisodeResponse } from './response.js';

export interface Runtime {
  pipeline: EpisodePipeline;
  pool: EnginePool;
  tools: FfmpegTools;
  bundle: VerifiedBundle;
  close(): Promise<void>;
}

export async function startRuntime(
  config: Config,
  log: { info: (obj: object, msg: string) => void; warn: (obj: object, msg: string) => void },
  switches: EngineSwitches = { prefixReuse: true, batching: true, inGraph: config.roundGraph === 'auto' ? 'gpu' : config.roundGraph === 'on' },
  failpoints?: PoolOptions['failpoints'],
): Promise<Runtime> {
  const tools = await resolveFfmpeg(process.env, { decoder: config.mediaDecoder, workers: config.maxMediaProcesses });
  log.info({ ffmpeg: tools.ffmpeg, version: tools.version, source: tools.source, policy: tools.policy }, 'ffmpeg resolved');
  if (tools.policy === 'distribution-maintained') {
    log.warn({ version: tools.version }, `ffmpeg is older than ${MIN_FFMPEG_MAJOR}.0; accepted because the distribution backports its security fixes. Prefer 6.0 or newer.`);
  }
  try {
    const bundle = await verifyBundle(config.bundleDir);
    log.info({ dir: bundle.dir, name: bundle.manifest.name, version: bundle.manifest.version, bytes: bundle.bytes }, 'bundle verified');
    const pool = await EnginePool.start({
      bundleDir: config.bundleDir,
      providers: config.providers,
      deviceId: config.deviceId,
      intraOpThreads: config.intraOpThreads,
      switches,
      workers: config.workers,
      maxQueue: config.maxQueue,
      watchdogGraceMs: config.watchdogGraceMs,
      bootTimeoutMs: config.workerBootTimeoutMs,
      failpoints,
    });
    pool.onWorkerExit = (err) => log.warn({ err: err.message }, 'engine worker exited; starting a new one');
    for (const attempt of pool.status.fallbacks) log.warn(attempt, `execution provider ${attempt.provider} could not start; fell back`);
    log.info({ provider: pool.status.provider, requested: config.providers, workers: pool.size }, 'engine workers ready');
    if (config.providers.includes('tensorrt')) {
      const t = config.tensorrt;
      log.info({ fp16: t.fp16, engineCache: t.engineCache, timingCache: t.timingCache, maxWorkspaceBytes: t.maxWorkspaceBytes,
        layerNormFp32Fallback: t.layerNormFp32Fallback, environment: t.environment }, 'TensorRT settings (ORT_TENSORRT_*)');
      for (const [what, cache] of [['engine', t.engineCache], ['timing', t.timingCache]] as const) {
        if (cache.enabled && cache.writable === false) {
          log.warn({ path: cache.path }, `the TensorRT ${what} cache directory is not writable: every start rebuilds what it would hold`);
        }
      }
    }
    const tokenizer = await ArmorTokenizer.load(path.join(bundle.dir, 'tokenizer.json'), bundle.manifest);
    const pipeline = new EpisodePipeline(config, bundle.manifest, pool, tools, tokenizer);
    const close = async (): Promise<void> => {
      await pool.close();
      await tools.inProcess?.close();
    };
    return { pipeline, pool, tools, bundle, close };
  } catch (err) {
    await tools.inProcess?.close(); // no media worker outlives a failed start
    throw err;
  }
}
export { loadEpisodeMedia, type MediaStageDeps, type LoadedMedia, type MediaMeta } from './media-stage.js';
