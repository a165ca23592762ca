// Webhook endpoints: one from ARMOR_WEBHOOK_URL + ARMOR_WEBHOOK_SECRET, or several from the
// JSON file named by ARMOR_WEBHOOKS_FILE. Validated at start-up; errors name file and field.
import { Buffer } from 'node:buffer';

export const EVENT_TYPES = ['episode.completed', 'episode.failed'] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface WebhookEndpoint {
  id: string;
  url: string;
  /** whsec_ + base64 key, as Standard Webhooks defines it. */
  secret: string;
  /** null: every event. */
  events: EventType[] | null;
  /** null: every cell. */
  cellIds: string[] | null;
}

export class WebhookConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WebhookConfigError';
  }
}

const ID = /^[A-Za-z0-9._-]{1,64}$/;
const CELL = /^[A-Za-z0-9._:-]{1,128}$/;

/** A Standard Webhooks secret: `whsec_` then base64 of 24 to 64 random bytes. */
export function checkSecret(secret: unknown, where: string): string {
  if (typeof secret !== 'string' || !secret.startsWith('whsec_')) {
    throw new WebhookConfigError(`${where} must be a Standard Webhooks secret starting with whsec_`);
  }
  const body = secret.slice('whsec_'.length);
  const key = /^[A-Za-z0-9+/]+={0,2}$/.test(body) ? Buffer.from(body, 'base64') : Buffer.alloc(0);
  if (key.length < 24 || key.length > 64) {
    throw new WebhookConfigError(`${where} must be whsec_ followed by base64 of 24 to 64 bytes (got ${key.length} bytes)`);
  }
  return secret;
}

function checkUrl(url: unknown, where: string): string {
  let parsed: URL;
  try {
    parsed = new URL(String(url));
  } catch {
    throw new WebhookConfigError(`${where} is not a URL: ${String(url)}`);
  }
  if (typeof url !== 'string' || (parsed.protocol !== 'https:' && parsed.protocol !== 'http:')) {
    throw new WebhookConfigError(`${where} must be an http(s) URL`);
  }
  return url;
}

function stringList<T extends string>(value: unknown, where: string, check: (s: string) => boolean, what: string): T[] | null {
  if (value === undefined || value === null) return null;
  if (!Array.isArray(value) || value.length === 0) throw new WebhookConfigError(`${where} must be a non-empty array of ${what}`);
  for (const [i, v] of value.entries()) {
    if (typeof v !== 'string' || !check(v)) throw new WebhookConfigError(`${where}[${i}] is not ${what}: ${JSON.stringify(v)}`);
  }
  return value as T[];
}

const KNOWN_KEYS = new Set(['id', 'url', 'secret', 'events', 'cell_ids']);

/** Parses the endpoints file: `{"endpoints": [{id, url, secret, events?, cell_ids?}]}`. */
export function parseEndpointsFile(text: string, file: string): WebhookEndpoint[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new WebhookConfigError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  const list = (data as { endpoints?: unknown } | null)?.endpoints;
  if (!Array.isArray(list) || list.length === 0) throw new WebhookConfigError(`${file}: endpoints must be a non-empty array`);
  const seen = new Set<string>();
  return list.map((raw: unknown, i) => {
    const at = `${file}: endpoints[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new WebhookConfigError(`${at} must be an object`);
    const e = raw as Record<string, unknown>;
    for (const key of Object.keys(e)) if (!KNOWN_KEYS.has(key)) throw new WebhookConfigError(`${at}.${key} is not a known field (${[...KNOWN_KEYS].join(', ')})`);
    if (typeof e.id !== 'string' || !ID.test(e.id)) throw new WebhookConfigError(`${at}.id must match ${ID.source}`);
    if (seen.has(e.id)) throw new WebhookConfigError(`${at}.id ${e.id} is used twice`);
    seen.add(e.id);
    return {
      id: e.id,
      url: checkUrl(e.url, `${at}.url`),
      secret: checkSecret(e.secret, `${at}.secret`),
      events: stringList<EventType>(e.events, `${at}.events`, (s) => (EVENT_TYPES as readonly string[]).includes(s), `an event type (${EVENT_TYPES.join(', ')})`),
      cellIds: stringList<string>(e.cell_ids, `${at}.cell_ids`, (s) => CELL.test(s), 'a cell id'),
    };
  });
}

/** The single endpoint of ARMOR_WEBHOOK_URL + ARMOR_WEBHOOK_SECRET. */
export function singleEndpoint(url: string, secret: string | undefined): WebhookEndpoint {
  return {
    id: 'default',
    url: checkUrl(url, 'ARMOR_WEBHOOK_URL'),
    secret: checkSecret(secret, 'ARMOR_WEBHOOK_SECRET'),
    events: null,
    cellIds: null,
  };
}

export function endpointWants(endpoint: WebhookEndpoint, event: EventType, cellId: string | null): boolean {
  if (endpoint.events && !endpoint.events.includes(event)) return false;
  if (endpoint.cellIds && (cellId === null || !endpoint.cellIds.includes(cellId))) return false;
  return true;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `0,5s,5m,30m,2h` -> delays in ms before attempt 1, 2, ...; the list's length is the attempt budget. */
export function parseSchedule(text: string, where = 'ARMOR_WEBHOOK_RETRY_SCHEDULE'): number[] {
  const delays = text.split(',').map((part) => {
    const m = /^\s*(\d+(?:\.\d+)?)(ms|s|m|h)?\s*$/.exec(part);
    if (!m) throw new WebhookConfigError(`${where}: ${JSON.stringify(part)} is not a delay such as 0, 500ms, 5s, 5m or 2h`);
    return Math.round(Number(m[1]) * UNITS[m[2] ?? 's']);
  });
  if (delays.length === 0 || delays.length > 50) throw new WebhookConfigError(`${where} must list 1 to 50 delays`);
  return delays;
}
