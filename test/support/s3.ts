// A real S3-protocol server on loopback for the S3 blob store's tests (s3-child.ts in its own
// process). Credentials are s3rver's fixed pair; requests are signed with SigV4 and checked.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 's3-child.js');

export const S3_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };

export interface S3Server {
  endpoint: string;
  port: number;
  bucket: string;
  /** The server's environment for armor-serve (ARMOR_BLOB_STORE=s3 and the rest). */
  env: Record<string, string>;
  /** SIGKILL: every connection drops, as an object store that goes away. */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

function launch(dir: string, port: number, bucket: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [CHILD, dir, String(port), bucket], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`s3rver did not start: ${out}`)), 15000);
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const m = /listening (\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]) });
      }
    });
    child.stderr?.on('data', (c: Buffer) => (out += c.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited with ${code}: ${out}`));
    });
  });
}

export async function startS3(dir: string, bucket = 'armor-media'): Promise<S3Server> {
  let { child, port } = await launch(dir, 0, bucket);
  const endpoint = `http://127.0.0.1:${port}`;
  const exited = (c: ChildProcess) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));
  return {
    endpoint,
    port,
    bucket,
    env: { ARMOR_BLOB_STORE: 's3', ARMOR_S3_BUCKET: bucket, ARMOR_S3_ENDPOINT: endpoint, ARMOR_S3_TIMEOUT_MS: '3000', ...S3_CREDENTIALS },
    kill: async () => {
      child.kill('SIGKILL');
      await exited(child);
    },
    restart: async () => {
      if (child.exitCode === null && child.signalCode === null) return;
      ({ child } = await launch(dir, port, bucket));
    },
    stop: async () => {
      child.kill('SIGTERM');
      await exited(child);
    },
  };
}
