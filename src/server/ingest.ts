// Multipart ingest for POST /v1/episodes: each file part streams into the blob store's staging
// area while it is hashed and checked (its type, an image's size and wholeness, the view count,
// the bytes of the whole upload and of every upload in flight), so a refused upload is cut as
// soon as it is known bad and leaves nothing behind; the staged files are removed whatever
// happens, unless the blob store took them over.
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { discardStaged, stageStream } from '../blobs/index.js';
import type { Upload, UploadFile } from '../jobs/index.js';
import { PipelineError } from '../pipeline/index.js';
import { unavailable } from '../pipeline/engine-pool.js';
import { UploadCheck } from '../media/stream-check.js';

export interface IngestedEpisode {
  upload: Upload;
  fields: { task?: string; cell_id?: string; episode_id?: string; options?: string };
}

export interface IngestLimits {
  stagingDir: string;
  /** Media bytes of the whole upload (every file together). */
  maxUploadBytes: number;
  maxViews: number;
  /** Largest image a view may declare. */
  maxWidth: number;
  maxHeight: number;
  /** Charges body bytes against the bytes every upload in flight may use; false: over. */
  charge: (n: number) => boolean;
  retryAfterSec: () => number;
}

const ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;
const FIELDS = new Set(['task', 'cell_id', 'episode_id', 'options']);

function bad(code: string, message: string, status = 400): PipelineError {
  return new PipelineError(code, message, status);
}

/** Reads the request's parts into `staged` (the caller removes what is left there). */
async function readParts(request: FastifyRequest, limits: IngestLimits, staged: UploadFile[]): Promise<IngestedEpisode> {
  const fields: IngestedEpisode['fields'] = {};
  let kind: Upload['kind'] | undefined;
  let total = 0;
  for await (const part of request.parts()) {
    const name = part.fieldname.endsWith('[]') ? part.fieldname.slice(0, -2) : part.fieldname;
    if (part.type === 'field') {
      if (!FIELDS.has(name)) throw bad('unknown_field', `unknown field ${part.fieldname}; expected video, views, ${[...FIELDS].join(', ')}`);
      if (part.valueTruncated) throw bad('field_too_large', `field ${name} is too large`);
      if (name in fields) throw bad('duplicate_field', `field ${name} is given more than once`);
      fields[name as keyof IngestedEpisode['fields']] = String(part.value);
      continue;
    }
    // Every rule on the number and kind of files is decided before this part's bytes are read.
    if (name !== 'video' && name !== 'views') throw bad('unknown_field', `unknown file field ${part.fieldname}; expected video or views`);
    const partKind = name === 'video' ? 'video' : 'tiles';
    if (kind !== undefined && kind !== partKind) throw bad('ambiguous_media', 'send either `video` or `views`, not both');
    kind = partKind;
    if (kind === 'video' && staged.length >= 1) throw bad('too_many_videos', 'send one video file');
    if (kind === 'tiles' && staged.length >= limits.maxViews) throw bad('invalid_views', `views must hold 2 to ${limits.maxViews} images; got more`);
    const check = new UploadCheck(kind === 'video' ? 'video' : 'view', limits);
    // A part over the per-file limit makes the stream fail with FST_REQ_FILE_TOO_LARGE (413).
    const blob = await stageStream(part.file, limits.stagingDir, {
      inspect: (chunk) => {
        total += chunk.length;
        if (total > limits.maxUploadBytes) throw bad('payload_too_large', `the upload is over ${limits.maxUploadBytes} bytes`, 413);
        if (!limits.charge(chunk.length)) throw unavailable('queue_full', 'the uploads in flight hold as many bytes as the server takes; retry later', limits.retryAfterSec());
        check.push(chunk);
      },
    });
    // The client's file name, kept (sanitised where it is written to disk) for export.
    staged.push({ name: (part.filename || `${name}-${staged.length}`).slice(0, 255), staged: blob });
    check.end();
  }
  if (kind === undefined) throw bad('missing_media', 'send one video file as `video` or 2 or more images as `views`');
  if (kind === 'tiles' && staged.length < 2) throw bad('invalid_views', `views must hold 2 to ${limits.maxViews} images; got ${staged.length}`);
  for (const id of ['cell_id', 'episode_id'] as const) {
    const value = fields[id];
    if (value !== undefined && !ID_PATTERN.test(value)) throw bad(`invalid_${id}`, `${id} must match ${ID_PATTERN.source}`);
  }
  return { upload: { kind, files: staged }, fields };
}

/**
 * Removes upload directories of the version that staged uploads in the temp dir, left by a
 * killed process (older than an hour, so another instance sharing the directory keeps its
 * in-flight uploads).
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
 * Runs `work` on the ingested episode and removes its staged files afterwards, always. An
 * upload still arriving at `uploadDeadline` (epoch ms) is refused with 504 deadline_exceeded;
 * its files are removed once the connection has gone.
 */
export async function withIngest<T>(
  request: FastifyRequest,
  reply: FastifyReply,
  limits: IngestLimits,
  uploadDeadline: number,
  work: (episode: IngestedEpisode) => Promise<T>,
): Promise<T> {
  if (!request.isMultipart()) throw bad('unsupported_content_type', 'POST /v1/episodes takes multipart/form-data', 415);
  const staged: UploadFile[] = [];
  const reading = readParts(request, limits, staged);
  let settled = false;
  reading.then(
    () => (settled = true),
    () => (settled = true),
  );
  const cleanup = () => Promise.all(staged.map((f) => discardStaged(f.staged)));
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
    if (settled) await cleanup();
    else {
      // Still reading (a refused slow upload): once the answer is out, the connection is cut
      // (the rest of the upload is not wanted) and the partial files go.
      if (reply.raw.writableFinished || reply.raw.destroyed) request.raw.destroy();
      else reply.raw.once('close', () => request.raw.destroy());
      const afterRead = () => void reading.catch(() => undefined).finally(() => void cleanup());
      if (request.raw.destroyed) afterRead();
      else request.raw.once('close', afterRead);
    }
  }
}
