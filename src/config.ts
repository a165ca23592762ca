// All configuration, from the environment, typed and validated once at start-up.
// Every variable is documented in README.md ("Configuration").
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { EXECUTION_PROVIDERS, type ExecutionProviderName } from './runtime/sessions.js';
import { tensorrtSettings, TensorrtSettingsError, type TensorrtSettings } from './runtime/tensorrt-settings.js';
import { ApiKeysError, isLoopback, parseApiKeys, type ApiKey } from './server/api-keys.js';
import type { BlobConfig } from './blobs/index.js';
import { parseEndpointsFile, parseSchedule, singleEndpoint, WebhookConfigError, type WebhookEndpoint } from './webhooks/index.js';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Room in a POST's Content-Length for the fields and multipart framing beside the media. */
export const FORM_OVERHEAD_BYTES = 1024 * 1024;

export interface Config {
  /** Who may call the API: API keys, or nobody checked ('none', loopback-only unless said explicitly). */
  auth: { mode: 'keys'; keys: ApiKey[] } | { mode: 'none'; explicit: boolean };
  /**
   * The cells that get their own `cell` label on armor_episodes_total: ARMOR_METRIC_CELLS plus
   * the cells API keys are limited to. Any other cell_id counts as "other", so clients cannot
   * add series; empty means every episode counts as "other".
   */
  metricCells: string[];
  /** Requests per minute per API key (per client address without keys), on the /v1 routes. */
  rateLimitPerMin: number;
  host: string;
  port: number;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  bundleDir: string;
  providers: ExecutionProviderName[];
  /** ORT_TENSORRT_* as the TensorRT execution provider will read them (validated even when unused). */
  tensorrt: TensorrtSettings;
  deviceId: number;
  workers: number;
  intraOpThreads: number;
  maxQueue: number;
  requestTimeoutMs: number;
  /** Media bytes of one episode (every file together). */
  maxUploadBytes: number;
  /** Upload bytes all POSTs in flight may reserve or carry at once. */
  maxUploadBytesInFlight: number;
  /** Async episodes queued or running, in total and per API key, before POSTs get 503 backlog_full. */
  maxBacklog: number;
  maxBacklogPerKey: number;
  /** Failed authentications (missing or wrong key) per client address and minute before 429. */
  authFailuresPerMin: number;
  maxLabelsPerEpisode: number;
  /** GET .../frames: renders at once, how long one may wait for a slot, the on-disk cache's size. */
  frames: { maxInFlight: number; waitMs: number; cacheBytes: number };
  maxTaskChars: number;
  media: {
    maxDurationSec: number;
    maxWidth: number;
    maxHeight: number;
    maxSourceFrames: number;
    /**
     * preprocessing.resize pil_bicubic decodes frames at their own size: at most this many bytes
     * of them at once per decode (more frames are decoded in groups and resized as each ends).
     */
    maxSourceDecodeBytes: number;
    /** Vision tokens one episode may give the model (frames and size after preprocessing). */
    maxVisionTokens: number;
    timeoutMs: number;
  };
  caps: { maxTrajectories: number; maxRounds: number; maxNewTokens: number; maxDeadlineMs: number };
  /** ffmpeg processes (or node-av workers) decoding at once; more media work waits (and counts against admission). */
  maxMediaProcesses: number;
  /** auto: FFMPEG_PATH, else node-av when installed, else ffmpeg-static, else PATH. cli skips node-av; node-av requires it. */
  mediaDecoder: 'auto' | 'cli' | 'node-av';
  /** Rounds in one call of onnx/decode_round.onnx: auto = on GPU providers, when the bundle has it. */
  roundGraph: 'auto' | 'on' | 'off';
  /** A running episode this long past its deadline means its worker hangs: it is replaced. */
  watchdogGraceMs: number;
  workerBootTimeoutMs: number;
  /** After SIGTERM: refuse new work but keep listening this long before closing. */
  drainDelayMs: number;
  tmpDir: string;
  store: {
    /** SQLite lives here (and nothing else) unless databaseUrl is set. */
    dataDir: string;
    databaseUrl?: string;
    /** How long a claim on an async episode lasts without renewal (a dead replica's work is re-claimed after it). */
    leaseMs: number;
    pollMs: number;
    /** Runs of one async episode before it is failed (a worker crash or lost lease counts as a run). */
    maxAttempts: number;
    /** How long a finished episode's upload is kept for the console and export (0: not kept). */
    mediaRetentionMs: number;
  };
  /** Where uploads live: a directory (default, under the data dir) or an S3-compatible bucket. */
  blobs: BlobConfig;
  /**
   * A blob no episode refers to is removed only once it has been unused this long: an upload
   * between storing its blob and writing its episode row is never collected under it.
   */
  blobGraceMs: number;
  webhooks: {
    endpoints: WebhookEndpoint[];
    schedule: number[];
    timeoutMs: number;
  };
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name}=${raw} is invalid: expected an integer from ${min} to ${max}`);
  }
  return value;
}

function oneOf<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!(allowed as readonly string[]).includes(raw)) throw new ConfigError(`${name}=${raw} is invalid: expected one of ${allowed.join(', ')}`);
  return raw as T;
}

function tensorrtConfig(env: Env): TensorrtSettings {
  try {
    return tensorrtSettings(env);
  } catch (err) {
    if (err instanceof TensorrtSettingsError) throw new ConfigError(err.message);
    throw err;
  }
}

function providers(env: Env): ExecutionProviderName[] {
  const raw = env.ARMOR_PROVIDERS ?? 'cpu';
  const list = raw.split(',').map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new ConfigError('ARMOR_PROVIDERS is empty: expected e.g. cpu or tensorrt,cuda,cpu');
  for (const p of list) {
    if (!(EXECUTION_PROVIDERS as readonly string[]).includes(p)) {
      throw new ConfigError(`ARMOR_PROVIDERS names ${p}: expected a comma list of ${EXECUTION_PROVIDERS.join(', ')}`);
    }
  }
  return list as ExecutionProviderName[];
}

export function loadConfig(env: Env = process.env): Config {
  const cores = os.availableParallelism();
  const requestTimeoutMs = int(env, 'ARMOR_REQUEST_TIMEOUT_MS', 60000, 100, 3600000);
  const maxUploadBytes = int(env, 'ARMOR_MAX_UPLOAD_BYTES', 64 * 1024 * 1024, 1024, 4 * 1024 * 1024 * 1024);
  const maxMediaProcesses = int(env, 'ARMOR_MAX_MEDIA_PROCESSES', cores, 1, 256);
  const dataDir = path.resolve(env.ARMOR_DATA_DIR || 'data');
  // Camera resolutions as they come (up to 4K UHD): ffmpeg scales to the model's size.
  const maxWidth = int(env, 'ARMOR_MAX_VIDEO_WIDTH', 3840, 16, 16384);
  const maxHeight = int(env, 'ARMOR_MAX_VIDEO_HEIGHT', 2160, 16, 16384);
  const auth = authConfig(env);
  const metricCells = metricCellsConfig(env, auth);
  // Without keys the API is open, so by default it listens only where no one else can reach it.
  const host = env.HOST || (auth.mode === 'none' && !auth.explicit ? '127.0.0.1' : '0.0.0.0');
  return {
    auth,
    metricCells,
    rateLimitPerMin: int(env, 'ARMOR_RATE_LIMIT_PER_MIN', 600, 1, 1000000),
    host,
    port: int(env, 'PORT', 8080, 0, 65535),
    logLevel: oneOf(env, 'LOG_LEVEL', 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
    bundleDir: path.resolve(env.ARMOR_BUNDLE_DIR || path.join(REPO_ROOT, 'models', 'armor-tiny')),
    providers: providers(env),
    tensorrt: tensorrtConfig(env),
    deviceId: int(env, 'ARMOR_DEVICE_ID', 0, 0, 64),
    workers: int(env, 'ARMOR_WORKERS', 1, 1, 64),
    intraOpThreads: int(env, 'ARMOR_INTRA_OP_THREADS', Math.max(1, cores - 1), 0, 256),
    maxQueue: int(env, 'ARMOR_MAX_QUEUE', 16, 0, 10000),
    requestTimeoutMs,
    maxUploadBytes,
    // At least one whole upload with its form (FORM_OVERHEAD_BYTES): smaller, a full-size upload could never fit.
    maxUploadBytesInFlight: int(env, 'ARMOR_MAX_UPLOAD_BYTES_IN_FLIGHT', Math.max(512 * 1024 * 1024, maxUploadBytes + FORM_OVERHEAD_BYTES), maxUploadBytes + FORM_OVERHEAD_BYTES, 64 * 1024 * 1024 * 1024),
    maxBacklog: int(env, 'ARMOR_MAX_BACKLOG', 10000, 1, 100_000_000),
    maxBacklogPerKey: int(env, 'ARMOR_MAX_BACKLOG_PER_KEY', 2000, 1, 100_000_000),
    authFailuresPerMin: int(env, 'ARMOR_AUTH_FAILURES_PER_MIN', 30, 1, 1_000_000),
    maxLabelsPerEpisode: int(env, 'ARMOR_MAX_LABELS_PER_EPISODE', 50, 1, 10000),
    frames: {
      maxInFlight: int(env, 'ARMOR_FRAMES_MAX_IN_FLIGHT', Math.max(1, Math.floor(maxMediaProcesses / 2)), 1, 256),
      waitMs: int(env, 'ARMOR_FRAMES_WAIT_MS', 5000, 0, 600000),
      cacheBytes: int(env, 'ARMOR_FRAMES_CACHE_BYTES', 256 * 1024 * 1024, 0, 64 * 1024 * 1024 * 1024),
    },
    maxTaskChars: int(env, 'ARMOR_MAX_TASK_CHARS', 1000, 1, 100000),
    media: {
      maxDurationSec: int(env, 'ARMOR_MAX_VIDEO_SECONDS', 60, 1, 3600),
      maxWidth,
      maxHeight,
      maxSourceFrames: int(env, 'ARMOR_MAX_SOURCE_FRAMES', 3600, 1, 1000000),
      maxSourceDecodeBytes: sourceDecodeBytes(env, maxWidth, maxHeight),
      maxVisionTokens: int(env, 'ARMOR_MAX_VISION_TOKENS', 16384, 1, 1_000_000),
      timeoutMs: int(env, 'ARMOR_MEDIA_TIMEOUT_MS', 20000, 100, 600000),
    },
    caps: {
      maxTrajectories: int(env, 'ARMOR_MAX_TRAJECTORIES', 8, 1, 8),
      maxRounds: int(env, 'ARMOR_MAX_ROUNDS', 8, 1, 8),
      maxNewTokens: int(env, 'ARMOR_MAX_NEW_TOKENS', 128, 1, 4096),
      maxDeadlineMs: requestTimeoutMs,
    },
    maxMediaProcesses,
    mediaDecoder: oneOf(env, 'ARMOR_MEDIA_DECODER', 'auto', ['auto', 'cli', 'node-av'] as const),
    roundGraph: oneOf(env, 'ARMOR_ROUND_GRAPH', 'auto', ['auto', 'on', 'off'] as const),
    watchdogGraceMs: int(env, 'ARMOR_WATCHDOG_GRACE_MS', 2000, 100, 600000),
    workerBootTimeoutMs: int(env, 'ARMOR_WORKER_BOOT_TIMEOUT_MS', 120000, 1000, 3600000),
    drainDelayMs: int(env, 'ARMOR_DRAIN_DELAY_MS', 0, 0, 600000),
    tmpDir: path.resolve(env.ARMOR_TMP_DIR || path.join(os.tmpdir(), 'armor-serve')),
    store: {
      dataDir,
      databaseUrl: databaseUrl(env),
      leaseMs: int(env, 'ARMOR_LEASE_MS', 30000, 500, 3600000),
      pollMs: int(env, 'ARMOR_POLL_MS', 500, 10, 60000),
      maxAttempts: int(env, 'ARMOR_MAX_ATTEMPTS', 3, 1, 100),
      mediaRetentionMs: retention(env, 'ARMOR_MEDIA_RETENTION', '7d'),
    },
    blobs: blobConfig(env, dataDir),
    blobGraceMs: int(env, 'ARMOR_BLOB_GRACE_MS', 15 * 60_000, 60_000, 7 * 86_400_000),
    webhooks: webhooks(env),
  };
}

function sourceDecodeBytes(env: Env, maxWidth: number, maxHeight: number): number {
  const frame = maxWidth * maxHeight * 3;
  // At least one frame of the largest video accepted, or that video could never be decoded.
  if (!env.ARMOR_MEDIA_SOURCE_DECODE_BYTES) return Math.max(256 * 1024 * 1024, frame);
  const bytes = int(env, 'ARMOR_MEDIA_SOURCE_DECODE_BYTES', 0, 1, 64 * 1024 * 1024 * 1024);
  if (bytes < frame) throw new ConfigError(`ARMOR_MEDIA_SOURCE_DECODE_BYTES=${bytes} is less than one frame of the largest video accepted (${frame} bytes)`);
  return bytes;
}

function blobConfig(env: Env, dataDir: string): BlobConfig {
  const backend = oneOf(env, 'ARMOR_BLOB_STORE', 'fs', ['fs', 's3'] as const);
  if (backend === 'fs') {
    for (const name of ['ARMOR_S3_BUCKET', 'ARMOR_S3_ENDPOINT']) {
      if (env[name]) throw new ConfigError(`${name} is set but ARMOR_BLOB_STORE is fs: set ARMOR_BLOB_STORE=s3 to keep media in a bucket`);
    }
    return { backend, dir: path.resolve(env.ARMOR_BLOB_DIR || path.join(dataDir, 'blobs')) };
  }
  const bucket = env.ARMOR_S3_BUCKET ?? '';
  // S3's bucket naming rules (3-63 lower-case letters, digits, dots and hyphens).
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) throw new ConfigError('ARMOR_BLOB_STORE=s3 needs ARMOR_S3_BUCKET, a valid bucket name');
  const prefix = env.ARMOR_S3_PREFIX ?? 'armor-serve/media/';
  if (!/^([A-Za-z0-9._-]+\/)*$/.test(prefix)) throw new ConfigError(`ARMOR_S3_PREFIX=${prefix} must be empty or path segments ending in /, e.g. armor-serve/media/`);
  const endpoint = env.ARMOR_S3_ENDPOINT || undefined;
  if (endpoint !== undefined) {
    let url: URL;
    try {
      url = new URL(endpoint);
    } catch {
      throw new ConfigError(`ARMOR_S3_ENDPOINT=${endpoint} is not a URL`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new ConfigError('ARMOR_S3_ENDPOINT must be an http:// or https:// URL');
    if (url.username || url.password) throw new ConfigError('ARMOR_S3_ENDPOINT must not carry credentials: use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
  }
  return {
    backend,
    bucket,
    prefix,
    region: env.ARMOR_S3_REGION || env.AWS_REGION || 'us-east-1',
    endpoint,
    // Path-style (http://host/bucket/key) is what MinIO, Ceph RGW and s3rver serve by default.
    forcePathStyle: oneOf(env, 'ARMOR_S3_FORCE_PATH_STYLE', endpoint ? 'true' : 'false', ['true', 'false'] as const) === 'true',
    requestTimeoutMs: int(env, 'ARMOR_S3_TIMEOUT_MS', 30000, 100, 600000),
  };
}

const DAY_MS = 86_400_000;
const RETENTION_UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: DAY_MS };

/** A retention such as 7d, 36h or 90m; 0 keeps nothing. At most a year. */
function retention(env: NodeJS.ProcessEnv, name: string, fallback: string): number {
  const raw = (env[name] || fallback).trim();
  if (raw === '0') return 0;
  const m = /^(\d+)(m|h|d)$/.exec(raw);
  const ms = m ? Number(m[1]) * RETENTION_UNITS[m[2]] : NaN;
  if (!(ms > 0 && ms <= 366 * DAY_MS)) throw new ConfigError(`${name} must be 0 or a duration such as 7d, 36h or 90m (at most 366d); got ${JSON.stringify(raw)}`);
  return ms;
}

/**
 * For the server only (the CLI's analyze, eval and check listen nowhere): without API keys the
 * API may listen on loopback only, unless ARMOR_AUTH=none says otherwise.
 */
export function assertSafeExposure(config: Config): void {
  if (config.auth.mode === 'none' && !config.auth.explicit && !isLoopback(config.host)) {
    throw new ConfigError(`HOST=${config.host} would open the API to the network without API keys: set ARMOR_API_KEYS_FILE, or ARMOR_AUTH=none to allow it explicitly`);
  }
}

function metricCellsConfig(env: Env, auth: Config['auth']): string[] {
  const listed = (env.ARMOR_METRIC_CELLS ?? '').split(',').map((c) => c.trim()).filter((c) => c !== '');
  for (const c of listed) {
    if (!/^[A-Za-z0-9._:-]{1,128}$/.test(c)) throw new ConfigError(`ARMOR_METRIC_CELLS names "${c}": expected cell ids (letters, digits, . _ : -)`);
  }
  for (const reserved of ['other', 'unknown']) {
    if (listed.includes(reserved)) throw new ConfigError(`ARMOR_METRIC_CELLS names "${reserved}", which is the label of cells not listed (other) or not given (unknown)`);
  }
  if (listed.length > 2000) throw new ConfigError(`ARMOR_METRIC_CELLS lists ${listed.length} cells: at most 2000 (each is a time series per result)`);
  const fromKeys = auth.mode === 'keys' ? auth.keys.flatMap((k) => k.cells ?? []) : [];
  return [...new Set([...listed, ...fromKeys])].sort();
}

function authConfig(env: Env): Config['auth'] {
  const mode = oneOf(env, 'ARMOR_AUTH', env.ARMOR_API_KEYS_FILE ? 'keys' : 'none', ['keys', 'none'] as const);
  if (mode === 'none') {
    if (env.ARMOR_API_KEYS_FILE) throw new ConfigError('ARMOR_AUTH=none and ARMOR_API_KEYS_FILE contradict each other: set one');
    return { mode, explicit: env.ARMOR_AUTH === 'none' };
  }
  if (!env.ARMOR_API_KEYS_FILE) throw new ConfigError('ARMOR_AUTH=keys needs ARMOR_API_KEYS_FILE');
  let text: string;
  try {
    text = readFileSync(env.ARMOR_API_KEYS_FILE, 'utf8');
  } catch (err) {
    throw new ConfigError(`ARMOR_API_KEYS_FILE=${env.ARMOR_API_KEYS_FILE} cannot be read: ${(err as Error).message}`);
  }
  try {
    return { mode, keys: parseApiKeys(text, env.ARMOR_API_KEYS_FILE) };
  } catch (err) {
    if (err instanceof ApiKeysError) throw new ConfigError(err.message);
    throw err;
  }
}

function databaseUrl(env: Env): string | undefined {
  const raw = env.ARMOR_DATABASE_URL;
  if (!raw) return undefined;
  if (!/^postgres(ql)?:\/\//.test(raw)) throw new ConfigError('ARMOR_DATABASE_URL must be a postgres:// or postgresql:// URL');
  return raw;
}

function webhooks(env: Env): Config['webhooks'] {
  try {
    let endpoints: WebhookEndpoint[] = [];
    if (env.ARMOR_WEBHOOKS_FILE && env.ARMOR_WEBHOOK_URL) {
      throw new ConfigError('set ARMOR_WEBHOOKS_FILE or ARMOR_WEBHOOK_URL, not both');
    } else if (env.ARMOR_WEBHOOKS_FILE) {
      let text: string;
      try {
        text = readFileSync(env.ARMOR_WEBHOOKS_FILE, 'utf8');
      } catch (err) {
        throw new ConfigError(`ARMOR_WEBHOOKS_FILE=${env.ARMOR_WEBHOOKS_FILE} cannot be read: ${(err as Error).message}`);
      }
      endpoints = parseEndpointsFile(text, env.ARMOR_WEBHOOKS_FILE);
    } else if (env.ARMOR_WEBHOOK_URL) {
      endpoints = [singleEndpoint(env.ARMOR_WEBHOOK_URL, env.ARMOR_WEBHOOK_SECRET)];
    } else if (env.ARMOR_WEBHOOK_SECRET) {
      throw new ConfigError('ARMOR_WEBHOOK_SECRET is set without ARMOR_WEBHOOK_URL');
    }
    return {
      endpoints,
      schedule: parseSchedule(env.ARMOR_WEBHOOK_RETRY_SCHEDULE || '0,5s,5m,30m,2h,5h,10h,10h'),
      timeoutMs: int(env, 'ARMOR_WEBHOOK_TIMEOUT_MS', 15000, 100, 120000),
    };
  } catch (err) {
    if (err instanceof WebhookConfigError) throw new ConfigError(err.message);
    throw err;
  }
}
