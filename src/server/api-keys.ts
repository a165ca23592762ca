// API keys: a JSON file of sha256 hashes (the keys themselves are never stored), each with
// scopes and optionally the cells it may touch. Parsed and validated at start-up.
import { createHash } from 'node:crypto';

export const SCOPES = ['submit', 'read', 'label', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface ApiKey {
  id: string;
  sha256: string;
  scopes: Scope[];
  /** null: every cell. */
  cells: string[] | null;
  /** Requests per minute; null: the server default (ARMOR_RATE_LIMIT_PER_MIN). */
  rateLimitPerMin: number | null;
}

export class ApiKeysError extends Error {}

const KNOWN = new Set(['id', 'sha256', 'scopes', 'cells', 'rate_limit_per_min']);

/** Parses `[{"id", "sha256", "scopes", "cells"?, "rate_limit_per_min"?}]`; errors name the file and the field. */
export function parseApiKeys(text: string, file: string): ApiKey[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ApiKeysError(`${file}: not valid JSON (${(err as Error).message})`);
  }
  if (!Array.isArray(data) || data.length === 0) throw new ApiKeysError(`${file}: must be a non-empty JSON array of keys`);
  const ids = new Set<string>();
  const hashes = new Set<string>();
  return data.map((raw: unknown, i) => {
    const at = `${file}: [${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ApiKeysError(`${at} must be an object`);
    const k = raw as Record<string, unknown>;
    for (const key of Object.keys(k)) if (!KNOWN.has(key)) throw new ApiKeysError(`${at}.${key} is not a known field (${[...KNOWN].join(', ')})`);
    if (typeof k.id !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(k.id)) throw new ApiKeysError(`${at}.id must match ^[A-Za-z0-9._-]{1,64}$`);
    if (ids.has(k.id)) throw new ApiKeysError(`${at}.id ${k.id} is used twice`);
    ids.add(k.id);
    if (typeof k.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(k.sha256)) throw new ApiKeysError(`${at}.sha256 must be 64 lower-case hex digits (sha256 of the key)`);
    if (hashes.has(k.sha256)) throw new ApiKeysError(`${at}.sha256 is the same key as an earlier entry`);
    hashes.add(k.sha256);
    if (!Array.isArray(k.scopes) || k.scopes.length === 0 || !k.scopes.every((s) => (SCOPES as readonly unknown[]).includes(s))) {
      throw new ApiKeysError(`${at}.scopes must be a non-empty array of ${SCOPES.join(', ')}`);
    }
    let cells: string[] | null = null;
    if (k.cells !== undefined) {
      if (!Array.isArray(k.cells) || k.cells.length === 0 || !k.cells.every((c) => typeof c === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(c))) {
        throw new ApiKeysError(`${at}.cells must be a non-empty array of cell ids`);
      }
      cells = k.cells as string[];
    }
    let rateLimitPerMin: number | null = null;
    if (k.rate_limit_per_min !== undefined) {
      if (typeof k.rate_limit_per_min !== 'number' || !Number.isInteger(k.rate_limit_per_min) || k.rate_limit_per_min < 1) {
        throw new ApiKeysError(`${at}.rate_limit_per_min must be a positive integer`);
      }
      rateLimitPerMin = k.rate_limit_per_min;
    }
    return { id: k.id, sha256: k.sha256, scopes: k.scopes as Scope[], cells, rateLimitPerMin };
  });
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}
