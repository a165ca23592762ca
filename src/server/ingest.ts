// Multipart ingest for POST /v1/episodes: every file part streams to a per-request temp
// directory (ffmpeg reads files, never stdin), the fields are checked, and the directory is
// removed whatever happens.
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PipelineError, sniffFile, type EpisodeMedia } from '../pipeline/index.js';

export interface IngestedEpisode {
  media: EpisodeMedia;
  fields: { task?: string; cell_id?: string; episode_id?: string; options?: string };
  dir: string;
}

const ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
const FIELDS = new Set(['task', 'cell_id', 'episode_id', 'options']);
const VIDEO_KINDS = new Set(['mp4', 'webm', 'matroska', 'quicktime']);
const IMAGE_KINDS = new Set(['jpeg', 'png']);

function bad(code: string, message: string, status = 400): PipelineError {
  return new PipelineError(code, message, status);
}

/** Reads the request's parts. The caller must remove `dir` (see withIngest). */
async function readParts(request: FastifyRequest, dir: string): Promise<IngestedEpisode> {
  const fields: IngestedEpisode['fields'] = {};
  const videos: string[] = [];
  const views: string[] = [];
  let index = 0;
  for await (const part of request.parts()) {
    const name = part.fieldname.endsWith('[]') ? part.fieldname.slice(0, -2) : part.fieldname;
    if (part.type === 'field') {
      if (!FIELDS.has(name)) throw bad('unknown_field', `unknown field ${part.fieldname}; expected video, views, ${[...FIELDS].join(', ')}`);
      if (part.valueTruncated) throw bad('field_too_large', `field ${name} is too large`);
      if (name in fields) throw bad('duplicate_field', `field ${name} is given more than once`);
      fields[name as keyof IngestedEpisode['fields']] = String(part.value);
      continue;
    }
    if (name !== 'video' && name !== 'views') {
      part.file.resume();
      throw bad('unknown_field', `unknown file field ${part.fieldname}; expected video or views`);
    }
    const file = path.join(dir, `${name}-${index++}`);
    // A part over the size limit makes the stream fail with FST_REQ_FILE_TOO_LARGE (413).
    await pipeline(part.file, createWriteStream(file));
    (name === 'video' ? videos : views).push(file);
  }
  if (videos.length === 0 && views.length === 0) throw bad('missing_media', 'send one video file as `video` or 2 or more images as `views`');
  if (videos.length > 0 && views.length > 0) throw bad('ambiguous_media', 'send either `video` or `views`, not both');
  if (videos.length > 1) throw bad('too_many_videos', `send one video file; got ${videos.length}`);
  for (const id of ['cell_id', 'episode_id'] as const) {
    const value = fields[id];
    if (value !== undefined && !ID_PATTERN.test(value)) throw bad(`invalid_${id}`, `${id} must match ${ID_PATTERN.source}`);
  }
  for (const file of [...videos, ...views]) {
    const label = path.basename(file);
    if ((await stat(file)).size === 0) throw bad('empty_file', `${label.startsWith('video') ? 'video' : 'a view'} is an empty file`);
    const kind = await sniffFile(file);
    const expected = videos.length > 0 ? VIDEO_KINDS : IMAGE_KINDS;
    if (!expected.has(kind)) {
      throw bad('unsupported_media', videos.length > 0 ? 'video is not an MP4, WebM or Matroska file' : 'every view must be a JPEG or PNG image', 415);
    }
  }
  const media: EpisodeMedia = videos.length > 0 ? { kind: 'video', file: videos[0] } : { kind: 'tiles', files: views };
  return { media, fields, dir };
}

/**
 * Removes upload directories a killed process left behind (older than an hour, so another
 * instance sharing the directory keeps its in-flight uploads).
 */
export async function sweepStaleUploads(tmpRoot: string, olderThanMs = 3600_000): Promise<number> {
  const entries = await readdir(tmpRoot).catch(() => [] as string[]);
  let removed = 0;
  for (const name of entries) {
    if (!name.startsWith('episode-')) continue;
    const dir = path.join(tmpRoot, name);
    const info = await stat(dir).catch(() => undefined);
    if (info && Date.now() - info.mtimeMs > olderThanMs) {
      await rm(dir, { recursive: true, force: true });
      removed++;
    }
  }
  return removed;
}

/**
 * Runs `work` on the ingested episode and removes its temp files afterwards, always. An
 * upload still arriving at `uploadDeadline` (epoch ms) is refused with 504 deadline_exceeded;
 * its files are removed once the connection has gone.
 */
export async function withIngest<T>(
  request: FastifyRequest,
  reply: FastifyReply,
  tmpRoot: string,
  uploadDeadline: number,
  work: (episode: IngestedEpisode) => Promise<T>,
): Promise<T> {
  if (!request.isMultipart()) throw bad('unsupported_content_type', 'POST /v1/episodes takes multipart/form-data', 415);
  await mkdir(tmpRoot, { recursive: true });
  const dir = await mkdtemp(path.join(tmpRoot, 'episode-'));
  const reading = readParts(request, dir);
  let settled = false;
  reading.then(
    () => (settled = true),
    () => (settled = true),
  );
  let timer: NodeJS.Timeout | undefined;
  try {
    let episode: IngestedEpisode;
    try {
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(bad('deadline_exceeded', 'the upload did not arrive before the deadline', 504)), Math.max(0, uploadDeadline - Date.now()));
      });
      episode = await Promise.race([reading, late]);
    } catch (err) {
      // Parser errors without a status (cut bodies, no boundary) are the client's, not ours.
      if ((err as { statusCode?: number }).statusCode) throw err;
      if (request.raw.readableAborted) throw bad('client_closed', 'the client closed the connection during the upload', 499);
      throw bad('invalid_multipart', `the multipart body cannot be read: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
    return await work(episode);
  } finally {
    if (settled) await rm(dir, { recursive: true, force: true });
    else {
      // Still reading (a refused slow upload): once the answer is out, the connection is cut
      // (the rest of the upload is not wanted) and the partial files go.
      const cleanup = () => void rm(dir, { recursive: true, force: true });
      if (reply.raw.writableFinished || reply.raw.destroyed) request.raw.destroy();
      else reply.raw.once('close', () => request.raw.destroy());
      if (request.raw.destroyed) cleanup();
      else request.raw.once('close', cleanup);
    }
  }
}
