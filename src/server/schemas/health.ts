// Response schemas of the health routes (the OpenAPI document and serialisation). Open
// objects: a field added to /readyz is never silently dropped by the serialiser.
import { Type } from '@sinclair/typebox';

const open = { additionalProperties: true };

export const Health = Type.Object({ status: Type.Literal('ok') });

export const Ready = Type.Object(
  {
    status: Type.Union([Type.Literal('ready'), Type.Literal('degraded')], {
      description: 'degraded: the blob store cannot be reached (uploads get 503 until it can; stored episodes can still be read)',
    }),
    model: Type.Object(
      { name: Type.String(), version: Type.String(), format_version: Type.String(), dir: Type.String({ description: "The bundle directory's name (no absolute paths are shown)" }), bytes: Type.Integer() },
      open,
    ),
    blob_store: Type.Object(
      {
        backend: Type.Union([Type.Literal('fs'), Type.Literal('s3')]),
        location: Type.String(),
        ok: Type.Boolean(),
        error: Type.Optional(Type.String()),
      },
      { ...open, description: 'Where uploads are kept, and whether it answers' },
    ),
    provider: Type.String({ description: 'The execution provider in use: tensorrt, cuda, webgpu or cpu' }),
    provider_fallbacks: Type.Array(Type.Object({ provider: Type.String(), error: Type.String() }, open), { description: 'Providers tried before it, and why each failed' }),
    provider_settings: Type.Object(
      {
        requested: Type.Array(Type.String()),
        device_id: Type.Integer(),
        tensorrt: Type.Object(
          {
            fp16: Type.Boolean(),
            engine_cache: Type.Object({ enabled: Type.Boolean(), path: Type.Union([Type.String(), Type.Null()]), writable: Type.Union([Type.Boolean(), Type.Null()]) }),
            timing_cache: Type.Object({ enabled: Type.Boolean(), path: Type.Union([Type.String(), Type.Null()]), writable: Type.Union([Type.Boolean(), Type.Null()]) }),
            max_workspace_bytes: Type.Union([Type.Integer(), Type.Null()]),
            layer_norm_fp32_fallback: Type.Boolean(),
            builder_optimization_level: Type.Union([Type.Integer(), Type.Null()]),
          },
          { ...open, description: 'The ORT_TENSORRT_* settings TensorRT reads (whether or not TensorRT is the provider in use)' },
        ),
      },
      open,
    ),
    workers: Type.Object({ total: Type.Integer(), busy: Type.Integer(), queued: Type.Integer() }, open),
    ffmpeg: Type.Object(
      {
        version: Type.String(),
        path: Type.String({ description: "The executable's file name" }),
        source: Type.Union([Type.Literal('FFMPEG_PATH'), Type.Literal('node-av'), Type.Literal('ffmpeg-static'), Type.Literal('PATH')]),
        policy: Type.Union([Type.Literal('current'), Type.Literal('distribution-maintained')]),
      },
      { ...open, description: 'The decoder in use: node-av (FFmpeg libraries in media worker processes) or an ffmpeg executable' },
    ),
  },
  open,
);
