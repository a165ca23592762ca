// What operators do with finished episodes: label the answer (the labels become training data
// through `armor-serve export`). The frames the model saw are rendered by frames.ts.
import type { EpisodeStore, LabelRecord, NewLabel } from '../store/index.js';

export interface ReviewOptions {
  maxLabelsPerEpisode: number;
  onLabel?: (label: LabelRecord) => void;
}

export class EpisodeReview {
  private readonly store: EpisodeStore;
  private readonly o: ReviewOptions;

  constructor(store: EpisodeStore, options: ReviewOptions) {
    this.store = store;
    this.o = options;
  }

  /** The label stored, or why not: the episode is gone, or has as many labels as allowed. */
  async label(episodeKey: string, label: NewLabel): Promise<LabelRecord | 'not_found' | 'too_many_labels'> {
    const stored = await this.store.addLabel(episodeKey, label, this.o.maxLabelsPerEpisode);
    if (typeof stored !== 'string') this.o.onLabel?.(stored);
    return stored;
  }
}
