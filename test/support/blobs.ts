// Test helpers for the blob store: bytes stored as an upload would store them (staged while
// hashed, claimed, committed), and the blobs a directory holds.
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { FsBlobStore, stageStream, type BlobStore } from '../../src/blobs/index.js';
import type { EpisodeStore, MediaRef } from '../../src/store/index.js';

export async function storeBlobs(store: EpisodeStore, blobs: BlobStore, files: Array<{ name: string; bytes: Uint8Array }>): Promise<MediaRef[]> {
  const refs: MediaRef[] = [];
  for (const f of files) {
    const staged = await stageStream([f.bytes], blobs.stagingDir);
    await store.claimBlobs([staged]);
    await (await blobs.commit(staged)).release();
    refs.push({ name: f.name, sha256: staged.sha256, size: staged.size });
  }
  return refs;
}

export const openFsBlobs = (dir: string) => FsBlobStore.open(dir);

/** The blob files under a filesystem blob store's root (not its staging area). */
export async function blobFiles(root: string): Promise<string[]> {
  const found: string[] = [];
  for (const fan of await readdir(root).catch(() => [] as string[])) {
    if (fan.startsWith('.')) continue;
    for (const name of await readdir(path.join(root, fan)).catch(() => [] as string[])) found.push(name);
  }
  return found.sort();
}
