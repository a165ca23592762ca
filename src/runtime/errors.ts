// Errors of the model runtime. Codes are stable: operators and tests match on them.

export type BundleErrorCode =
  | 'bundle_not_found'
  | 'invalid_manifest'
  | 'unsupported_format_version'
  | 'missing_file'
  | 'file_size_mismatch'
  | 'hash_mismatch'
  | 'graph_mismatch'
  | 'tokenizer_invalid'
  | 'provider_unavailable';

export class BundleError extends Error {
  readonly code: BundleErrorCode;
  readonly details: Record<string, unknown>;
  constructor(code: BundleErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'BundleError';
    this.code = code;
    this.details = details;
  }
}

/** An input the model cannot take (too many vision tokens, a task with special tokens...). */
export class InputError extends Error {
  readonly code: string;
  readonly statusCode: number;
  constructor(code: string, message: string, statusCode = 422) {
    super(message);
    this.name = 'InputError';
    this.code = code;
    this.statusCode = statusCode;
  }
}
