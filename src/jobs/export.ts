// Labelled episodes as training data: their stored media and a manifest.jsonl in the format of
// models/data (what `armor-serve eval --data` and models/tooling read). An operator's
// explanation makes an episode dense; a label alone keeps it sparse, as in the ARMOR paper.
import { createWriteStream } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { BlobStore } from '../blobs/index.js';
import { sniffFile, type EpisodeResponse } from '../pipeline/index.js';
import type { EpisodeRecord, EpisodeStore, LabelRecord } from '../store/index.js';
import { safeFileName } from './stored-media.js';

export interface ExportOptions {
  outDir: string;
  since?: number;
  cellId?: string;
  /** Only episodes an operator labelled; otherwise the rest carry the model's label (label_source "model"). */
  labelledOnly: boolean;
}

export interface ExportSummary {
  exported: number;
  operatorLabelled: number;
  dense: number;
  /** Finished episodes left out because their media is past its retention. */
  withoutMedia: number;
}

/** One line of models/data's manifest.jsonl (plus where the label came from and when). */
export interface ManifestLine {
  id: string;
  kind: 'video' | 'tiles';
  file?: string;
  files?: string[];
  task: string;
  label: 'failure' | 'success';
  failure_mode?: string;
  explanation: string;
  dense: boolean;
  duration_s?: number;
  cell_id: string | null;
  label_source: 'operator' | 'model';
  labelled_by?: string;
  created_at: string;
}

const EXTENSIONS: Record<string, string> = { mp4: '.mp4', webm: '.webm', matroska: '.mkv', mpegts: '.ts', jpeg: '.jpg', png: '.png' };
const PAGE = 200;

function manifestLine(e: EpisodeRecord, label: LabelRecord | undefined, files: string[]): ManifestLine {
  const result = e.result as EpisodeResponse;
  const labelled = label ? label.label : (result.detection.label as 'failure' | 'success');
  const mode = label ? (label.failureMode ?? undefined) : labelled === 'success' ? 'success' : undefined;
  // The fields in models/data's order, then what only an export knows.
  return {
    id: e.id,
    kind: e.mediaKind,
    ...(e.mediaKind === 'video' ? { file: files[0] } : { files }),
    task: e.task,
    label: labelled,
    ...(mode ? { failure_mode: mode } : {}),
    explanation: label?.explanation ?? '',
    dense: Boolean(label?.explanation),
    ...(result.input.duration_s !== null ? { duration_s: result.input.duration_s } : {}),
    cell_id: e.cellId,
    label_source: label ? 'operator' : 'model',
    ...(label?.by ? { labelled_by: label.by } : {}),
    created_at: new Date(e.createdAt).toISOString(),
  };
}

export async function exportEpisodes(store: EpisodeStore, blobs: BlobStore, o: ExportOptions): Promise<ExportSummary> {
  await mkdir(o.outDir, { recursive: true });
  const summary: ExportSummary = { exported: 0, operatorLabelled: 0, dense: 0, withoutMedia: 0 };
  const lines: string[] = [];
  const stems = new Set<string>();
  let cursor: string | undefined;
  do {
    const page = await store.listEpisodes({
      status: 'succeeded',
      cellIds: o.cellId === undefined ? undefined : [o.cellId],
      humanLabel: o.labelledOnly ? 'any' : undefined,
      since: o.since,
      limit: PAGE,
      cursor,
    });
    for (const e of page.items) {
      const media = await store.episodeMedia(e.key);
      if (media.length === 0) {
        summary.withoutMedia++;
        continue;
      }
      // Ids differ only in characters a file name cannot hold: keep both.
      let stem = safeFileName(e.id);
      while (stems.has(stem)) stem += '_';
      stems.add(stem);
      const files: string[] = [];
      for (const [i, m] of media.entries()) {
        // Streamed from the blob store (checked against its hash on the way), named by its kind.
        const base = e.mediaKind === 'video' ? stem : `${stem}-view${i + 1}`;
        const partial = path.join(o.outDir, `${base}.part`);
        await pipeline(await blobs.read(m.sha256), createWriteStream(partial));
        const name = `${base}${EXTENSIONS[await sniffFile(partial)] ?? '.bin'}`;
        await rename(partial, path.join(o.outDir, name));
        files.push(name);
      }
      const label = (await store.listLabels(e.key)).at(-1);
      const line = manifestLine(e, label, files);
      lines.push(JSON.stringify(line));
      summary.exported++;
      if (label) summary.operatorLabelled++;
      if (line.dense) summary.dense++;
    }
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
  // Oldest first, like a generated set; the manifest is written last, so a partial export has none.
  await writeFile(path.join(o.outDir, 'manifest.jsonl'), lines.reverse().map((l) => `${l}\n`).join(''));
  return summary;
}
