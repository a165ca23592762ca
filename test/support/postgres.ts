// A real PostgreSQL for the tests that need one: ARMOR_TEST_DATABASE_URL (set by .ci/run), or
// a throwaway cluster started here. Each caller gets a database of its own.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { ROOT } from '../helpers.js';

const run = promisify(execFile);
const SCRIPT = path.join(ROOT, 'test', 'support', 'start-postgres.sh');

export interface TestDatabase {
  url: string;
  drop: () => Promise<void>;
}

let cluster: Promise<{ url: string; stop: () => Promise<void> } | { error: string }> | undefined;

function startCluster() {
  cluster ??= (async () => {
    if (process.env.ARMOR_TEST_DATABASE_URL) return { url: process.env.ARMOR_TEST_DATABASE_URL, stop: async () => {} };
    const port = String(20000 + Math.floor(Math.random() * 20000));
    try {
      const { stdout } = await run('bash', [SCRIPT, port], { timeout: 60000 });
      const [url, dir] = stdout.trim().split(' ');
      return { url, stop: async () => void (await run('bash', [SCRIPT, '--stop', dir]).catch(() => undefined)) };
    } catch (err) {
      return { error: `${(err as Error).message.split('\n')[0]} (${(err as { stderr?: string }).stderr?.trim() ?? ''})` };
    }
  })();
  return cluster;
}

/**
 * A fresh database, or undefined with `why` when PostgreSQL cannot be had here. Under CI
 * (CI=true) not having one is a failure, never a skip.
 */
export async function testDatabase(): Promise<TestDatabase | { why: string }> {
  const c = await startCluster();
  if ('error' in c) {
    if (process.env.CI) throw new Error(`PostgreSQL is required under CI: ${c.error}`);
    return { why: `no PostgreSQL (set ARMOR_TEST_DATABASE_URL or apt-get install postgresql): ${c.error}` };
  }
  const name = `armor_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: c.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(c.url);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const a = new pg.Client({ connectionString: c.url });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    },
  };
}

/** Stops a cluster this process started (none when ARMOR_TEST_DATABASE_URL was given). */
export async function stopTestCluster(): Promise<void> {
  const c = await cluster;
  if (c && 'stop' in c) await c.stop();
}
