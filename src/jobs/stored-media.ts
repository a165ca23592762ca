// An episode's stored upload written back to files, for the decoders (which read paths), for
// as long as a callback needs them.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { EpisodeMedia } from '../pipeline/index.js';
import type { EpisodeRecord, EpisodeStore } from '../store/index.js';

/** A stored file name made safe for a path (it came from the client). */
export function safeFileName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_') || 'file';
}

/** Runs `use` with the episode's media as temp files (null when none is stored); removes them after. */
export async function withStoredMedia<T>(store: EpisodeStore, episode: EpisodeRecord, tmpDir: string, use: (media: EpisodeMedia | null) => Promise<T>): Promise<T> {
  const files = await store.loadMedia(episode.id);
  if (files.length === 0) return use(null);
  const dir = await mkdir(tmpDir, { recursive: true }).then(() => mkdtemp(path.join(tmpDir, 'episode-')));
  try {
    const paths: string[] = [];
    for (const [i, f] of files.entries()) {
      const file = path.join(dir, `${i}-${safeFileName(f.name)}`);
      await writeFile(file, f.bytes);
      paths.push(file);
    }
    return await use(episode.mediaKind === 'video' ? { kind: 'video', file: paths[0] } : { kind: 'tiles', files: paths });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
