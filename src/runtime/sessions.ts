// onnxruntime sessions with an explicit fallback down the configured provider list.
// onnxruntime-node has no automatic fallback: a provider whose libraries are missing throws
// at session creation, so each provider is tried in turn for the whole bundle.
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { BundleError } from './errors.js';

export type ExecutionProviderName = 'tensorrt' | 'cuda' | 'cpu' | 'webgpu';
export const EXECUTION_PROVIDERS: readonly ExecutionProviderName[] = ['tensorrt', 'cuda', 'webgpu', 'cpu'];

export interface SessionOptions {
  providers: readonly ExecutionProviderName[];
  deviceId?: number;
  intraOpThreads?: number;
}

export interface ProviderAttempt {
  provider: ExecutionProviderName;
  error: string;
}

export interface OpenedSessions<K extends string> {
  sessions: Record<K, ort.InferenceSession>;
  provider: ExecutionProviderName;
  /** Providers tried before the one in use, with why each failed. */
  fallbacks: ProviderAttempt[];
}

/**
 * The options each execution provider is given. CUDA and TensorRT take the GPU ordinal
 * (ARMOR_DEVICE_ID). WebGPU has no device ordinal (onnxruntime refuses one): Dawn opens the
 * first high-performance adapter its Vulkan driver lists, so the GPU is chosen by what the
 * container or driver exposes; its layout is NCHW (no graph here has a layout-sensitive
 * operator), validation basic, and graph capture off (it needs static shapes; the decoder's
 * KV cache grows every step).
 */
export function providerConfig(name: ExecutionProviderName, deviceId: number | undefined): ort.InferenceSession.ExecutionProviderConfig {
  switch (name) {
    case 'cpu':
      return 'cpu';
    case 'webgpu':
      return { name: 'webgpu', preferredLayout: 'NCHW', validationMode: 'basic' };
    case 'cuda':
    case 'tensorrt':
      return deviceId === undefined ? { name } : { name, deviceId };
  }
}

const VULKAN_LOADER_DIRS = ['/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib', '/usr/local/lib', '/lib/x86_64-linux-gnu'];
const VULKAN_ICD_DIRS = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d', '/usr/local/etc/vulkan/icd.d'];

/** The Vulkan loader Dawn would load (LD_LIBRARY_PATH first, then the system's), if any. */
export function findVulkanLoader(env: NodeJS.ProcessEnv = process.env, exists: (file: string) => boolean = existsSync): string | undefined {
  const dirs = [...(env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), ...VULKAN_LOADER_DIRS];
  return dirs.map((dir) => path.join(dir, 'libvulkan.so.1')).find(exists);
}

/**
 * Why WebGPU (Dawn on Vulkan, on Linux) has no adapter, as far as files tell: no Vulkan
 * loader, or no driver manifest; undefined when both are there (then the driver itself
 * refused, e.g. a software rasterizer without the features Dawn needs).
 */
export function webgpuMissing(env: NodeJS.ProcessEnv = process.env, exists: (file: string) => boolean = existsSync, list: (dir: string) => string[] = listDir): string | undefined {
  if (process.platform !== 'linux') return undefined;
  if (findVulkanLoader(env, exists) === undefined) {
    return 'no Vulkan loader (libvulkan.so.1; Debian: apt-get install libvulkan1)';
  }
  const explicit = (env.VK_DRIVER_FILES ?? env.VK_ICD_FILENAMES ?? '').split(':').filter(Boolean);
  const manifests = explicit.length > 0 ? explicit.filter(exists) : VULKAN_ICD_DIRS.flatMap((dir) => list(dir).filter((f) => f.endsWith('.json')));
  if (manifests.length === 0) {
    // Named without their leading / so that /readyz, which hides paths, still shows them.
    return `no Vulkan driver (no ICD manifest in ${explicit.length > 0 ? 'VK_DRIVER_FILES' : 'the vulkan/icd.d directories of /usr/share, /etc and /usr/local'}; the GPU vendor's driver installs one)`;
  }
  return undefined;
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

function failure(provider: ExecutionProviderName, err: unknown): string {
  const message = (err as Error).message.split('\n')[0] ?? String(err);
  if ((provider === 'cuda' || provider === 'tensorrt') && /Failed to load shared library/.test(message)) {
    // The npm package ships CPU and WebGPU only; its install script fetches the CUDA provider.
    return `onnxruntime's ${provider === 'cuda' ? 'CUDA' : 'TensorRT'} provider library is not installed (onnxruntime-node's install script fetches it from NuGet with ONNXRUNTIME_NODE_INSTALL=cuda12; it also needs CUDA 12 and cuDNN 9${provider === 'tensorrt' ? ' and TensorRT' : ''} on the machine) (${message})`;
  }
  if (provider !== 'webgpu' || !/adapter/i.test(message)) return message;
  const missing = webgpuMissing();
  return `no WebGPU adapter: ${missing ?? 'the Vulkan driver offers none Dawn accepts'} (${message.replace(/^.*?(Failed to get a WebGPU adapter)/, '$1')})`;
}

export async function openSessions<K extends string>(
  files: Record<K, string>,
  options: SessionOptions,
  onFallback: (attempt: ProviderAttempt) => void = () => {},
): Promise<OpenedSessions<K>> {
  const fallbacks: ProviderAttempt[] = [];
  for (const provider of options.providers) {
    const opened: ort.InferenceSession[] = [];
    try {
      const sessions = {} as Record<K, ort.InferenceSession>;
      for (const key of Object.keys(files) as K[]) {
        const session = await ort.InferenceSession.create(files[key], {
          executionProviders: [providerConfig(provider, options.deviceId)],
          graphOptimizationLevel: 'all',
          intraOpNumThreads: options.intraOpThreads ?? 0,
          interOpNumThreads: 1,
          executionMode: 'sequential',
          logSeverityLevel: 3,
        });
        opened.push(session);
        sessions[key] = session;
      }
      return { sessions, provider, fallbacks };
    } catch (err) {
      await Promise.allSettled(opened.map((s) => s.release()));
      const attempt = { provider, error: failure(provider, err) };
      fallbacks.push(attempt);
      onFallback(attempt);
    }
  }
  throw new BundleError(
    'provider_unavailable',
    `no execution provider could open the bundle (tried ${fallbacks.map((f) => `${f.provider}: ${f.error}`).join('; ')})`,
    { attempts: fallbacks },
  );
}
