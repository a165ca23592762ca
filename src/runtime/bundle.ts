// Loading an ARMOR bundle: manifest, file sizes and hashes, tokenizer, sessions, graph contract.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type ort from 'onnxruntime-node';
import { BundleError } from './errors.js';
import { contractMismatches, GRAPH_FILES, graphContract, OPTIONAL_GRAPH_FILES, type GraphName, type OptionalGraphName } from './graph-contract.js';
import { parseManifest, type ArmorManifest } from './manifest.js';
import { NoveltyModel } from './novelty.js';
import { openSessions, type ExecutionProviderName, type ProviderAttempt, type SessionOptions } from './sessions.js';
import { ArmorTokenizer } from './tokenizer.js';

export interface VerifiedBundle {
  dir: string;
  manifest: ArmorManifest;
  /** Total bytes of the bundle's files, for /readyz and logs. */
  bytes: number;
}

export interface LoadedBundle extends VerifiedBundle {
  tokenizer: ArmorTokenizer;
  sessions: Record<GraphName, ort.InferenceSession> & Partial<Record<OptionalGraphName, ort.InferenceSession>>;
  provider: ExecutionProviderName;
  fallbacks: ProviderAttempt[];
  /** The input-novelty statistics (manifest review.novelty), when the bundle has them. */
  novelty?: NoveltyModel;
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Reads and checks armor.json and every file it lists (existence, size, sha256). */
export async function verifyBundle(dir: string, options: { checkHashes?: boolean } = {}): Promise<VerifiedBundle> {
  const manifestPath = path.join(dir, 'armor.json');
  let text: string;
  try {
    text = await readFile(manifestPath, 'utf8');
  } catch {
    throw new BundleError('bundle_not_found', `no armor.json in ${dir}`, { file: manifestPath });
  }
  const manifest = await parseManifest(text, manifestPath);
  let bytes = 0;
  for (const [rel, expected] of Object.entries(manifest.files)) {
    const file = path.resolve(dir, rel);
    if (!file.startsWith(path.resolve(dir) + path.sep)) {
      throw new BundleError('invalid_manifest', `${manifestPath}: files entry ${rel} points outside the bundle`, { file: rel, field: `files.${rel}` });
    }
    const info = await stat(file).catch(() => undefined);
    if (!info?.isFile()) throw new BundleError('missing_file', `bundle file ${rel} is missing`, { file: rel });
    if (info.size !== expected.bytes) {
      throw new BundleError('file_size_mismatch', `bundle file ${rel} has ${info.size} bytes, armor.json says ${expected.bytes}`, { file: rel });
    }
    if (options.checkHashes !== false) {
      const actual = await sha256File(file);
      if (actual !== expected.sha256) {
        throw new BundleError('hash_mismatch', `bundle file ${rel} has sha256 ${actual}, armor.json says ${expected.sha256}`, { file: rel });
      }
    }
    bytes += info.size;
  }
  return { dir, manifest, bytes };
}

/** Opens a verified bundle: tokenizer, one session per graph, and the graph contract check. */
export async function openBundle(
  verified: VerifiedBundle,
  sessionOptions: SessionOptions,
  onFallback?: (attempt: ProviderAttempt) => void,
): Promise<LoadedBundle> {
  const { dir, manifest } = verified;
  const tokenizer = await ArmorTokenizer.load(path.join(dir, 'tokenizer.json'), manifest);
  const noveltyFile = manifest.review?.novelty?.file;
  const novelty = noveltyFile ? await NoveltyModel.load(path.join(dir, noveltyFile), manifest.architecture.text.hidden_size) : undefined;
  // Optional graphs are opened when the manifest lists them (and so verifyBundle checked them).
  const present = { ...GRAPH_FILES, ...Object.fromEntries(Object.entries(OPTIONAL_GRAPH_FILES).filter(([, file]) => file in manifest.files)) } as Record<GraphName | OptionalGraphName, string>;
  const files = Object.fromEntries(Object.entries(present).map(([g, file]) => [g, path.join(dir, file)])) as Record<GraphName | OptionalGraphName, string>;
  const opened = await openSessions(files, sessionOptions, onFallback);
  const contract = graphContract(manifest);
  for (const graph of Object.keys(present) as (GraphName | OptionalGraphName)[]) {
    const session = opened.sessions[graph];
    const problems = contractMismatches(contract[graph], session.inputMetadata, session.outputMetadata);
    if (problems.length > 0) {
      await Promise.allSettled(Object.values<ort.InferenceSession>(opened.sessions).map((s) => s.release()));
      throw new BundleError('graph_mismatch', `${present[graph]}: ${problems.join('; ')}`, { file: present[graph], problems });
    }
  }
  return { ...verified, tokenizer, ...opened, novelty };
}

export async function loadBundle(dir: string, sessionOptions: SessionOptions = { providers: ['cpu'] }): Promise<LoadedBundle> {
  return openBundle(await verifyBundle(dir), sessionOptions);
}

export async function releaseBundle(bundle: LoadedBundle): Promise<void> {
  await Promise.allSettled(Object.values<ort.InferenceSession>(bundle.sessions).map((s) => s.release()));
}
