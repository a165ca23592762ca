// What operators do with finished episodes: look at the frames the model saw, and label the
// answer (the labels become training data through `armor-serve export`).
import type { EpisodePipeline } from '../pipeline/index.js';
import type { EpisodeRecord, EpisodeStore, LabelRecord, NewLabel } from '../store/index.js';
import { withStoredMedia } from './stored-media.js';

export interface FramesImage {
  png: Buffer;
  frames: number;
  columns: number;
}

export interface ReviewOptions {
  tmpDir: string;
  onLabel?: (label: LabelRecord) => void;
}

export class EpisodeReview {
  private readonly store: EpisodeStore;
  private readonly pipeline: EpisodePipeline;
  private readonly o: ReviewOptions;

  constructor(store: EpisodeStore, pipeline: EpisodePipeline, options: ReviewOptions) {
    this.store = store;
    this.pipeline = pipeline;
    this.o = options;
  }

  /** The frames the model saw, decoded again from the stored upload; undefined once the media is gone. */
  frames(episode: EpisodeRecord, signal?: AbortSignal): Promise<FramesImage | undefined> {
    return withStoredMedia(this.store, episode, this.o.tmpDir, async (media) => {
      if (!media) return undefined;
      const sheet = await this.pipeline.framesPng(media, signal);
      return { png: sheet.png, frames: sheet.frames, columns: sheet.columns };
    });
  }

  async label(episodeId: string, label: NewLabel): Promise<LabelRecord | undefined> {
    const stored = await this.store.addLabel(episodeId, label);
    if (stored) this.o.onLabel?.(stored);
    return stored;
  }
}
