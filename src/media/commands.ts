// The decode commands, from models/decode-commands.json: the one definition the server and the
// data generator (models/tooling/media.py) share, so a change reaches training and serving alike.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { MediaKind } from './sniff.js';

export type DecodableKind = Exclude<MediaKind, 'unknown'>;
type CommandName = 'video' | 'video_frames' | 'view';
type Vars = Readonly<Record<string, string | number>>;

interface CommandFile {
  demuxers: Record<DecodableKind, string>;
  input: string[];
  video: string[];
  video_frames: string[];
  view: string[];
}

// Runs from dist/src/media/: the repository (or image) root is three levels up.
export const COMMANDS_FILE = path.join(fileURLToPath(new URL('../../..', import.meta.url)), 'models', 'decode-commands.json');

const commands = loadCommands(COMMANDS_FILE);

function loadCommands(file: string): CommandFile {
  const json = JSON.parse(readFileSync(file, 'utf8')) as Partial<CommandFile>;
  const isArgv = (v: unknown): v is string[] => Array.isArray(v) && v.every((x) => typeof x === 'string');
  const kinds: DecodableKind[] = ['mp4', 'webm', 'matroska', 'mpegts', 'jpeg', 'png'];
  if (!isArgv(json.input) || !isArgv(json.video) || !isArgv(json.video_frames) || !isArgv(json.view) || typeof json.demuxers !== 'object' || json.demuxers === null
    || !kinds.every((k) => typeof json.demuxers?.[k] === 'string')) {
    throw new Error(`${file} is not a valid decode command file`);
  }
  return json as CommandFile;
}

/** `file:` + absolute path: a name with ':' or a leading '-' cannot become a protocol or option. */
export function fileUrl(file: string): string {
  return 'file:' + path.resolve(file);
}

/** The demuxer pinned for a sniffed kind: a file cannot pick an exotic one by its content. */
export function demuxerFor(kind: DecodableKind): string {
  return commands.demuxers[kind];
}

/** Options every ffmpeg run gets before `-i`: files only, pinned demuxer. */
export function inputArgs(kind: DecodableKind, file: string): string[] {
  return expand(commands.input, { demuxer: demuxerFor(kind), url: fileUrl(file) });
}

/** The argv for one decode, with every placeholder filled (a missing one is a programming error). */
export function commandArgs(name: CommandName, kind: DecodableKind, file: string, vars: Vars): string[] {
  const input = inputArgs(kind, file);
  return commands[name].flatMap((arg) => (arg === '{input}' ? input : expand([arg], vars)));
}

/** The command's -vf filter graph, for decoders that run the libraries without the CLI (node-av). */
export function commandFilter(name: CommandName, vars: Vars): string {
  const args = commands[name];
  const at = args.indexOf('-vf');
  if (at < 0 || at + 1 >= args.length) throw new Error(`decode command ${name} has no -vf`);
  return expand([args[at + 1]], vars)[0];
}

/**
 * The filters the ffmpeg CLI inserts before -vf for a display rotation (autorotate), so that
 * a decoder without the CLI turns frames the same way. Degrees clockwise, as mediabunny reports.
 */
export function rotationFilter(rotation: 0 | 90 | 180 | 270): string {
  switch (rotation) {
    case 90: return 'transpose=clock,';
    case 180: return 'hflip,vflip,';
    case 270: return 'transpose=cclock,';
    default: return '';
  }
}

function expand(args: readonly string[], vars: Vars): string[] {
  return args.map((arg) => arg.replace(/\{(\w+)\}/g, (_, key: string) => {
    const value = vars[key];
    if (value === undefined) throw new Error(`decode command placeholder {${key}} has no value`);
    return String(value);
  }));
}
