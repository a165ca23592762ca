// Staging: an upload streamed to a local file while it is hashed (sha256) and counted, so a
// blob's name is known when its last byte arrives and it is never held whole in memory.
import { createHash, randomUUID } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { chmod, lstat, mkdir, open, readdir, rm, stat, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { BlobIntegrityError, BlobStoreUnavailableError, type StagedBlob } from './types.js';

export interface StageOptions {
  /** Sees each chunk before it is written; throwing refuses the upload (the file is removed). */
  inspect?: (chunk: Buffer) => void;
  /** fsync before returning (what a commit needs); a temporary copy may skip it. */
  durable?: boolean;
}

const STAGING_SUFFIX = '.part';

/** Disk full or over quota: the server's trouble, not the client's (503, retry). */
export function storageError(err: unknown): unknown {
  const code = (err as { code?: unknown }).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new BlobStoreUnavailableError('the media store is out of space', { cause: err });
  return err;
}

async function writeAll(handle: FileHandle, chunk: Buffer): Promise<void> {
  let at = 0;
  while (at < chunk.length) {
    const { bytesWritten } = await handle.write(chunk, at, chunk.length - at);
    at += bytesWritten;
  }
}

/** Creates a directory only its owner can enter (uploads are the clients' data). */
export async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

export class UnsafeDirectoryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsafeDirectoryError';
  }
}

/**
 * A directory for this process's temporary files: created 0700, or, when it exists, refused
 * unless it is a real directory this user owns (in a shared /tmp another user could have made
 * it first, to read or swap what is written there). One this user owns but left open to others
 * is closed to 0700.
 */
export async function ownPrivateDir(dir: string): Promise<'created' | 'tightened' | 'ok'> {
  const before = await lstat(dir).catch(() => undefined);
  if (!before) {
    await privateDir(dir);
  }
  const info = await lstat(dir);
  if (!info.isDirectory()) throw new UnsafeDirectoryError(`${dir} is not a directory (a link or a file): refusing to use it for temporary files`);
  const uid = process.getuid?.();
  if (uid !== undefined && info.uid !== uid) throw new UnsafeDirectoryError(`${dir} belongs to user ${info.uid}, not to this process (${uid}): refusing to use it for temporary files`);
  if ((info.mode & 0o077) !== 0) {
    await chmod(dir, 0o700);
    return 'tightened';
  }
  return before ? 'ok' : 'created';
}

/** Streams `source` into a new file in `dir` while hashing it; the file is removed on any error. */
export async function stageStream(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, dir: string, o: StageOptions = {}): Promise<StagedBlob> {
  await privateDir(dir);
  const file = path.join(dir, `${randomUUID()}${STAGING_SUFFIX}`);
  const handle = await open(file, 'wx', 0o600).catch((err: unknown) => {
    throw storageError(err);
  });
  const hash = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of source) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      o.inspect?.(buf);
      hash.update(buf);
      size += buf.length;
      await writeAll(handle, buf);
    }
    if (o.durable !== false) await handle.sync();
    await handle.close();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await rm(file, { force: true });
    throw storageError(err);
  }
  return { sha256: hash.digest('hex'), size, path: file };
}

export async function discardStaged(staged: Pick<StagedBlob, 'path'>): Promise<void> {
  await rm(staged.path, { force: true });
}

/** Removes staging files older than `olderThanMs` (left by a process that was killed mid-upload). */
export async function sweepStaging(dir: string, olderThanMs: number, now = Date.now()): Promise<number> {
  const names = await readdir(dir).catch(() => [] as string[]);
  let removed = 0;
  for (const name of names) {
    if (!name.endsWith(STAGING_SUFFIX)) continue;
    const file = path.join(dir, name);
    const info = await stat(file).catch(() => undefined);
    if (info && now - info.mtimeMs >= olderThanMs) {
      await rm(file, { force: true });
      removed++;
    }
  }
  return removed;
}

/** Passes bytes through and fails at the end unless they hash to `sha256` (a blob read back). */
export function verifyingStream(sha256: string): Transform {
  const hash = createHash('sha256');
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      hash.update(chunk);
      done(null, chunk);
    },
    flush(done: TransformCallback) {
      const got = hash.digest('hex');
      done(got === sha256 ? null : new BlobIntegrityError(`blob ${sha256.slice(0, 12)}… reads back as ${got.slice(0, 12)}…`));
    },
  });
}
