// Blobs in S3-compatible object storage (the standard S3 API that AWS, MinIO and Ceph RGW
// serve), for replicas that share PostgreSQL. A blob is one object named by its sha256 under
// a prefix; PutObject returning is the store's acknowledgement. Reads hash what they stream
// and fail if the bytes are not the blob's.
import { createReadStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { pipeline, Readable } from 'node:stream';
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { stageStream, verifyingStream } from './staging.js';
import { BlobIntegrityError, BlobStoreUnavailableError, checkName, type BlobStore, type BlobStoreInfo, type LocalBlob, type StagedBlob } from './types.js';

/** Where the blobs are, as configured (ARMOR_S3_*). */
export interface S3Settings {
  bucket: string;
  /** Key prefix, e.g. "armor-serve/media/". */
  prefix: string;
  region: string;
  /** For MinIO, Ceph RGW and other non-AWS servers; AWS when absent. */
  endpoint?: string;
  forcePathStyle: boolean;
  /** Milliseconds one request may take before it counts as a failure. */
  requestTimeoutMs: number;
}

export interface S3BlobStoreOptions extends S3Settings {
  /** Uploads are staged here before they go to the bucket (their hash is their key). */
  stagingDir: string;
  /** Credentials: the SDK's default chain (AWS_* variables, profiles, web identity, instance roles) unless given. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

function isNotFound(err: unknown): boolean {
  if (err instanceof S3ServiceException) return err.$metadata.httpStatusCode === 404 || err.name === 'NotFound' || err.name === 'NoSuchKey';
  return false;
}

function unavailable(what: string, err: unknown): BlobStoreUnavailableError {
  const detail = err instanceof S3ServiceException ? `${err.name} (HTTP ${err.$metadata.httpStatusCode ?? '?'})` : (err as { code?: string }).code ?? (err as Error).name;
  return new BlobStoreUnavailableError(`the object store could not ${what}: ${detail}`, { cause: err });
}

export class S3BlobStore implements BlobStore {
  readonly info: BlobStoreInfo;
  readonly stagingDir: string;
  private readonly client: S3Client;
  private readonly o: S3BlobStoreOptions;

  constructor(o: S3BlobStoreOptions) {
    this.o = o;
    this.stagingDir = o.stagingDir;
    const host = o.endpoint ? new URL(o.endpoint).host : `s3.${o.region}.amazonaws.com`;
    this.info = { backend: 's3', location: `s3://${o.bucket}/${o.prefix} at ${host}` };
    this.client = new S3Client({
      region: o.region,
      endpoint: o.endpoint,
      forcePathStyle: o.forcePathStyle,
      credentials: o.credentials,
      // Checksums only where an operation requires them: servers other than AWS (and older
      // MinIO, Ceph and s3rver) do not all take the SDK's default CRC32 trailers on uploads.
      // The blob's own sha256, checked on every read, is the integrity check that matters.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
      requestHandler: { connectionTimeout: Math.min(5000, o.requestTimeoutMs), requestTimeout: o.requestTimeoutMs },
    });
  }

  private key(sha256: string): string {
    checkName(sha256);
    return `${this.o.prefix}${sha256.slice(0, 2)}/${sha256}`;
  }

  private async size(sha256: string, signal?: AbortSignal): Promise<number | undefined> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.o.bucket, Key: this.key(sha256) }), { abortSignal: signal });
      return head.ContentLength ?? 0;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw unavailable('be read', err);
    }
  }

  async commit(staged: StagedBlob, signal?: AbortSignal): Promise<LocalBlob> {
    const local = { path: staged.path, release: () => rm(staged.path, { force: true }) };
    try {
      // Kept when whole (another episode uploaded the same bytes); written again otherwise.
      if ((await this.size(staged.sha256, signal)) !== staged.size) {
        try {
          await this.client.send(
            new PutObjectCommand({
              Bucket: this.o.bucket,
              Key: this.key(staged.sha256),
              Body: createReadStream(staged.path),
              ContentLength: staged.size,
              ContentType: 'application/octet-stream',
            }),
            { abortSignal: signal },
          );
        } catch (err) {
          throw unavailable('store the upload', err);
        }
        if ((await this.size(staged.sha256, signal)) !== staged.size) throw new BlobStoreUnavailableError('the object store did not keep the whole upload');
      }
      return local;
    } catch (err) {
      await local.release();
      throw err;
    }
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.size(sha256)) !== undefined;
  }

  async read(sha256: string, signal?: AbortSignal): Promise<Readable> {
    let body: unknown;
    try {
      body = (await this.client.send(new GetObjectCommand({ Bucket: this.o.bucket, Key: this.key(sha256) }), { abortSignal: signal })).Body;
    } catch (err) {
      if (isNotFound(err)) throw new BlobIntegrityError(`blob ${sha256.slice(0, 12)}… is missing`);
      throw unavailable('be read', err);
    }
    if (!(body instanceof Readable)) throw new BlobStoreUnavailableError('the object store answered without a body');
    // pipeline, not pipe: an error on either side reaches the reader and destroys both.
    return pipeline(body, verifyingStream(sha256), () => undefined);
  }

  async local(sha256: string, tmpDir: string, signal?: AbortSignal): Promise<LocalBlob> {
    const stream = await this.read(sha256, signal);
    const onAbort = () => stream.destroy(new Error('aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // A temporary copy for the decoders: not fsync'd (it is gone after one use).
      const copy = await stageStream(stream, path.join(tmpDir, 'blobs'), { durable: false });
      return { path: copy.path, release: () => rm(copy.path, { force: true }) };
    } catch (err) {
      if (err instanceof BlobIntegrityError || err instanceof BlobStoreUnavailableError || signal?.aborted) throw err;
      throw unavailable('be read', err);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  async delete(sha256: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.o.bucket, Key: this.key(sha256) }));
    } catch (err) {
      if (!isNotFound(err)) throw unavailable('delete a blob', err);
    }
  }

  /**
   * HEAD of a key under the prefix that is never written: 404 means the bucket answers and the
   * credentials may read it (the permissions the service needs: s3:GetObject, s3:PutObject,
   * s3:DeleteObject and s3:ListBucket on the prefix), which HeadBucket would not show.
   */
  async check(): Promise<void> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.o.bucket, Key: `${this.o.prefix}.health` }));
    } catch (err) {
      if (!isNotFound(err)) throw unavailable(`reach bucket ${this.o.bucket}`, err);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}
