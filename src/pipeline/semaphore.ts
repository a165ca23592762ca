// A counting semaphore with FIFO waiters that can give up (abort): bounds how many ffmpeg
// processes run at once, so a burst of uploads queues instead of starving the engine.
export class Semaphore {
  private free: number;
  private readonly waiters: { grant: () => void }[] = [];

  constructor(size: number) {
    this.free = size;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  /** Resolves with a release function once a permit is free; rejects with the signal's reason if it aborts first. */
  acquire(signal?: AbortSignal): Promise<() => void> {
    const release = once(() => {
      const next = this.waiters.shift();
      if (next) next.grant();
      else this.free++;
    });
    if (this.free > 0) {
      this.free--;
      return Promise.resolve(release);
    }
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason as Error);
      const waiter = {
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(release);
        },
      };
      const onAbort = () => {
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) this.waiters.splice(at, 1);
        reject(signal?.reason as Error);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }
}

function once(fn: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    fn();
  };
}
