// The durable store and the blob store opened together, as the server and the CLI need them:
// uploads an older version kept in the database are moved into the blob store, and what a
// killed process left behind (staging files, blobs no episode refers to) is removed.
import path from 'node:path';
import { discardStaged, openBlobStore, stageStream, sweepStaging, type BlobConfig, type BlobStore } from '../blobs/index.js';
import { openStore, type EpisodeStore, type KyselyStore, type StoreLocation } from '../store/index.js';
import { mediaIdentity } from './episodes.js';

export interface OpenedMedia {
  store: KyselyStore;
  blobs: BlobStore;
  /** What start-up moved and removed, for the log. */
  recovered: { moved: number; staging: number; orphans: number };
}

export async function openMedia(
  location: StoreLocation,
  blobConfig: BlobConfig,
  o: {
    tmpDir: string;
    graceMs: number;
    /** The server's start: staging files and unreferenced blobs a killed process left are removed (not by a CLI beside a running server). */
    recover: boolean;
  },
): Promise<OpenedMedia> {
  const store = await openStore(location);
  let blobs: BlobStore | undefined;
  try {
    blobs = await openBlobStore(blobConfig, o.tmpDir);
    // Rows an older version wrote after this one migrated the store (a rolling upgrade) get their ids.
    await store.backfillEpisodeIds();
    const moved = await moveLegacyMedia(store, blobs);
    if (!o.recover) return { store, blobs, recovered: { moved, staging: 0, orphans: 0 } };
    // One server owns a SQLite store: no upload of another is in flight, so nothing needs a grace.
    const graceMs = store.dialect === 'sqlite' ? 0 : o.graceMs;
    // Staging in the temp dir (S3) and decoder copies are this process's own: nothing of another's is there.
    const staging = await sweepStaging(blobs.stagingDir, blobConfig.backend === 's3' ? 0 : graceMs);
    await sweepStaging(path.join(o.tmpDir, 'blobs'), 0);
    const orphans = await store.collectBlobs(graceMs, (sha) => (blobs as BlobStore).delete(sha), 10_000);
    return { store, blobs, recovered: { moved, staging, orphans } };
  } catch (err) {
    await blobs?.close();
    await store.close();
    throw err;
  }
}

/**
 * Moves uploads that a version before the blob store kept in the database into it, one file at
 * a time (a file is read whole from its row: the old layout allowed nothing else), then gives
 * the episode the media identity of this version. Safe to run on several replicas at once.
 */
export async function moveLegacyMedia(store: EpisodeStore, blobs: BlobStore): Promise<number> {
  let moved = 0;
  const touched = new Set<string>();
  for (;;) {
    const file = await store.nextLegacyMedia();
    if (!file) break;
    const staged = await stageStream([file.bytes], blobs.stagingDir);
    try {
      await store.claimBlobs([staged]);
      const local = await blobs.commit(staged);
      await local.release();
    } catch (err) {
      await discardStaged(staged);
      throw err;
    }
    await store.adoptLegacyMedia(file, { name: file.name, sha256: staged.sha256, size: staged.size });
    touched.add(file.episodeKey);
    moved++;
  }
  for (const key of touched) {
    const episode = await store.getEpisode(key);
    const refs = await store.episodeMedia(key);
    if (episode && refs.length > 0) await store.setMediaSha256(key, mediaIdentity(episode.mediaKind, refs));
  }
  return moved;
}
