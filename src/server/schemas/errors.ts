import { Type, type Static, type TObject } from '@sinclair/typebox';

const errorShape = (description?: string) =>
  Type.Object(
    {
      error: Type.Object({
        code: Type.String({ description: 'Stable machine-readable code, e.g. invalid_options' }),
        message: Type.String(),
        details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
      }),
    },
    description === undefined ? {} : { description },
  );

/** The one error shape of the API. */
export const ErrorBody = errorShape();
export type ErrorBody = Static<typeof ErrorBody>;

/** Error codes by status, as the routes and plugins raise them (README, Errors). */
export const ERROR_CODES = {
  badForm: ['missing_media', 'ambiguous_media', 'too_many_videos', 'empty_file', 'missing_task', 'task_too_long', 'invalid_task', 'invalid_options',
    'invalid_views', 'invalid_cell_id', 'invalid_episode_id', 'unknown_field', 'duplicate_field', 'field_too_large', 'too_many_files', 'too_many_parts',
    'too_many_fields', 'invalid_multipart'],
  badQuery: ['invalid_request'],
  badCursor: ['invalid_request', 'invalid_cursor'],
  auth: { 401: ['unauthorized'], 403: ['forbidden'], 429: ['rate_limited'] },
  internal: ['internal_error'],
  unavailable: ['overloaded', 'shutting_down'],
} as const;

/**
 * Documented error responses: each status with the codes a route may answer it with. They are
 * in the generated OpenAPI document (GET /openapi.json), and the tests check real responses
 * against them.
 */
export function errorResponses(statuses: Record<number, readonly string[]>, options: { open?: boolean } = {}): Record<number, TObject> & { '4xx': TObject; '5xx': TObject } {
  // Open routes (health, readiness) need no key: no 401, 403 or 429.
  const auth: Record<number, readonly string[]> = options.open ? {} : ERROR_CODES.auth;
  const withAuth: Record<number, readonly string[]> = { ...auth, 500: ERROR_CODES.internal, ...statuses };
  if (withAuth[503] === undefined) withAuth[503] = ERROR_CODES.unavailable;
  const listed = Object.fromEntries(Object.entries(withAuth).map(([status, codes]) => [Number(status), errorShape(`error.code: ${codes.join(', ')}`)]));
  // The ranges keep every status the handlers may set typed; the listed ones document them.
  return { ...listed, '4xx': errorShape('error.code: as listed in the README (Errors)'), '5xx': errorShape('error.code: as listed in the README (Errors)') };
}
