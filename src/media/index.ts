// The media layer: ffmpeg discovery, container probing, frame and image decoding, tiling.
export { resolveFfmpeg, versionPolicy, MIN_FFMPEG_MAJOR, type FfmpegTools, type FfmpegPolicy } from './ffmpeg.js';
export { commandArgs, inputArgs, demuxerFor, COMMANDS_FILE, type DecodableKind } from './commands.js';
export { MediaError, MediaSetupError, MEDIA_ERROR_STATUS, type MediaErrorCode, type MediaErrorOptions } from './errors.js';
export { probeVideo, type VideoProbe, type ProbeLimits, type RunControl } from './probe.js';
export { decodeVideoFrames, decodeArgs, type DecodeOptions, type DecodedFrames } from './decode.js';
export { decodeImage, composeTiles, tileGrid, type ImageOptions, type TiledImage } from './images.js';
export { sniffMedia, sniffFile, SNIFF_BYTES, type MediaKind } from './sniff.js';
export { runProcess, RunError, type RunOptions, type RunResult, type RunFailure } from './run.js';
export { encodePng, contactSheet, type ContactSheet } from './png.js';
