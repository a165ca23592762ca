// Removes the media of finished episodes once ARMOR_MEDIA_RETENTION has passed (queued and
// running episodes keep theirs whatever their age: they still need it), then the blobs no
// episode refers to any more (a blob two episodes share stays while either needs it).
import type { BlobStore } from '../blobs/index.js';
import type { EpisodeStore } from '../store/index.js';

export class MediaRetention {
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<{ refs: number; blobs: number }> | undefined;

  constructor(
    private readonly store: EpisodeStore,
    private readonly blobs: BlobStore,
    private readonly o: { retentionMs: number; graceMs: number },
    private readonly log: { info: (obj: object, msg: string) => void; warn: (obj: object, msg: string) => void },
  ) {}

  /**
   * Sweeps now, then every `everyMs` (default: a tenth of the retention, between 1 min and
   * 1 h; with retention 0, every minute, for the blobs of finished sync episodes).
   */
  start(everyMs = Math.min(3_600_000, Math.max(60_000, this.o.retentionMs / 10))): void {
    if (this.timer) return;
    void this.sweep();
    this.timer = setInterval(() => void this.sweep(), everyMs);
    this.timer.unref();
  }

  /** One sweep at a time; a call during one waits for it. */
  sweep(): Promise<{ refs: number; blobs: number }> {
    this.sweeping ??= this.sweepOnce().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async sweepOnce(): Promise<{ refs: number; blobs: number }> {
    let refs = 0;
    let blobs = 0;
    try {
      refs = await this.store.expireMedia(Date.now() - this.o.retentionMs);
      if (refs > 0) this.log.info({ files: refs }, 'media past its retention let go');
      // In batches, so one sweep never holds the store long.
      for (;;) {
        const n = await this.store.collectBlobs(this.o.graceMs, (sha) => this.blobs.delete(sha), 200);
        blobs += n;
        if (n < 200) break;
      }
      if (blobs > 0) this.log.info({ blobs }, 'removed blobs no episode refers to');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'media retention sweep could not reach the store or the blob store');
    }
    return { refs, blobs };
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
}
