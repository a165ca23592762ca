// Admission before any upload is read: counts POST /v1/episodes requests in flight (uploading,
// decoding, queued or analysed) and refuses beyond capacity at once, with a Retry-After from
// how long episodes have recently taken.
export class Admission {
  private inflight = 0;
  private readonly capacity: number;
  private readonly workers: number;
  /** Moving average of an admitted request's duration (seconds). */
  private avgSec = 1;

  constructor(capacity: number, workers: number) {
    this.capacity = capacity;
    this.workers = workers;
  }

  get active(): number {
    return this.inflight;
  }

  /** A release function when admitted (call it once, when the request is over); undefined when full. */
  enter(): (() => void) | undefined {
    if (this.inflight >= this.capacity) return undefined;
    this.inflight++;
    const started = performance.now();
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.inflight--;
      this.avgSec = 0.8 * this.avgSec + 0.2 * ((performance.now() - started) / 1000);
    };
  }

  /** Seconds until a slot is likely free: the work ahead divided among the workers. */
  retryAfterSec(): number {
    return Math.min(60, Math.max(1, Math.ceil((this.avgSec * (this.inflight - this.capacity + 1)) / this.workers)));
  }
}
