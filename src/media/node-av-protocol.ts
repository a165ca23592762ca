// Messages between the server and a node-av media worker (advanced IPC serialization).

export interface DecodeJob {
  id: number;
  /** `file:` + absolute path; the worker opens nothing but files. */
  url: string;
  /** The pinned demuxer (models/decode-commands.json `demuxers`). */
  format: string;
  /** The -vf of the shared decode command, with rotation prepended as the CLI autorotates. */
  filter: string;
  /** Frames wanted: decoding stops once they came out. */
  count: number;
  threads: number;
  /** The decoder refuses frames larger than this (the CLI's -max_pixels). */
  maxPixels: number;
  /** Bytes of one output frame (width x height x 3): anything else is an error. */
  frameBytes: number;
}

export type WorkerMessage =
  | { type: 'ready'; ok: true; version: string }
  | { type: 'ready'; ok: false; error: string }
  | { type: 'result'; id: number; ok: true; rgb: Uint8Array; frames: number }
  | { type: 'result'; id: number; ok: false; code: 'corrupt_media' | 'unsupported_media' | 'media_resolution_too_large'; message: string };
