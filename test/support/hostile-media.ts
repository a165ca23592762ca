// Hostile and odd uploads, made with the real ffmpeg into a temp dir: the media a robot cell,
// a broken camera or an attacker might send.
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { deflateSync } from 'node:zlib';
import { FIXTURES } from '../helpers.js';

const run = promisify(execFile);
const ffmpeg = process.env.FFMPEG_PATH ?? 'ffmpeg';

async function make(dir: string, name: string, args: string[]): Promise<string> {
  const out = path.join(dir, name);
  await run(ffmpeg, ['-hide_banner', '-v', 'error', '-y', ...args, out], { timeout: 120000 });
  return out;
}

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** A valid PNG that declares width x height and inflates to all of it: a few KB on disk. */
export function bombPng(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  const row = Buffer.alloc(width + 1); // filter byte + pixels, all zero
  const rows = Buffer.concat(Array.from({ length: Math.min(height, 64) }, () => row));
  // Only the first rows are really there: the decoder still has to allocate the whole image.
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr), pngChunk('IDAT', deflateSync(rows)), pngChunk('IEND', Buffer.alloc(0))]);
}

export interface HostileMedia {
  [name: string]: string;
}

export async function makeHostileMedia(dir: string): Promise<HostileMedia> {
  const lavfi = (src: string) => ['-f', 'lavfi', '-i', src];
  const x264 = ['-c:v', 'libx264', '-preset', 'ultrafast'];
  const files: HostileMedia = {};
  files.uhd = await make(dir, 'four-k.mp4', [...lavfi('testsrc=s=3840x2160:r=5:d=1'), ...x264, '-pix_fmt', 'yuv420p']);
  files.k8 = await make(dir, 'eight-k.mp4', [...lavfi('color=c=gray:s=7680x4320:r=1:d=1'), ...x264, '-pix_fmt', 'yuv420p']);
  files.fifteenMinutes = await make(dir, 'fifteen-minutes.mp4', [...lavfi('color=c=gray:s=64x48:r=1:d=900'), ...x264, '-pix_fmt', 'yuv420p']);
  files.audioOnly = await make(dir, 'audio-only.mp4', [...lavfi('sine=f=440:d=2'), '-c:a', 'aac']);
  files.oneFrame = await make(dir, 'one-frame.mp4', [...lavfi('testsrc=s=320x240:r=25'), '-frames:v', '1', ...x264, '-pix_fmt', 'yuv420p']);
  files.tiny = await make(dir, 'sixteen-px.mp4', [...lavfi('testsrc=s=16x16:r=10:d=2'), ...x264, '-pix_fmt', 'yuv420p']);
  files.tenBit = await make(dir, 'ten-bit.mp4', [...lavfi('testsrc=s=320x240:r=10:d=2'), '-c:v', 'libx265', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p10le', '-x265-params', 'log-level=error']);
  files.rotated = await make(dir, 'rotated.mp4', [...lavfi('testsrc=s=320x240:r=10:d=2'), ...x264, '-pix_fmt', 'yuv420p', '-metadata:s:v', 'rotate=90']);
  files.vp9 = path.join(FIXTURES, 'pick-vp9.webm');
  const good = await readFile(path.join(FIXTURES, 'pick-h264.mp4'));
  files.truncated = path.join(dir, 'truncated.mp4');
  await writeFile(files.truncated, good.subarray(0, Math.floor(good.length / 3)));
  files.random = path.join(dir, 'random.mp4');
  await writeFile(files.random, Buffer.from(Array.from({ length: 50000 }, (_, i) => (i * 7919 + 13) % 256)));
  files.pngAsMp4 = path.join(dir, 'picture.mp4');
  await writeFile(files.pngAsMp4, await readFile(path.join(FIXTURES, 'view-2.png')));
  files.hls = path.join(dir, 'playlist.mp4');
  await writeFile(files.hls, '#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nhttp://169.254.169.254/latest/meta-data\n#EXT-X-ENDLIST\n');
  files.concat = path.join(dir, 'concat.mp4');
  await writeFile(files.concat, "ffconcat version 1.0\nfile '/etc/passwd'\n");
  files.ftypHls = path.join(dir, 'ftyp-then-hls.mp4');
  await writeFile(files.ftypHls, Buffer.concat([good.subarray(0, 32), Buffer.from('#EXTM3U\n#EXTINF:1,\nfile:///etc/passwd\n')]));
  files.corruptJpeg = path.join(dir, 'corrupt.jpg');
  const jpeg = await readFile(path.join(FIXTURES, 'view-1.jpg'));
  await writeFile(files.corruptJpeg, Buffer.concat([jpeg.subarray(0, 200), Buffer.alloc(2000, 0x55)]));
  files.bombPng = path.join(dir, 'bomb.png');
  await writeFile(files.bombPng, bombPng(40000, 40000));
  files.gif = await make(dir, 'view.gif', [...lavfi('testsrc=s=64x64:r=1:d=1'), '-frames:v', '1']);
  files.jpeg = path.join(FIXTURES, 'view-1.jpg');
  files.png = path.join(FIXTURES, 'view-2.png');
  files.h264 = path.join(FIXTURES, 'pick-h264.mp4');
  // Damage a decoder would conceal (grey, or the last frame repeated): the upload is cut.
  const camera = await readFile(await make(dir, 'camera.jpg', [...lavfi('testsrc=s=640x480:r=1'), '-frames:v', '1', '-q:v', '3']));
  files.cutJpeg = path.join(dir, 'cut.jpg');
  await writeFile(files.cutJpeg, camera.subarray(0, 5000));
  const png = await readFile(files.png);
  files.cutPng = path.join(dir, 'cut.png');
  await writeFile(files.cutPng, png.subarray(0, png.length - 20));
  const faststart = await readFile(await make(dir, 'faststart.mp4', [...lavfi('testsrc=s=320x240:r=15:d=4'), ...x264, '-pix_fmt', 'yuv420p', '-movflags', '+faststart']));
  files.cutFaststart = path.join(dir, 'cut-faststart.mp4');
  await writeFile(files.cutFaststart, faststart.subarray(0, Math.floor(faststart.length * 0.7)));
  const webm = await readFile(path.join(FIXTURES, 'pick-vp9.webm'));
  files.cutWebm = path.join(dir, 'cut.webm');
  await writeFile(files.cutWebm, webm.subarray(0, Math.floor(webm.length * 0.7)));
  // Odd but whole: junk after a complete container is ignored.
  files.junkAppended = path.join(dir, 'junk-appended.mp4');
  await writeFile(files.junkAppended, Buffer.concat([good, Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => (i * 7919 + 13) % 251))]));
  // A valid 2.2 MB JPEG (35 application segments of 64 KB after SOI): two of them pass 4 MB.
  const app15 = Buffer.concat([Buffer.from([0xff, 0xef, 0xfa, 0x02]), Buffer.alloc(0xfa00, 0x20)]);
  files.bigJpeg = path.join(dir, 'big.jpg');
  await writeFile(files.bigJpeg, Buffer.concat([jpeg.subarray(0, 2), ...Array.from({ length: 35 }, () => app15), jpeg.subarray(2)]));
  return files;
}
