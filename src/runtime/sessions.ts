// onnxruntime sessions with an explicit fallback down the configured provider list.
// onnxruntime-node has no automatic fallback: a provider whose libraries are missing throws
// at session creation, so each provider is tried in turn for the whole bundle.
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

function providerConfig(name: ExecutionProviderName, deviceId: number | undefined): ort.InferenceSession.ExecutionProviderConfig {
  if (name === 'cpu' || deviceId === undefined) return name;
  return { name, deviceId } as ort.InferenceSession.ExecutionProviderConfig;
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
      const attempt = { provider, error: (err as Error).message.split('\n')[0] ?? String(err) };
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
