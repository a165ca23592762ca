// Opening the durable store: SQLite in the data directory by default, PostgreSQL when a
// database URL is configured. Migrations run at open, in order, once.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, PostgresDialect, SqliteDialect, type Migration } from 'kysely';
import pg from 'pg';
import { KyselyStore } from './kysely-store.js';
import { initial } from './migrations/001_initial.js';
import { labels } from './migrations/002_labels.js';
import { blobs } from './migrations/003_blobs.js';
import { review } from './migrations/004_review.js';
import type { Database } from './schema.js';
import type { Dialect, EpisodeStore } from './types.js';

export { KyselyStore } from './kysely-store.js';
export { episodeListQuery, InvalidCursorError } from './episode-rows.js';
export type * from './types.js';

export interface StoreLocation {
  /** SQLite file's directory (used when no databaseUrl). */
  dataDir: string;
  databaseUrl?: string;
  /** How long finished episodes keep their media (0: removed when they finish). */
  mediaRetentionMs?: number;
}

/** Versioned migrations; a new schema change is a new entry, never an edit of an old one. */
function migrations(dialect: Dialect): Record<string, Migration> {
  return { '001_initial': initial(dialect), '002_labels': labels(), '003_blobs': blobs(), '004_review': review() };
}

async function migrate(db: Kysely<Database>, dialect: Dialect): Promise<void> {
  const migrator = new Migrator({ db, provider: { getMigrations: async () => migrations(dialect) } });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    throw new Error(`store migration ${failed?.migrationName ?? ''} failed: ${error instanceof Error ? error.message : String(error)}`);
  }
}

// BIGINT (epoch milliseconds) as a JS number rather than pg's default string.
const INT8_OID = 20;

export async function openStore(location: StoreLocation): Promise<KyselyStore> {
  let db: Kysely<Database>;
  let dialect: Dialect;
  if (location.databaseUrl) {
    dialect = 'postgres';
    const pool = new pg.Pool({
      connectionString: location.databaseUrl,
      max: 10,
      types: {
        getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
          oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format)) as typeof pg.types.getTypeParser,
      },
    });
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  } else {
    dialect = 'sqlite';
    await mkdir(location.dataDir, { recursive: true });
    const file = new BetterSqlite3(path.join(location.dataDir, 'armor.sqlite'));
    // WAL with synchronous=FULL: a commit is on disk (fsync'd) before it returns, so a 202
    // sent after it survives a crash or power loss.
    file.pragma('journal_mode = WAL');
    file.pragma('synchronous = FULL');
    file.pragma('foreign_keys = ON');
    file.pragma('busy_timeout = 5000');
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: file }) });
  }
  try {
    await migrate(db, dialect);
  } catch (err) {
    await db.destroy();
    throw err;
  }
  return new KyselyStore(db, dialect, { mediaRetentionMs: location.mediaRetentionMs });
}

export type { EpisodeStore };
