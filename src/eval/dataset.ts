// Labelled episode sets: a directory with manifest.jsonl, one episode per line (the format
// models/data/generate_episodes.py writes; ML engineers can write their own).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { EpisodeMedia } from '../pipeline/index.js';
import { itemOfTask } from './grounding.js';

export interface LabelledEpisode {
  id: string;
  media: EpisodeMedia;
  task: string;
  failure: boolean;
  failureMode?: string;
  explanation?: string;
  /** The item the episode is about ("purple cylinder"): the manifest's `item`, else the one the task names. */
  item?: string;
  /** Who gave the label: an operator, or only the model (an export's unlabelled episodes); absent in generated sets. */
  labelSource?: 'operator' | 'model';
}

export class DatasetError extends Error {
  readonly code = 'invalid_dataset';
}

interface ManifestLine {
  id?: unknown;
  kind?: unknown;
  file?: unknown;
  files?: unknown;
  task?: unknown;
  label?: unknown;
  failure_mode?: unknown;
  explanation?: unknown;
  label_source?: unknown;
  item?: unknown;
}

export async function readDataset(dir: string, manifestName = 'manifest.jsonl'): Promise<LabelledEpisode[]> {
  const manifestPath = path.join(dir, manifestName);
  let text: string;
  try {
    text = await readFile(manifestPath, 'utf8');
  } catch {
    throw new DatasetError(`no ${manifestName} in ${dir}`);
  }
  const episodes: LabelledEpisode[] = [];
  for (const [index, raw] of text.split('\n').entries()) {
    if (raw.trim() === '') continue;
    const where = `${manifestPath}:${index + 1}`;
    let line: ManifestLine;
    try {
      line = JSON.parse(raw) as ManifestLine;
    } catch {
      throw new DatasetError(`${where}: not valid JSON`);
    }
    if (typeof line.id !== 'string' || typeof line.task !== 'string') throw new DatasetError(`${where}: id and task must be strings`);
    if (line.label !== 'failure' && line.label !== 'success') throw new DatasetError(`${where}: label must be "failure" or "success"`);
    let media: EpisodeMedia;
    if (line.kind === 'tiles' || Array.isArray(line.files)) {
      const files = line.files;
      if (!Array.isArray(files) || !files.every((f) => typeof f === 'string')) throw new DatasetError(`${where}: files must be a list of paths`);
      media = { kind: 'tiles', files: (files as string[]).map((f) => path.resolve(dir, f)) };
    } else {
      if (typeof line.file !== 'string') throw new DatasetError(`${where}: file must be a path`);
      media = { kind: 'video', file: path.resolve(dir, line.file) };
    }
    episodes.push({
      id: line.id,
      media,
      task: line.task,
      failure: line.label === 'failure',
      failureMode: typeof line.failure_mode === 'string' ? line.failure_mode : undefined,
      explanation: typeof line.explanation === 'string' && line.explanation.length > 0 ? line.explanation : undefined,
      item: typeof line.item === 'string' && line.item.length > 0 ? line.item : itemOfTask(line.task),
      labelSource: line.label_source === 'operator' || line.label_source === 'model' ? line.label_source : undefined,
    });
  }
  if (episodes.length === 0) throw new DatasetError(`${manifestPath} lists no episodes`);
  return episodes;
}
