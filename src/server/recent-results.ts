// A bounded, insertion-ordered store of recent results: GET /v1/episodes/:id reads it, and a
// retried POST with a known episode_id gets the stored answer instead of a second analysis.
export class RecentResults<T> {
  private readonly items = new Map<string, T>();
  private readonly capacity: number;

  constructor(capacity: number) {
    this.capacity = capacity;
  }

  has(id: string): boolean {
    return this.items.has(id);
  }

  get(id: string): T | undefined {
    return this.items.get(id);
  }

  set(id: string, value: T): void {
    if (this.capacity === 0) return;
    this.items.delete(id);
    this.items.set(id, value);
    while (this.items.size > this.capacity) this.items.delete(this.items.keys().next().value as string);
  }
}
