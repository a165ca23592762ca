// Opening the blob store the configuration names: a directory (embedded default) or an
// S3-compatible bucket (replicas).
import path from 'node:path';
import { FsBlobStore } from './fs-store.js';
import { S3BlobStore, type S3Settings } from './s3-store.js';
import type { BlobStore } from './types.js';

export { FsBlobStore } from './fs-store.js';
export { S3BlobStore, type S3BlobStoreOptions, type S3Settings } from './s3-store.js';
export { discardStaged, ownPrivateDir, privateDir, stageStream, sweepStaging, UnsafeDirectoryError, verifyingStream, type StageOptions } from './staging.js';
export * from './types.js';

export type BlobConfig = { backend: 'fs'; dir: string } | ({ backend: 's3' } & S3Settings);

export async function openBlobStore(config: BlobConfig, tmpDir: string): Promise<BlobStore> {
  if (config.backend === 'fs') return FsBlobStore.open(config.dir);
  return new S3BlobStore({ ...config, stagingDir: path.join(tmpDir, 'staging') });
}
