// Admission before any upload is read: counts POST /v1/episodes requests in flight (uploading,
// decoding, queued or analysed) and the bytes they upload, and refuses beyond either budget at
// once, with a Retry-After from how long episodes have recently taken. A request that states
// its Content-Length reserves it whole; a chunked one is charged as its bytes arrive and cut
// when they would go over.
export interface AdmissionTicket {
  /** Charges `n` more body bytes; false when they do not fit (the upload must be cut). */
  charge(n: number): boolean;
  /** Ends the request's claim (idempotent). */
  release(): void;
}

export class Admission {
  private inflight = 0;
  private bytes = 0;
  private readonly capacity: number;
  private readonly workers: number;
  private readonly maxBytes: number;
  /** Moving average of an admitted request's duration (seconds). */
  private avgSec = 1;

  constructor(capacity: number, workers: number, maxBytes = Number.POSITIVE_INFINITY) {
    this.capacity = capacity;
    this.workers = workers;
    this.maxBytes = maxBytes;
  }

  get active(): number {
    return this.inflight;
  }

  /** Upload bytes reserved or received by the requests in flight. */
  get activeBytes(): number {
    return this.bytes;
  }

  /**
   * A ticket when admitted; 'requests' or 'bytes' says which budget is full. `contentLength`,
   * when the request states one, is reserved now.
   */
  enter(contentLength?: number): AdmissionTicket | 'requests' | 'bytes' {
    if (this.inflight >= this.capacity) return 'requests';
    const reserved = contentLength ?? 0;
    if (this.bytes + reserved > this.maxBytes) return 'bytes';
    this.inflight++;
    this.bytes += reserved;
    let held = reserved;
    // A stated length is the most the body can carry (Node's parser enforces it).
    let charged = 0;
    const stated = contentLength !== undefined;
    const started = performance.now();
    let left = false;
    return {
      charge: (n: number) => {
        if (left) return false;
        charged += n;
        if (stated) return charged <= reserved;
        if (this.bytes + n > this.maxBytes) return false;
        this.bytes += n;
        held += n;
        return true;
      },
      release: () => {
        if (left) return;
        left = true;
        this.inflight--;
        this.bytes -= held;
        this.avgSec = 0.8 * this.avgSec + 0.2 * ((performance.now() - started) / 1000);
      },
    };
  }

  /** Seconds until a slot is likely free: the work ahead divided among the workers. */
  retryAfterSec(): number {
    return Math.min(60, Math.max(1, Math.ceil((this.avgSec * Math.max(1, this.inflight - this.capacity + 1)) / this.workers)));
  }
}
