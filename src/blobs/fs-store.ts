// Blobs as files under one directory (the embedded default, next to the SQLite file): a
// staged upload is fsync'd, renamed into place and its directory fsync'd, so it survives a
// crash once commit returns. Decoders read the blob file itself: no copy.
import { constants, createReadStream } from 'node:fs';
import { access, mkdir, open, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline, type Readable } from 'node:stream';
import { privateDir, storageError, verifyingStream } from './staging.js';
import { BlobIntegrityError, BlobStoreUnavailableError, checkName, type BlobStore, type BlobStoreInfo, type LocalBlob, type StagedBlob } from './types.js';

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export class FsBlobStore implements BlobStore {
  readonly info: BlobStoreInfo;
  readonly stagingDir: string;
  private readonly root: string;

  private constructor(root: string) {
    this.root = root;
    this.stagingDir = path.join(root, '.staging');
    this.info = { backend: 'fs', location: `filesystem (${path.basename(root)}/)` };
  }

  static async open(root: string): Promise<FsBlobStore> {
    const store = new FsBlobStore(path.resolve(root));
    await privateDir(store.root);
    await privateDir(store.stagingDir);
    return store;
  }

  /** Two-level fan-out (256 directories), so no directory grows past a few thousand entries per million blobs. */
  pathOf(sha256: string): string {
    checkName(sha256);
    return path.join(this.root, sha256.slice(0, 2), sha256);
  }

  async commit(staged: StagedBlob): Promise<LocalBlob> {
    const target = this.pathOf(staged.sha256);
    const local = { path: target, release: async () => undefined };
    try {
      // Kept when whole; a stored file of another size (damaged) is replaced by the upload.
      if ((await stat(target).catch(() => undefined))?.size === staged.size) {
        await rm(staged.path, { force: true });
        return local;
      }
      const dir = path.dirname(target);
      const created = await mkdir(dir, { recursive: true, mode: 0o700 });
      if (created) await fsyncDir(this.root);
      await rename(staged.path, target);
      await fsyncDir(dir);
      return local;
    } catch (err) {
      await rm(staged.path, { force: true });
      throw storageError(err);
    }
  }

  async has(sha256: string): Promise<boolean> {
    return (await stat(this.pathOf(sha256)).catch(() => undefined))?.isFile() === true;
  }

  async read(sha256: string): Promise<Readable> {
    const file = this.pathOf(sha256);
    if (!(await this.has(sha256))) throw new BlobIntegrityError(`blob ${sha256.slice(0, 12)}… is missing`);
    // pipeline, not pipe: an error on either side reaches the reader and destroys both.
    return pipeline(createReadStream(file), verifyingStream(sha256), () => undefined);
  }

  async local(sha256: string): Promise<LocalBlob> {
    if (!(await this.has(sha256))) throw new BlobIntegrityError(`blob ${sha256.slice(0, 12)}… is missing`);
    return { path: this.pathOf(sha256), release: async () => undefined };
  }

  async delete(sha256: string): Promise<void> {
    await rm(this.pathOf(sha256), { force: true });
  }

  async check(): Promise<void> {
    try {
      await access(this.root, constants.W_OK);
    } catch (err) {
      throw new BlobStoreUnavailableError('the media directory cannot be written', { cause: err });
    }
  }

  async close(): Promise<void> {}
}
