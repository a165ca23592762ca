// The two store engines a suite runs against: a real SQLite file and a real PostgreSQL
// (a throwaway database in the test cluster; a string says why it is not available).
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { openStore, type KyselyStore } from '../../src/store/index.js';
import { testDatabase } from './postgres.js';

export type Opened = { store: KyselyStore; dir?: string; close: () => Promise<void> };
export interface StoreOptions {
  mediaRetentionMs?: number;
}

export async function sqliteStore(options: StoreOptions = {}): Promise<Opened> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'armor-store-test-'));
  const store = await openStore({ dataDir: dir, ...options });
  return { store, dir, close: async () => { await store.close(); await rm(dir, { recursive: true, force: true }); } };
}

export async function postgresStore(options: StoreOptions = {}): Promise<Opened | string> {
  const db = await testDatabase();
  if ('why' in db) return db.why;
  const store = await openStore({ dataDir: '/nonexistent', databaseUrl: db.url, ...options });
  return { store, close: async () => { await store.close(); await db.drop(); } };
}

export const STORE_ENGINES = [['sqlite', sqliteStore], ['postgres', postgresStore]] as const;
