// Finds working ffmpeg and ffprobe binaries once, at start-up.
import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { MediaSetupError } from './errors.js';

export interface FfmpegTools {
  ffmpeg: string;
  ffprobe: string;
  /** ffmpeg's version string, e.g. "5.1.9-0+deb12u1". */
  version: string;
  source: 'FFMPEG_PATH' | 'ffmpeg-static' | 'PATH';
}

type Env = Readonly<Record<string, string | undefined>>;

const VERIFY_TIMEOUT_MS = 5000;

/**
 * Order: FFMPEG_PATH, the optional `ffmpeg-static` package, `ffmpeg` on PATH.
 * ffprobe: FFPROBE_PATH, an `ffprobe` beside the chosen ffmpeg, `ffprobe` on PATH.
 * An explicitly set but broken FFMPEG_PATH/FFPROBE_PATH is an error naming it, never
 * skipped: an operator who set it expects exactly that binary to run.
 */
export async function resolveFfmpeg(env: Env = process.env): Promise<FfmpegTools> {
  const tried: string[] = [];
  const ff = await resolveFfmpegBinary(env, tried);
  const ffprobe = await resolveFfprobeBinary(env, ff.path, tried);
  return { ffmpeg: ff.path, ffprobe, version: ff.version, source: ff.source };
}

async function resolveFfmpegBinary(env: Env, tried: string[]): Promise<{ path: string; version: string; source: FfmpegTools['source'] }> {
  const explicit = nonEmpty(env.FFMPEG_PATH);
  if (explicit !== undefined) {
    const check = await verify(explicit, 'ffmpeg');
    if (check.ok) return { path: explicit, version: check.version, source: 'FFMPEG_PATH' };
    tried.push(`FFMPEG_PATH=${explicit}: ${check.error}`);
    throw setupError('ffmpeg', `FFMPEG_PATH is set to "${explicit}" but that is not a working ffmpeg (${check.error}). ` +
      'Point FFMPEG_PATH at an ffmpeg executable, or unset it to search ffmpeg-static and PATH.', tried);
  }
  tried.push('FFMPEG_PATH: not set');

  const fromPackage = await ffmpegStaticPath();
  if (typeof fromPackage === 'string') {
    const check = await verify(fromPackage, 'ffmpeg');
    if (check.ok) return { path: fromPackage, version: check.version, source: 'ffmpeg-static' };
    tried.push(`ffmpeg-static (${fromPackage}): ${check.error}`);
  } else {
    tried.push(`ffmpeg-static: ${fromPackage.error}`);
  }

  const onPath = await which('ffmpeg', env);
  if (onPath !== undefined) {
    const check = await verify(onPath, 'ffmpeg');
    if (check.ok) return { path: onPath, version: check.version, source: 'PATH' };
    tried.push(`PATH (${onPath}): ${check.error}`);
  } else {
    tried.push('PATH: no ffmpeg executable found');
  }
  throw setupError('ffmpeg', 'No working ffmpeg found. Install ffmpeg (e.g. `apt-get install ffmpeg`) ' +
    'or set FFMPEG_PATH to an ffmpeg executable.', tried);
}

async function resolveFfprobeBinary(env: Env, ffmpegPath: string, tried: string[]): Promise<string> {
  const explicit = nonEmpty(env.FFPROBE_PATH);
  if (explicit !== undefined) {
    const check = await verify(explicit, 'ffprobe');
    if (check.ok) return explicit;
    tried.push(`FFPROBE_PATH=${explicit}: ${check.error}`);
    throw setupError('ffprobe', `FFPROBE_PATH is set to "${explicit}" but that is not a working ffprobe (${check.error}). ` +
      'Point FFPROBE_PATH at an ffprobe executable, or unset it.', tried);
  }
  tried.push('FFPROBE_PATH: not set');

  // Same build as ffmpeg when possible: the two must agree on what they can read.
  const besideName = 'ffprobe' + (process.platform === 'win32' ? '.exe' : '');
  const beside = path.join(path.dirname(ffmpegPath), besideName);
  if (await isExecutable(beside)) {
    const check = await verify(beside, 'ffprobe');
    if (check.ok) return beside;
    tried.push(`beside ffmpeg (${beside}): ${check.error}`);
  } else {
    tried.push(`beside ffmpeg (${beside}): not found`);
  }

  const onPath = await which('ffprobe', env);
  if (onPath !== undefined) {
    const check = await verify(onPath, 'ffprobe');
    if (check.ok) return onPath;
    tried.push(`PATH (${onPath}): ${check.error}`);
  } else {
    tried.push('PATH: no ffprobe executable found');
  }
  throw setupError('ffprobe', 'No working ffprobe found. Install ffmpeg (its package ships ffprobe) ' +
    'or set FFPROBE_PATH to an ffprobe executable.', tried);
}

function setupError(tool: string, message: string, tried: string[]): MediaSetupError {
  return new MediaSetupError(`${message}\nTried for ${tool}:\n${tried.map((t) => `  - ${t}`).join('\n')}`, tried);
}

type Check = { ok: true; version: string } | { ok: false; error: string };

/** Runs `<bin> -version` (no shell) and parses "<name> version X". */
export function verify(bin: string, name: 'ffmpeg' | 'ffprobe'): Promise<Check> {
  return new Promise((resolve) => {
    execFile(bin, ['-hide_banner', '-version'], { timeout: VERIFY_TIMEOUT_MS, killSignal: 'SIGKILL', windowsHide: true, maxBuffer: 1024 * 1024 },
      (err, stdout) => {
        if (err !== null) {
          const e = err as NodeJS.ErrnoException & { killed?: boolean };
          resolve({ ok: false, error: e.killed === true ? `-version timed out after ${VERIFY_TIMEOUT_MS} ms` : (e.code !== undefined ? String(e.code) : e.message) });
          return;
        }
        const match = new RegExp(`^${name} version (\\S+)`, 'm').exec(stdout);
        if (match === null) resolve({ ok: false, error: `-version output does not look like ${name}` });
        else resolve({ ok: true, version: match[1] });
      });
  });
}

/** The `ffmpeg-static` optional dependency: its path, or why it cannot be used. */
async function ffmpegStaticPath(): Promise<string | { error: string }> {
  // A non-literal specifier keeps tsc from requiring the (optional, absent) package.
  const specifier: string = 'ffmpeg-static';
  let mod: unknown;
  try {
    mod = await import(specifier);
  } catch {
    return { error: 'package not installed' };
  }
  const value = typeof mod === 'object' && mod !== null && 'default' in mod ? (mod as { default: unknown }).default : undefined;
  if (typeof value !== 'string' || value === '') return { error: 'package has no binary for this platform' };
  if (!(await isExecutable(value))) return { error: `binary missing (${value}); its install script may not have run` };
  return value;
}

async function which(name: string, env: Env): Promise<string | undefined> {
  const exts = process.platform === 'win32' ? (env.PATHEXT ?? '.EXE').split(';') : [''];
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    for (const ext of exts) {
      const candidate = path.join(dir, name + ext);
      if (await isExecutable(candidate)) return candidate;
    }
  }
  return undefined;
}

async function isExecutable(file: string): Promise<boolean> {
  try {
    await access(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value;
}
