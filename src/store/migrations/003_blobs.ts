// Media out of the database: uploads live in the blob store, rows only refer to them
// (episode_blobs -> media_blobs). Episode ids become unique per cell, and each episode
// records the API key that submitted it (the async backlog is bounded per key). The old
// episode_media rows are moved into the blob store at start-up (media-migration.ts).
import { sql, type Kysely, type Migration } from 'kysely';

export function blobs(): Migration {
  return {
    async up(db: Kysely<unknown>) {
      await db.schema
        .createTable('media_blobs')
        .addColumn('sha256', 'text', (c) => c.primaryKey())
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('last_used_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('media_blobs_last_used').on('media_blobs').columns(['last_used_at']).execute();
      await db.schema
        .createTable('episode_blobs')
        .addColumn('episode_id', 'text', (c) => c.notNull().references('episodes.id').onDelete('cascade'))
        .addColumn('idx', 'integer', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        // No cascade: a blob an episode refers to cannot be collected.
        .addColumn('sha256', 'text', (c) => c.notNull().references('media_blobs.sha256'))
        .addColumn('size', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('episode_blobs_pk', ['episode_id', 'idx'])
        .execute();
      await db.schema.createIndex('episode_blobs_sha256').on('episode_blobs').columns(['sha256']).execute();

      await db.schema.alterTable('episodes').addColumn('episode_id', 'text').execute();
      await db.schema.alterTable('episodes').addColumn('cell_key', 'text').execute();
      await db.schema.alterTable('episodes').addColumn('submitted_by', 'text').execute();
      await sql`update episodes set episode_id = id, cell_key = coalesce(cell_id, '')`.execute(db);
      await db.schema.createIndex('episodes_cell_episode').on('episodes').columns(['cell_key', 'episode_id']).unique().execute();
      // The async backlog, in total and per key: queued or running async episodes.
      await db.schema.createIndex('episodes_backlog').on('episodes').columns(['mode', 'status', 'submitted_by']).execute();
    },
  };
}
