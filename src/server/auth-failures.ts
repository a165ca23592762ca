// Failed authentications (a missing or wrong API key) per client address: at most `limit` are
// answered 401 in any 60 s; the rest get 429 until the oldest of them is a minute old. Valid
// keys are never held back by this (a misconfigured robot must not lock out its neighbours
// behind the same address). The table of addresses is bounded.
const WINDOW_MS = 60_000;

export class AuthFailures {
  private readonly byAddress = new Map<string, number[]>();

  constructor(
    private readonly limit: number,
    private readonly maxAddresses = 10_000,
  ) {}

  /**
   * Records a failure from `address`; undefined when it may be answered 401, or the seconds to
   * wait when it is over the limit (429).
   */
  fail(address: string, now = Date.now()): number | undefined {
    let times = this.byAddress.get(address);
    if (times) {
      while (times.length > 0 && times[0] <= now - WINDOW_MS) times.shift();
      if (times.length >= this.limit) return Math.max(1, Math.ceil((times[0] + WINDOW_MS - now) / 1000));
      // Most recently seen last, so the oldest address is evicted first.
      this.byAddress.delete(address);
    } else {
      times = [];
      if (this.byAddress.size >= this.maxAddresses) {
        const oldest = this.byAddress.keys().next().value;
        if (oldest !== undefined) this.byAddress.delete(oldest);
      }
    }
    times.push(now);
    this.byAddress.set(address, times);
    return undefined;
  }

  get addresses(): number {
    return this.byAddress.size;
  }
}
