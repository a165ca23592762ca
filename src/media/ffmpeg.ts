// Finds a working ffmpeg once, at start-up, and holds it to the version policy.
import { execFile } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import path from 'node:path';
import { MediaSetupError } from './errors.js';
import { NodeAvDecoder } from './node-av-pool.js';

/** Why this ffmpeg may decode untrusted uploads (see versionPolicy). */
export type FfmpegPolicy = 'current' | 'distribution-maintained';

export interface FfmpegTools {
  /** The ffmpeg executable; with the node-av decoder, the worker script that hosts the libraries. */
  ffmpeg: string;
  /** FFmpeg's version string, e.g. "7.1.2-0+deb13u1", "5.1.9-0+deb12u1", "8.1-Jellyfin". */
  version: string;
  source: 'FFMPEG_PATH' | 'node-av' | 'ffmpeg-static' | 'PATH';
  policy: FfmpegPolicy;
  /** Set when decoding runs in node-av workers instead of one ffmpeg process per decode. */
  inProcess?: NodeAvDecoder;
}

export interface ResolveOptions {
  /** Default 'cli'; the server passes ARMOR_MEDIA_DECODER (default auto). */
  decoder?: 'auto' | 'cli' | 'node-av';
  /** node-av workers to start (one decode each at a time). */
  workers?: number;
}

type Env = Readonly<Record<string, string | undefined>>;

const VERIFY_TIMEOUT_MS = 5000;
/** The oldest release line accepted as it comes: 6.0 (2023). Older ones have known, unfixed decoder CVEs. */
export const MIN_FFMPEG_MAJOR = 6;

/**
 * The version policy: ffmpeg parses untrusted uploads, so it must receive security fixes.
 * - 6.0 or newer: accepted ("current").
 * - older, but a build of a distribution release whose security team still backports fixes
 *   to it: accepted ("distribution-maintained"). Only Debian 12 (bookworm, "+deb12uN": 5.1.x,
 *   LTS until 2028-06); Ubuntu ships ffmpeg in universe, without standard security support.
 * - anything else older than 6 (the 2018 4.1 binary of @ffmpeg-installer, say): refused; so is
 *   a git build ("N-12345-g..."), whose age the version does not tell.
 */
export function versionPolicy(version: string): FfmpegPolicy | { refused: string } {
  if (/^N-\d+-g/.test(version)) return { refused: `git build ${version}: its age cannot be judged; use a release (6.0 or newer)` };
  const m = /^n?(\d+)\.(\d+)/.exec(version);
  if (m === null) return { refused: `unrecognised version "${version}"` };
  if (Number(m[1]) >= MIN_FFMPEG_MAJOR) return 'current';
  if (/^5\.1\.\d+-[^+]*\+deb12u\d+$/.test(version)) return 'distribution-maintained';
  return { refused: `version ${version} is older than ${MIN_FFMPEG_MAJOR}.0 and not a maintained distribution build` };
}

/**
 * Order: FFMPEG_PATH; the optional `node-av` package (FFmpeg statically linked into a prebuilt
 * addon from the npm registry, decoding in worker processes); the optional `ffmpeg-static`
 * package; `ffmpeg` on PATH. The first that runs and passes the version policy wins. An
 * explicitly set but broken (or refused) FFMPEG_PATH is an error naming it, never skipped: an
 * operator who set it expects exactly that binary to run.
 */
export async function resolveFfmpeg(env: Env = process.env, options: ResolveOptions = {}): Promise<FfmpegTools> {
  const tried: string[] = [];
  // Library callers (tests, tools) get the CLI unless they ask: node-av starts worker processes.
  const decoder = options.decoder ?? 'cli';
  // ARMOR_MEDIA_DECODER=node-av means exactly that: FFMPEG_PATH does not override it.
  const explicit = decoder === 'node-av' ? undefined : nonEmpty(env.FFMPEG_PATH);
  if (explicit !== undefined) {
    const check = await accept(explicit);
    if ('policy' in check) return { ffmpeg: explicit, version: check.version, source: 'FFMPEG_PATH', policy: check.policy };
    tried.push(`FFMPEG_PATH=${explicit}: ${check.error}`);
    throw setupError(`FFMPEG_PATH is set to "${explicit}" but that is not a usable ffmpeg (${check.error}). ` +
      'Point FFMPEG_PATH at an ffmpeg executable (6.0 or newer), or unset it to search ffmpeg-static and PATH.', tried);
  }
  tried.push('FFMPEG_PATH: not set');

  if (decoder !== 'cli') {
    const inProcess = await NodeAvDecoder.start(options.workers ?? 1);
    if (!('unavailable' in inProcess)) {
      const policy = versionPolicy(inProcess.version);
      if (typeof policy === 'string') return { ffmpeg: inProcess.workerScript, version: inProcess.version, source: 'node-av', policy, inProcess };
      await inProcess.close();
      tried.push(`node-av: refused: ${policy.refused}`);
    } else {
      tried.push(`node-av: ${inProcess.unavailable}`);
    }
    if (decoder === 'node-av') throw setupError('ARMOR_MEDIA_DECODER=node-av but the node-av decoder cannot be used. Install it (npm install node-av) or set ARMOR_MEDIA_DECODER=auto.', tried);
  } else {
    tried.push('node-av: skipped (ARMOR_MEDIA_DECODER=cli)');
  }

  const fromPackage = await ffmpegStaticPath();
  if (typeof fromPackage === 'string') {
    const check = await accept(fromPackage);
    if ('policy' in check) return { ffmpeg: fromPackage, version: check.version, source: 'ffmpeg-static', policy: check.policy };
    tried.push(`ffmpeg-static (${fromPackage}): ${check.error}`);
  } else {
    tried.push(`ffmpeg-static: ${fromPackage.error}`);
  }

  const onPath = await which('ffmpeg', env);
  if (onPath !== undefined) {
    const check = await accept(onPath);
    if ('policy' in check) return { ffmpeg: onPath, version: check.version, source: 'PATH', policy: check.policy };
    tried.push(`PATH (${onPath}): ${check.error}`);
  } else {
    tried.push('PATH: no ffmpeg executable found');
  }
  throw setupError('No usable ffmpeg found. Install ffmpeg 6.0 or newer (Debian 13: `apt-get install ffmpeg`) ' +
    'or set FFMPEG_PATH to one.', tried);
}

async function accept(bin: string): Promise<{ version: string; policy: FfmpegPolicy } | { error: string }> {
  const check = await verify(bin, 'ffmpeg');
  if (!check.ok) return { error: check.error };
  const policy = versionPolicy(check.version);
  return typeof policy === 'string' ? { version: check.version, policy } : { error: `refused: ${policy.refused}` };
}

function setupError(message: string, tried: string[]): MediaSetupError {
  return new MediaSetupError(`${message}\nTried:\n${tried.map((t) => `  - ${t}`).join('\n')}`, tried);
}

type Check = { ok: true; version: string } | { ok: false; error: string };

/** Runs `<bin> -version` (no shell) and parses "<name> version X". */
export function verify(bin: string, name: 'ffmpeg' = 'ffmpeg'): Promise<Check> {
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
