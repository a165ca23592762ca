// Removes the media of finished episodes once ARMOR_MEDIA_RETENTION has passed. Queued and
// running episodes keep theirs whatever their age: they still need it.
import type { EpisodeStore } from '../store/index.js';

export class MediaRetention {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: EpisodeStore,
    private readonly retentionMs: number,
    private readonly log: { info: (obj: object, msg: string) => void; warn: (obj: object, msg: string) => void },
  ) {}

  /** Sweeps now, then every `everyMs` (default: a tenth of the retention, between 1 min and 1 h). */
  start(everyMs = Math.min(3_600_000, Math.max(60_000, this.retentionMs / 10))): void {
    if (this.timer) return;
    // Retention off: media goes as episodes finish; what an earlier retention kept goes now.
    if (this.retentionMs <= 0) {
      void this.sweep();
      return;
    }
    void this.sweep();
    this.timer = setInterval(() => void this.sweep(), everyMs);
    this.timer.unref();
  }

  async sweep(): Promise<number> {
    try {
      const removed = await this.store.expireMedia(Date.now() - this.retentionMs);
      if (removed > 0) this.log.info({ files: removed }, 'removed media past its retention');
      return removed;
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'media retention sweep could not reach the store');
      return 0;
    }
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
