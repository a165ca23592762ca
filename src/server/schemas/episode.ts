// Response schemas of /v1/episodes. Fastify serialises with them, so a field that is not
// declared here never leaves the server.
import { Type, type Static } from '@sinclair/typebox';


export const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

/** Epoch milliseconds as the API writes times (RFC 3339, UTC). */
const Candidate = Type.Object({
  trajectory: Type.Integer(),
  round: Type.Integer(),
  p_fail: Type.Number(),
  label: Type.String(),
  failure: Type.Boolean(),
  h_det: Type.Number(),
  h_reason: Type.Number(),
  c: Type.Number(),
  explanation: Type.String(),
  tokens: Type.Integer(),
  degenerate: Type.Optional(Nullable(Type.Union([Type.Literal('no_eos'), Type.Literal('repetition')]))),
  time_ms: Type.Number(),
});

export const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

const RoundTrajectory = Type.Object({ round: Type.Integer(), trajectory: Type.Integer() });

export const ReviewReasonSchema = Type.Union([
  Type.Literal('degenerate_explanation'),
  Type.Literal('label_contradiction'),
  Type.Literal('candidates_disagree'),
  Type.Literal('detection_uncertain'),
  Type.Literal('unfamiliar_input'),
]);

const Round = Type.Object({ round: Type.Integer(), time_ms: Type.Number(), min_c: Type.Number(), candidates: Type.Array(Candidate) });

const resultFields = {
    episode_id: Type.String(),
    cell_id: Nullable(Type.String()),
    model: Type.Object({ name: Type.String(), version: Type.String() }),
    detection: Type.Object({
      label: Type.String(),
      failure: Type.Boolean(),
      probability: Type.Number({ description: 'p_fail after the bundle\'s calibration temperature' }),
      raw_probability: Type.Optional(Type.Number({ description: "p_fail as the detection head gives it (what H_det, C and the label use)" })),
    }),
    explanation: Type.String(),
    confidence: Type.Number({ description: 'Calibrated probability of the reported label' }),
    selected: Type.Object({
      trajectory: Type.Integer(),
      round: Type.Integer(),
      c: Type.Number(),
      rule: Type.Optional(Type.Union([Type.Literal('min_c'), Type.Literal('consensus')])),
      reason: Type.Optional(Type.String()),
      by_rule: Type.Optional(Type.Object(
        { min_c: RoundTrajectory, consensus: RoundTrajectory },
        { description: "What each selection rule picks among the same candidates" },
      )),
    }),
    // Optional: results stored before needs_review existed lack them.
    needs_review: Type.Optional(Type.Boolean({ description: 'An operator should check this answer before acting on it' })),
    review_reasons: Type.Optional(Type.Array(ReviewReasonSchema)),
    novelty: Type.Optional(Nullable(Type.Number({ description: 'How unlike the training data the input looks (about 1 typical)' }))),
    stop_reason: Type.Union([Type.Literal('converged'), Type.Literal('max_rounds'), Type.Literal('deadline')]),
    input: Type.Object({
      kind: Type.Union([Type.Literal('video'), Type.Literal('tiles')]),
      frames: Type.Integer(),
      width: Type.Integer(),
      height: Type.Integer(),
      duration_s: Nullable(Type.Number()),
      sample_fps: Nullable(Type.Number()),
      views: Nullable(Type.Integer()),
      vision_tokens: Type.Integer(),
    }),
    options: Type.Object({
      trajectories: Type.Integer(),
      max_rounds: Type.Integer(),
      seed: Type.Integer(),
      temperature: Type.Number(),
      top_p: Type.Number(),
      max_new_tokens: Type.Integer(),
      repetition_penalty: Type.Optional(Type.Number()),
      selection: Type.Optional(Type.Union([Type.Literal('min_c'), Type.Literal('consensus')])),
      early_stop: Type.Optional(Type.Boolean()),
      deadline_ms: Nullable(Type.Integer()),
    }),
    provider: Type.String(),
    timings: Type.Record(Type.String(), Type.Number()),
};

export const EpisodeResult = Type.Object({ ...resultFields, rounds: Type.Array(Round) }, { $id: 'EpisodeResult' });
export type EpisodeResult = Static<typeof EpisodeResult>;

/** A result in a list: the trace only when asked for (?traces=true), so a page stays small. */
const ListedResult = Type.Object({
  ...resultFields,
  rounds_run: Type.Integer({ description: 'Refinement rounds the episode ran' }),
  rounds: Type.Optional(Type.Array(Round, { description: 'Every round and candidate (with traces=true)' })),
});

export const EpisodeParams = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$' }) });

/** Episode ids are unique within a cell: cell_id names the one meant when an id is used in several. */
export const EpisodeLookupQuery = Type.Object(
  {
    cell_id: Type.Optional(
      Type.String({ pattern: '^([A-Za-z0-9._:-]{1,128})?$', description: "The episode's cell (empty: the episode without one); needed only when the id is used in several cells the key can see" }),
    ),
  },
  { additionalProperties: false },
);

const Timestamp = Type.String({ format: 'date-time' });

const FAILURE_OR_SUCCESS = Type.Union([Type.Literal('failure'), Type.Literal('success')]);

/** An operator's label on an episode. */
export const Label = Type.Object(
  {
    id: Type.String(),
    episode_id: Type.String(),
    label: FAILURE_OR_SUCCESS,
    failure_mode: Nullable(Type.String()),
    explanation: Nullable(Type.String()),
    by: Nullable(Type.String()),
    agreed: Nullable(Type.Boolean({ description: "Whether the label is the model's" })),
    created_at: Timestamp,
  },
  { $id: 'Label' },
);

export const NewLabelBody = Type.Object(
  {
    label: FAILURE_OR_SUCCESS,
    failure_mode: Type.Optional(Type.String({ pattern: '^[a-z][a-z0-9_]{0,63}$', description: 'e.g. grasp_miss, drop_in_transit, wrong_item (see models/data)' })),
    explanation: Type.Optional(Type.String({ minLength: 1, maxLength: 2000, description: 'What happened, in words: makes the episode a dense training example' })),
    by: Type.Optional(Type.String({ minLength: 1, maxLength: 128, description: 'Who labelled it' })),
  },
  { additionalProperties: false },
);

export const LabelList = Type.Object({ items: Type.Array(Label) });

/** An episode as stored: its status, and its result or error once it has one. */
const episodeFields = {
    id: Type.String({ description: "The client's episode id (unique within its cell)" }),
    status: Type.Union([Type.Literal('queued'), Type.Literal('running'), Type.Literal('succeeded'), Type.Literal('failed')]),
    mode: Type.Union([Type.Literal('sync'), Type.Literal('async')]),
    cell_id: Nullable(Type.String()),
    task: Type.String(),
    media_sha256: Type.String(),
    label: Nullable(Type.String({ description: "The model's label once succeeded" })),
    human_label: Nullable(Type.String({ description: 'The latest operator label, if any' })),
    attempts: Type.Integer({ description: 'Runs started for this episode (more than 1 after a crash or a lost claim).' }),
    created_at: Timestamp,
    updated_at: Timestamp,
    started_at: Nullable(Timestamp),
    finished_at: Nullable(Timestamp),
    error: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
};

export const Episode = Type.Object(
  {
    ...episodeFields,
    result: Type.Optional(EpisodeResult),
    labels: Type.Optional(Type.Array(Label, { description: 'Operator labels, oldest first (on GET of one episode)' })),
    media_available: Type.Optional(Type.Boolean({ description: 'Whether the upload is still stored (frames, export); on GET of one episode' })),
  },
  { $id: 'Episode' },
);

export const EpisodeList = Type.Object({
  items: Type.Array(Type.Object({ ...episodeFields, result: Type.Optional(ListedResult) })),
  next_cursor: Nullable(Type.String()),
});

/** Most items a list page may carry with their traces (a trace is up to 8 x 8 candidates). */
export const MAX_TRACED_ITEMS = 50;

export const EpisodeListQuery = Type.Object(
  {
    cell_id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$' })),
    status: Type.Optional(Type.Union([Type.Literal('queued'), Type.Literal('running'), Type.Literal('succeeded'), Type.Literal('failed')])),
    label: Type.Optional(Type.Union([Type.Literal('failure'), Type.Literal('success')], { description: "The model's label" })),
    human_label: Type.Optional(
      Type.Union([Type.Literal('failure'), Type.Literal('success'), Type.Literal('any'), Type.Literal('none')], { description: 'The latest operator label; any: labelled; none: not labelled' }),
    ),
    needs_review: Type.Optional(Type.Boolean({ description: 'Only answers flagged needs_review (true) or not flagged (false)' })),
    since: Type.Optional(Type.String({ description: 'Only episodes created at or after this time (RFC 3339 or epoch milliseconds).' })),
    until: Type.Optional(Type.String({ description: 'Only episodes created before this time (RFC 3339 or epoch milliseconds).' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50, description: 'At most 50 with traces=true' })),
    cursor: Type.Optional(Type.String({ maxLength: 512 })),
    traces: Type.Optional(Type.Boolean({ default: false, description: "Include each result's rounds (the full trace); off by default" })),
  },
  { additionalProperties: false },
);

/** The multipart upload of POST /v1/episodes, for the OpenAPI document (the route reads the stream itself). */
export const EpisodeUploadDoc = Type.Object({
  video: Type.Optional(Type.String({ format: 'binary', description: 'MP4 (with an ftyp box), QuickTime, WebM, Matroska or MPEG-TS (H.264 or HEVC); or send views instead' })),
  views: Type.Optional(Type.Array(Type.String({ format: 'binary' }), { minItems: 2, maxItems: 8, description: 'JPEG or PNG images of one moment from several cameras, tiled in order' })),
  task: Type.String({ maxLength: 1000, description: 'The instruction the robot was given' }),
  cell_id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9._:-]{1,128}$' })),
  episode_id: Type.Optional(Type.String({ description: 'Idempotency key: the same id and media return the stored episode' })),
  options: Type.Optional(Type.String({ description: 'JSON: trajectories, max_rounds, max_new_tokens, temperature, top_p, repetition_penalty, selection (min_c | consensus), early_stop, seed, deadline_ms' })),
});
