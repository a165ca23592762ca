// An episode's stored upload as local files for the decoders (which read paths), for as long
// as a callback needs them: the blob files themselves on the filesystem backend, temporary
// copies streamed from the object store otherwise.
import type { BlobStore, LocalBlob } from '../blobs/index.js';
import type { EpisodeMedia } from '../pipeline/index.js';
import type { EpisodeRecord, EpisodeStore, MediaRef } from '../store/index.js';

/** A stored file name made safe for a path (it came from the client). */
export function safeFileName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_') || 'file';
}

export function mediaOf(kind: 'video' | 'tiles', paths: string[]): EpisodeMedia {
  return kind === 'video' ? { kind: 'video', file: paths[0] } : { kind: 'tiles', files: paths };
}

/** Local files for `refs`, released (temporary copies removed) when `use` settles. */
export async function withLocalBlobs<T>(blobs: BlobStore, refs: readonly MediaRef[], tmpDir: string, use: (paths: string[]) => Promise<T>, signal?: AbortSignal): Promise<T> {
  const locals: LocalBlob[] = [];
  try {
    for (const ref of refs) locals.push(await blobs.local(ref.sha256, tmpDir, signal));
    return await use(locals.map((l) => l.path));
  } finally {
    await Promise.all(locals.map((l) => l.release()));
  }
}

/** Runs `use` with the episode's media as local files (null when none is stored any more). */
export async function withStoredMedia<T>(
  store: EpisodeStore,
  blobs: BlobStore,
  episode: EpisodeRecord,
  tmpDir: string,
  use: (media: EpisodeMedia | null) => Promise<T>,
  signal?: AbortSignal,
): Promise<T> {
  const refs = await store.episodeMedia(episode.key);
  if (refs.length === 0) return use(null);
  return withLocalBlobs(blobs, refs, tmpDir, (paths) => use(mediaOf(episode.mediaKind, paths)), signal);
}
