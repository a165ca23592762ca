// The real server in this process on a loopback port, with its own temp and data dirs.
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config.js';
import { buildServer, type BuildOptions } from '../../src/server/server.js';

export async function startTestServer(env: Record<string, string> = {}, build: BuildOptions = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-test-server-'));
  const tmpDir = path.join(dir, 'uploads');
  const config = loadConfig({
    HOST: '127.0.0.1',
    LOG_LEVEL: 'silent',
    ARMOR_TMP_DIR: tmpDir,
    ARMOR_DATA_DIR: path.join(dir, 'data'),
    ARMOR_INTRA_OP_THREADS: '1',
    ...env,
  });
  const app = await buildServer(config, build).catch(async (err: Error) => {
    await rm(dir, { recursive: true, force: true });
    throw err;
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    app,
    config,
    port,
    base: `http://127.0.0.1:${port}`,
    pool: app.armor.runtime.pool,
    tmpDir,
    /** Uploads still staged or copied (files no episode owns), in the temp dir and the blob store's staging area. */
    tmpFiles: () => leftovers([tmpDir, app.armor.episodes.blobs.stagingDir]),
    close: async () => {
      await app.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Staging files (.part) and old-style upload directories under `dirs`; the frame cache is not a leftover. */
async function leftovers(dirs: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const dir of dirs) {
    const entries = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
    for (const e of entries) if (e.endsWith('.part') || /(^|\/)episode-/.test(e)) found.push(path.join(dir, e));
  }
  return found;
}
