// Prometheus metrics: base units, _total counters, no per-episode labels. Cells are a label
// (the failure-rate alert is per cell), but only the cells the operator configured
// (ARMOR_METRIC_CELLS, cells of API keys): any other cell_id is "other", so no client can add
// series, and a configured cell never loses its label to junk ids.
import client from 'prom-client';
import type { EpisodeResponse } from '../pipeline/index.js';
import type { EpisodeOutcome, StoreStats } from '../store/index.js';

export interface MetricsSources {
  queueDepth: () => number;
  busyWorkers: () => number;
  workers: () => number;
  model: { name: string; version: string };
  provider: () => string;
  storeStats: () => Promise<StoreStats>;
  /** ARMOR_MAX_BACKLOG. */
  asyncBacklogLimit: number;
  /** Upload bytes reserved or received by POSTs in flight. */
  uploadBytesInFlight: () => number;
  /** Whether the blob store answers (its last check). */
  blobStoreUp: () => Promise<boolean>;
}

const STAGES = ['media', 'queue', 'preprocess', 'vision', 'prefix', 'suffix_prefill', 'detection', 'decode', 'total'] as const;

export class ServiceMetrics {
  readonly registry = new client.Registry();
  private readonly episodes: client.Counter<'cell' | 'result'>;
  private readonly errors: client.Counter<'code'>;
  private readonly stages: client.Histogram<'stage'>;
  private readonly rounds: client.Histogram;
  private readonly stops: client.Counter<'reason'>;
  private readonly reviews: client.Counter<'cell' | 'reason'>;
  private readonly reviewed: client.Counter<'cell' | 'needs_review'>;
  private readonly deliveries: client.Counter<'endpoint' | 'outcome'>;
  private readonly labels: client.Counter<'agreed'>;
  private readonly cells: ReadonlySet<string>;

  constructor(sources: MetricsSources, cells: readonly string[] = []) {
    this.cells = new Set(cells);
    const registers = [this.registry];
    client.collectDefaultMetrics({ register: this.registry });
    this.episodes = new client.Counter({
      name: 'armor_episodes_total',
      help: 'Episodes analysed, by cell and detected result (failure or success).',
      labelNames: ['cell', 'result'],
      registers,
    });
    this.errors = new client.Counter({ name: 'armor_episode_errors_total', help: 'Episodes refused or failed, by error code.', labelNames: ['code'], registers });
    this.stages = new client.Histogram({
      name: 'armor_stage_duration_seconds',
      help: 'Time spent per pipeline stage for one episode.',
      labelNames: ['stage'],
      // 20 s is a boundary: ArmorSlowEpisodes reads le="20" exactly, without interpolation.
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60],
      registers,
    });
    this.rounds = new client.Histogram({
      name: 'armor_refinement_rounds',
      help: 'Refinement rounds run per episode.',
      buckets: [1, 2, 3, 4, 5, 6, 7, 8],
      registers,
    });
    this.stops = new client.Counter({ name: 'armor_stop_reason_total', help: 'Why refinement stopped.', labelNames: ['reason'], registers });
    this.reviews = new client.Counter({
      name: 'armor_needs_review_total',
      help: 'Answers flagged needs_review, by cell and reason (an answer with several reasons counts once per reason).',
      labelNames: ['cell', 'reason'],
      registers,
    });
    this.reviewed = new client.Counter({
      name: 'armor_answers_needs_review_total',
      help: 'Answers by cell and whether they were flagged needs_review (the flagged share is the review load).',
      labelNames: ['cell', 'needs_review'],
      registers,
    });
    this.deliveries = new client.Counter({
      name: 'armor_webhook_deliveries_total',
      help: 'Webhook delivery attempts by endpoint and outcome (2xx, 3xx, 4xx, 5xx, timeout, network_error).',
      labelNames: ['endpoint', 'outcome'],
      registers,
    });
    this.labels = new client.Counter({
      name: 'armor_labels_total',
      help: "Operator labels recorded, by whether they agreed with the model's label.",
      labelNames: ['agreed'],
      registers,
    });
    // Both series exist from the start, so a disagreement ratio is defined before the first label.
    for (const agreed of ['true', 'false']) this.labels.inc({ agreed }, 0);
    // One store query per scrape serves the three store gauges.
    let pending: Promise<StoreStats> | undefined;
    const stats = () => {
      pending ??= sources.storeStats().finally(() => setTimeout(() => (pending = undefined), 250).unref());
      return pending;
    };
    new client.Gauge({
      name: 'armor_episodes_stored',
      help: 'Episodes in the durable store by status (the same figure on every replica sharing a database).',
      labelNames: ['status'],
      registers,
      async collect() {
        const s = await stats();
        for (const [status, n] of Object.entries(s.episodes)) this.set({ status }, n);
      },
    });
    new client.Gauge({
      name: 'armor_webhook_backlog_messages',
      help: 'Webhook deliveries not yet delivered and not given up on.',
      registers,
      async collect() {
        this.set((await stats()).pendingDeliveries);
      },
    });
    new client.Gauge({
      name: 'armor_webhook_oldest_pending_age_seconds',
      help: 'Age of the oldest webhook delivery not yet delivered (0 when there is none).',
      registers,
      async collect() {
        const oldest = (await stats()).oldestPendingDeliveryAt;
        this.set(oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000));
      },
    });
    new client.Gauge({
      name: 'armor_async_backlog',
      help: 'Asynchronous episodes queued or running (the same figure on every replica sharing a database).',
      registers,
      async collect() {
        this.set((await stats()).asyncBacklog);
      },
    });
    new client.Gauge({
      name: 'armor_async_backlog_limit',
      help: 'ARMOR_MAX_BACKLOG: past it, asynchronous POSTs get 503 backlog_full.',
      registers,
      collect() {
        this.set(sources.asyncBacklogLimit);
      },
    });
    new client.Gauge({
      name: 'armor_upload_bytes_in_flight',
      help: 'Upload bytes reserved or received by POSTs in flight (bounded by ARMOR_MAX_UPLOAD_BYTES_IN_FLIGHT).',
      registers,
      collect() {
        this.set(sources.uploadBytesInFlight());
      },
    });
    new client.Gauge({
      name: 'armor_blob_store_up',
      help: 'Whether the blob store (media directory or bucket) answers: 1 or 0.',
      registers,
      async collect() {
        this.set((await sources.blobStoreUp()) ? 1 : 0);
      },
    });
    new client.Gauge({ name: 'armor_queue_depth', help: 'Episodes waiting for an engine worker.', registers, collect() { this.set(sources.queueDepth()); } });
    new client.Gauge({ name: 'armor_engine_workers_busy', help: 'Engine workers running an episode.', registers, collect() { this.set(sources.busyWorkers()); } });
    new client.Gauge({ name: 'armor_engine_workers', help: 'Engine workers started.', registers, collect() { this.set(sources.workers()); } });
    new client.Gauge({
      name: 'armor_model_info',
      help: 'The served model and the execution provider in use (value is always 1).',
      labelNames: ['name', 'version', 'provider'],
      registers,
      collect() {
        this.reset();
        this.set({ name: sources.model.name, version: sources.model.version, provider: sources.provider() }, 1);
      },
    });
  }

  private cellLabel(cell: string | null): string {
    if (!cell) return 'unknown';
    return this.cells.has(cell) ? cell : 'other';
  }

  observeEpisode(result: EpisodeResponse): void {
    this.episodes.inc({ cell: this.cellLabel(result.cell_id), result: result.detection.failure ? 'failure' : 'success' });
    this.rounds.observe(result.rounds.length);
    this.stops.inc({ reason: result.stop_reason });
    const cell = this.cellLabel(result.cell_id);
    this.reviewed.inc({ cell, needs_review: String(result.needs_review) });
    for (const reason of result.review_reasons) this.reviews.inc({ cell, reason });
    const t = result.timings;
    const seconds = (key: string) => (t[key] ?? 0) / 1000;
    const values: Record<(typeof STAGES)[number], number> = {
      media: seconds('media_ms'),
      queue: seconds('queue_ms'),
      preprocess: seconds('preprocess_ms'),
      vision: seconds('vision_ms'),
      prefix: seconds('prefix_ms'),
      suffix_prefill: seconds('suffix_prefill_ms'),
      detection: seconds('detection_ms'),
      decode: seconds('decode_ms'),
      total: seconds('total_ms'),
    };
    for (const stage of STAGES) this.stages.observe({ stage }, values[stage]);
  }

  observeError(code: string): void {
    this.errors.inc({ code });
  }

  /** An episode's recorded outcome. A sync request's error is counted by its route, once. */
  observeOutcome(episode: { mode: 'sync' | 'async' }, outcome: EpisodeOutcome): void {
    if (outcome.status === 'succeeded') this.observeEpisode(outcome.result as EpisodeResponse);
    else if (episode.mode === 'async') this.observeError(outcome.error.code);
  }

  observeLabel(agreed: boolean): void {
    this.labels.inc({ agreed: String(agreed) });
  }

  observeDelivery(endpoint: string, outcome: string): void {
    this.deliveries.inc({ endpoint, outcome });
  }
}
