// The TensorRT execution provider's settings. onnxruntime-node passes TensorRT only a device
// id, and without provider options the TensorRT EP reads the rest from ORT_TENSORRT_*
// environment variables (tensorrt_execution_provider.h, tensorrt_env_vars). They are
// validated here, at start-up (the EP parses integers with std::stoi, and a bad value would
// throw inside session creation), and reported on /readyz and in the start-up log.
import { accessSync, constants } from 'node:fs';

type Env = Readonly<Record<string, string | undefined>>;

export interface TensorrtSettings {
  fp16: boolean;
  /** Built engines are kept here and reused across restarts (ORT_TENSORRT_CACHE_PATH). */
  engineCache: { enabled: boolean; path: string | null; writable: boolean | null };
  /** Kernel timings, shared by every graph (ORT_TENSORRT_GLOBAL_CACHE_PATH). */
  timingCache: { enabled: boolean; path: string | null; writable: boolean | null };
  /** Bytes; null: onnxruntime's default. */
  maxWorkspaceBytes: number | null;
  /** Layer norms kept in fp32 under FP16. */
  layerNormFp32Fallback: boolean;
  builderOptimizationLevel: number | null;
  /** The ORT_TENSORRT_* variables as set, for the log. */
  environment: Record<string, string>;
}

export class TensorrtSettingsError extends Error {}

const BOOLEANS = ['ORT_TENSORRT_FP16_ENABLE', 'ORT_TENSORRT_ENGINE_CACHE_ENABLE', 'ORT_TENSORRT_TIMING_CACHE_ENABLE', 'ORT_TENSORRT_LAYER_NORM_FP32_FALLBACK'] as const;

function integer(env: Env, name: string, min: number, max: number): number | null {
  const raw = env[name];
  if (raw === undefined || raw === '') return null;
  if (!/^\d+$/.test(raw.trim()) || Number(raw) < min || Number(raw) > max) {
    throw new TensorrtSettingsError(`${name}=${raw} is invalid: expected an integer from ${min} to ${max} (onnxruntime parses it with std::stoi)`);
  }
  return Number(raw);
}

function flag(env: Env, name: (typeof BOOLEANS)[number]): boolean {
  const v = integer(env, name, 0, 1);
  return v === 1;
}

function writable(path: string | null): boolean | null {
  if (path === null) return null;
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export function tensorrtSettings(env: Env = process.env): TensorrtSettings {
  const environment = Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith('ORT_TENSORRT_') && v !== undefined)) as Record<string, string>;
  const engineEnabled = flag(env, 'ORT_TENSORRT_ENGINE_CACHE_ENABLE');
  const timingEnabled = flag(env, 'ORT_TENSORRT_TIMING_CACHE_ENABLE');
  // Without a path, onnxruntime writes caches to the working directory.
  const enginePath = engineEnabled ? (env.ORT_TENSORRT_CACHE_PATH || '.') : null;
  const timingPath = timingEnabled ? (env.ORT_TENSORRT_GLOBAL_CACHE_PATH || env.ORT_TENSORRT_CACHE_PATH || '.') : null;
  return {
    fp16: flag(env, 'ORT_TENSORRT_FP16_ENABLE'),
    engineCache: { enabled: engineEnabled, path: enginePath, writable: writable(enginePath) },
    timingCache: { enabled: timingEnabled, path: timingPath, writable: writable(timingPath) },
    maxWorkspaceBytes: integer(env, 'ORT_TENSORRT_MAX_WORKSPACE_SIZE', 1, Number.MAX_SAFE_INTEGER),
    layerNormFp32Fallback: flag(env, 'ORT_TENSORRT_LAYER_NORM_FP32_FALLBACK'),
    builderOptimizationLevel: integer(env, 'ORT_TENSORRT_BUILDER_OPTIMIZATION_LEVEL', 0, 5),
    environment,
  };
}
