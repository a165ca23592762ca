// Delivers the outbox: claims due deliveries from the store, signs each with Standard
// Webhooks, POSTs it, and records the outcome. At-least-once; the same webhook-id on every
// retry; success only on 2xx; 410 disables the endpoint; Retry-After is honoured on 429/503.
import { Webhook } from 'standardwebhooks';
import { Agent, request } from 'undici';
import type { AttemptOutcome, DueDelivery, EpisodeStore } from '../store/index.js';
import type { WebhookEndpoint } from './endpoints.js';

export interface DispatcherOptions {
  owner: string;
  /** Delay before each attempt; its length is the attempt budget. */
  schedule: number[];
  timeoutMs: number;
  pollMs: number;
  /** Longest Retry-After honoured. */
  maxRetryAfterMs?: number;
  batch?: number;
  userAgent: string;
  log: { warn: (obj: object, msg: string) => void; info: (obj: object, msg: string) => void };
  /** Called after every attempt with the endpoint and the outcome class (2xx, 4xx, timeout, ...). */
  onAttempt?: (endpointId: string, outcome: string) => void;
}

const RESPONSE_CAP = 4096;

/** Retry-After as seconds or an HTTP date, in ms from now; undefined when absent or unreadable. */
export function retryAfterMs(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (!raw) return undefined;
  if (/^\d+$/.test(raw.trim())) return Number(raw.trim()) * 1000;
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Up to 10% later, so retries of many messages after an outage do not arrive in lockstep. */
function jitter(ms: number): number {
  return ms + Math.floor(Math.random() * ms * 0.1);
}

export class WebhookDispatcher {
  private readonly store: EpisodeStore;
  private readonly endpoints: Map<string, WebhookEndpoint>;
  private readonly signers = new Map<string, Webhook>();
  private readonly o: Required<Omit<DispatcherOptions, 'onAttempt'>> & Pick<DispatcherOptions, 'onAttempt'>;
  // No redirects are followed (undici's request never does without an interceptor).
  private readonly agent: Agent;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private again = false;

  constructor(store: EpisodeStore, endpoints: WebhookEndpoint[], options: DispatcherOptions) {
    this.store = store;
    this.endpoints = new Map(endpoints.map((e) => [e.id, e]));
    for (const e of endpoints) this.signers.set(e.id, new Webhook(e.secret));
    this.o = { maxRetryAfterMs: 24 * 3_600_000, batch: 16, ...options };
    this.agent = new Agent({ connect: { timeout: options.timeoutMs }, headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs });
  }

  get configured(): boolean {
    return this.endpoints.size > 0;
  }

  start(): void {
    if (!this.configured) return;
    this.schedule(0);
  }

  /** Something was written to the outbox: look now rather than at the next poll. */
  wake(): void {
    if (!this.configured || this.stopped) return;
    if (this.running) this.again = true;
    else this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.tick().finally(() => {
        this.running = undefined;
        const again = this.again;
        this.again = false;
        this.schedule(again ? 0 : this.o.pollMs);
      });
    }, ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    try {
      const disabled = await this.store.disabledEndpoints();
      const due = await this.store.claimDueDeliveries(this.o.owner, this.o.timeoutMs * 2 + 5000, this.o.batch);
      await Promise.all(due.map((d) => this.deliver(d, disabled.get(d.endpointId)?.reason)));
      if (due.length === this.o.batch) this.again = true;
    } catch (err) {
      this.o.log.warn({ err: (err as Error).message }, 'webhook dispatcher could not read the outbox');
    }
  }

  private async deliver(d: DueDelivery, disabledReason: string | undefined): Promise<void> {
    const endpoint = this.endpoints.get(d.endpointId);
    if (!endpoint) {
      // Not configured here (a replica with older or newer configuration): left to the replicas
      // that know it once this claim expires, never failed for good.
      this.o.log.warn({ delivery: d.id, endpoint: d.endpointId }, 'webhook endpoint not configured on this replica; delivery left pending');
      return;
    }
    if (disabledReason !== undefined) {
      await this.store.recordAttempt(d.id, this.o.owner, { kind: 'failed', statusCode: null, error: `endpoint disabled: ${disabledReason}` });
      return;
    }
    const outcome = await this.attempt(endpoint, d);
    await this.store.recordAttempt(d.id, this.o.owner, outcome);
    if (outcome.kind !== 'delivered') {
      this.o.log.warn({ delivery: d.id, endpoint: endpoint.id, attempt: d.attempts + 1, status: outcome.statusCode, error: outcome.error, outcome: outcome.kind }, 'webhook delivery failed');
    }
    if (outcome.statusCode === 410) {
      await this.store.disableEndpoint(endpoint.id, 'the endpoint answered 410 Gone');
      this.o.log.warn({ endpoint: endpoint.id }, 'webhook endpoint answered 410 Gone: disabled');
    }
  }

  private async attempt(endpoint: WebhookEndpoint, d: DueDelivery): Promise<AttemptOutcome> {
    const signer = this.signers.get(endpoint.id) as Webhook;
    const now = new Date();
    const headers = {
      'content-type': 'application/json',
      'user-agent': this.o.userAgent,
      'webhook-id': d.messageId,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': signer.sign(d.messageId, now, d.payload),
    };
    let statusCode: number | null = null;
    let error: string;
    let retryAfter: number | undefined;
    try {
      const res = await request(endpoint.url, {
        method: 'POST',
        headers,
        body: d.payload,
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.o.timeoutMs),
      });
      statusCode = res.statusCode;
      const text = await readCapped(res.body);
      this.o.onAttempt?.(endpoint.id, `${Math.floor(statusCode / 100)}xx`);
      if (statusCode >= 200 && statusCode < 300) return { kind: 'delivered', statusCode };
      error = `HTTP ${statusCode}${text ? `: ${text.slice(0, 200)}` : ''}`;
      if (statusCode === 410) return { kind: 'failed', statusCode, error };
      if (statusCode === 429 || statusCode === 503) retryAfter = retryAfterMs(res.headers['retry-after']);
    } catch (err) {
      const e = err as Error & { code?: string };
      const timedOut = e.name === 'TimeoutError' || e.code === 'UND_ERR_HEADERS_TIMEOUT' || e.code === 'UND_ERR_BODY_TIMEOUT' || e.code === 'UND_ERR_CONNECT_TIMEOUT';
      this.o.onAttempt?.(endpoint.id, timedOut ? 'timeout' : 'network_error');
      error = timedOut ? `no answer within ${this.o.timeoutMs} ms` : `${e.code ?? e.name}: ${e.message}`;
    }
    const next = d.attempts + 1;
    if (next >= this.o.schedule.length) return { kind: 'failed', statusCode, error: `${error} (attempt ${next} of ${this.o.schedule.length}, none left)` };
    const delay = retryAfter !== undefined ? Math.min(retryAfter, this.o.maxRetryAfterMs) : jitter(this.o.schedule[next]);
    return { kind: 'retry', statusCode, error, nextAttemptAt: Date.now() + delay };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    await this.agent.close();
  }
}

/** Reads at most RESPONSE_CAP bytes of a response body, then drops the rest. */
async function readCapped(body: AsyncIterable<Buffer> & { destroy(): void }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.length;
    if (size >= RESPONSE_CAP) {
      body.destroy();
      break;
    }
  }
  return Buffer.concat(chunks).subarray(0, RESPONSE_CAP).toString('utf8').trim();
}
