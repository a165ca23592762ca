// Per-request refinement options: the bundle's defaults, overridden by the caller within the
// server's caps.
import { createHash, randomInt } from 'node:crypto';
import { SELECTION_RULES, type SelectionRule } from '../engine/selection.js';
import type { RefinementOptions } from '../engine/types.js';
import type { RefinementDefaults } from '../runtime/manifest.js';
import { PipelineError } from './errors.js';

/** What a caller may set (the `options` JSON of POST /v1/episodes, or CLI flags). */
export interface RequestOptions {
  trajectories?: number;
  max_rounds?: number;
  seed?: number;
  temperature?: number;
  top_p?: number;
  max_new_tokens?: number;
  /** Hugging Face's repetition penalty on each candidate's own tokens, 1 (off) to 2. */
  repetition_penalty?: number;
  /** min_c (the paper's lowest self-certainty) or consensus (selection.ts). */
  selection?: SelectionRule;
  /** false: run every round up to max_rounds instead of stopping when C stops improving. */
  early_stop?: boolean;
  /** The episode's deadline from its arrival, in ms (at most the server's request timeout). */
  deadline_ms?: number;
}

export interface OptionCaps {
  maxTrajectories: number;
  maxRounds: number;
  maxNewTokens: number;
  maxDeadlineMs: number;
}

const KNOWN = new Set(['trajectories', 'max_rounds', 'seed', 'temperature', 'top_p', 'max_new_tokens', 'repetition_penalty', 'selection', 'early_stop', 'deadline_ms']);

function bad(message: string): PipelineError {
  return new PipelineError('invalid_options', message, 400);
}

function integer(value: unknown, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw bad(`options.${name} must be an integer from ${min} to ${max}`);
  }
  return value;
}

function number(value: unknown, name: string, min: number, max: number, minExclusive = false): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value > max || value < min || (minExclusive && value === min)) {
    throw bad(`options.${name} must be a number ${minExclusive ? 'above' : 'from'} ${min} ${minExclusive ? 'and up to' : 'to'} ${max}`);
  }
  return value;
}

/** Parses the options JSON text of a request; unknown keys are refused, not ignored. */
export function parseRequestOptions(raw: string | undefined, caps: OptionCaps): RequestOptions {
  if (raw === undefined || raw.trim() === '') return {};
  let data: unknown;
  try {
    data = JSON.parse(raw);
  } catch {
    throw bad('options is not valid JSON');
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) throw bad('options must be a JSON object');
  const o = data as Record<string, unknown>;
  for (const key of Object.keys(o)) if (!KNOWN.has(key)) throw bad(`options.${key} is not a known option (${[...KNOWN].join(', ')})`);
  // 0 is greedy; a positive temperature below 0.01 is greedy in all but name, and the in-graph
  // round (float32) could not follow the host loop there.
  if (typeof o.temperature === 'number' && o.temperature > 0 && o.temperature < 0.01) throw bad('options.temperature must be 0 (greedy) or from 0.01 to 2');
  if (o.selection !== undefined && !SELECTION_RULES.includes(o.selection as SelectionRule)) throw bad(`options.selection must be one of ${SELECTION_RULES.join(', ')}`);
  if (o.early_stop !== undefined && typeof o.early_stop !== 'boolean') throw bad('options.early_stop must be true or false');
  return {
    trajectories: integer(o.trajectories, 'trajectories', 1, caps.maxTrajectories),
    max_rounds: integer(o.max_rounds, 'max_rounds', 1, caps.maxRounds),
    seed: integer(o.seed, 'seed', 0, 0xffffffff),
    temperature: number(o.temperature, 'temperature', 0, 2),
    top_p: number(o.top_p, 'top_p', 0, 1, true),
    max_new_tokens: integer(o.max_new_tokens, 'max_new_tokens', 1, caps.maxNewTokens),
    repetition_penalty: number(o.repetition_penalty, 'repetition_penalty', 1, 2),
    selection: o.selection as SelectionRule | undefined,
    early_stop: o.early_stop as boolean | undefined,
    deadline_ms: integer(o.deadline_ms, 'deadline_ms', 1, caps.maxDeadlineMs),
  };
}

/** The seed of an episode whose client gave none: a re-run of the same id gives the same answer. */
export function seedForEpisode(episodeId: string): number {
  return createHash('sha256').update(`armor-serve/seed/${episodeId}`).digest().readUInt32BE(0);
}

/**
 * Request options over bundle defaults. A missing seed is derived from the episode id, or
 * drawn at random when there is none; either way it is reported.
 */
export function resolveOptions(request: RequestOptions, defaults: RefinementDefaults, caps: OptionCaps, episodeId?: string): RefinementOptions {
  return {
    trajectories: Math.min(request.trajectories ?? defaults.trajectories, caps.maxTrajectories),
    maxRounds: Math.min(request.max_rounds ?? defaults.max_rounds, caps.maxRounds),
    lambda: defaults.lambda,
    epsilon: defaults.epsilon,
    epsilonRelative: defaults.epsilon_relative ?? 0,
    temperature: request.temperature ?? defaults.temperature,
    topP: request.top_p ?? defaults.top_p,
    repetitionPenalty: request.repetition_penalty ?? defaults.repetition_penalty ?? 1,
    maxNewTokens: Math.min(request.max_new_tokens ?? defaults.max_new_tokens, caps.maxNewTokens),
    selection: request.selection ?? defaults.selection ?? 'min_c',
    earlyStop: request.early_stop ?? true,
    seed: request.seed ?? (episodeId !== undefined ? seedForEpisode(episodeId) : randomInt(0, 2 ** 32 - 1)),
  };
}
