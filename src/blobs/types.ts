// The blob store's interface: media as content-addressed blobs (the sha256 of the bytes is
// the name), streamed in and out, never held whole in memory. It knows nothing of episodes:
// the episode store records which episode refers to which blob.
import type { Readable } from 'node:stream';

/** An upload written to a local staging file while it was hashed; not yet in the store. */
export interface StagedBlob {
  sha256: string;
  size: number;
  /** The staging file (removed by discard, or moved by commit on the filesystem backend). */
  path: string;
}

/** A blob as a local file, for decoders that read paths. */
export interface LocalBlob {
  path: string;
  /** Removes a temporary copy (a no-op where the path is the blob itself). */
  release(): Promise<void>;
}

export interface BlobStoreInfo {
  backend: 'fs' | 's3';
  /** Where blobs live, without absolute paths or credentials (for /readyz and logs). */
  location: string;
}

export interface BlobStore {
  readonly info: BlobStoreInfo;
  /** Where uploads are staged; on the filesystem backend, on the blobs' own filesystem so commit is a rename. */
  readonly stagingDir: string;
  /**
   * Makes a staged blob durable under its hash (fsync'd, or acknowledged by the object store).
   * Idempotent: a blob already stored is kept. The staging file is taken over: what comes back
   * is the blob as a local file (the stored file itself, or the staging file where the store is
   * remote) until it is released, so a synchronous run needs no second copy.
   */
  commit(staged: StagedBlob, signal?: AbortSignal): Promise<LocalBlob>;
  has(sha256: string): Promise<boolean>;
  /** The blob's bytes as a stream; it fails at the end if they do not hash to the name. */
  read(sha256: string, signal?: AbortSignal): Promise<Readable>;
  /** The blob as a local file; `tmpDir` holds the copy where the backend is remote. */
  local(sha256: string, tmpDir: string, signal?: AbortSignal): Promise<LocalBlob>;
  /** Removes the blob; a missing one is not an error. */
  delete(sha256: string): Promise<void>;
  /** Throws when the store cannot be reached (readiness). */
  check(): Promise<void>;
  close(): Promise<void>;
}

/** The store could not be reached or failed: the request may be retried (503). */
export class BlobStoreUnavailableError extends Error {
  readonly code = 'blob_store_unavailable';
  readonly statusCode = 503;
  readonly retryAfterSec = 5;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BlobStoreUnavailableError';
  }
}

/** A stored blob whose bytes no longer hash to its name, or that is missing (an episode that needs it has lost its media). */
export class BlobIntegrityError extends Error {
  readonly code = 'media_lost';
  readonly statusCode = 500;
  constructor(message: string) {
    super(message);
    this.name = 'BlobIntegrityError';
  }
}

export const SHA256_HEX = /^[0-9a-f]{64}$/;

export function checkName(sha256: string): void {
  if (!SHA256_HEX.test(sha256)) throw new RangeError(`not a blob name: ${JSON.stringify(sha256)}`);
}
